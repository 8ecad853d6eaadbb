//! The mayu operator console: live leases, boot timelines, profile fill levels and hand
//! assignment over the engine's bus, drawn with ratatui. The binary `mayu` wires it up.

pub mod action;
pub mod app;
#[cfg(any(test, feature = "screenshots"))]
pub mod fixtures;
pub mod keys;
pub mod run;
#[cfg(any(test, feature = "screenshots"))]
pub mod screenshots;
pub mod terminal;
pub mod view;
