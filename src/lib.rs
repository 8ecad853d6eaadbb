//! mayu's engine: configuration, the machine model, the inventory with its git audit trail,
//! assignment, templates, boot HTTP, the admin API, the dnsmasq supervisor and the event bus.
//! It knows nothing of the terminal.

pub mod api;
pub mod assign;
pub mod atomic;
pub mod boot;
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "etcd")]
pub mod cluster;
pub mod config;
pub mod dnsmasq;
pub mod engine;
pub mod events;
pub mod images;
pub mod import;
pub mod inventory;
pub mod lease;
pub mod listen;
pub mod logging;
pub mod machine;
pub mod metrics;
pub mod power;
pub mod selector;
pub mod services;
pub mod templates;
pub mod text;
pub mod timeline;
pub mod tokens;

pub use config::Config;
pub use engine::Engine;
