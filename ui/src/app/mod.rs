//! The console's state ([`App`]) and the pure [`update`] that applies an [`Action`] to it,
//! returning at most one [`Command`] for the runner. No I/O and no clock in here: times come
//! from the events themselves, so every transition is testable.
//!
//! [`Action`]: crate::action::Action
//! [`Command`]: crate::action::Command

mod choose;
mod dialogs;
mod log;
mod observe;
mod rows;
mod state;
#[cfg(test)]
mod tests;
mod update;

pub use choose::{EnrolState, PowerState, POWER_ACTIONS};
pub use dialogs::{
    machine_name, machines_named, override_value, AssignState, ConfirmForceState, ConfirmState,
    Dialog, EditState, EventState, OverrideState, RackState, Then, EDIT_FIELDS,
};
pub use log::{append_collapsed, Level, LogLine};
pub use rows::{filter_help, natural_cmp, rack_text, FilterField, FILTER_FIELDS};
pub use state::{
    operator_label, operator_name, App, Setup, Status, TemplateStatus, NEW_FOR, STATUS_FOR,
};
pub use update::update;
