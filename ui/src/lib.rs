//! The mayu operator console: live leases, boot timelines, profile fill levels and hand
//! assignment over the engine's bus, drawn with ratatui. The binary `mayu` wires it up.

pub mod action;
pub mod app;
pub mod fixtures;
pub mod keys;
pub mod run;
pub mod screenshots;
pub mod terminal;
pub mod view;
