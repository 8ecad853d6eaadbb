//! Two pickers: enrol an ignored DHCP client (a MAC that `known_only` keeps out) into a
//! profile, and a power action for machines with a BMC. Both end in a question that names
//! what they act on before anything happens.

use mayu::engine::ProfileStatus;
use mayu::machine::{Mac, Machine, MachineId};
use mayu::power::PowerAction;
use std::collections::HashMap;

use super::dialogs::{list_step, machines_named, ConfirmState, Dialog, Step, Then};
use crate::action::{Action, Command};

/// Whether `p` has a seat left.
fn has_room(p: &ProfileStatus) -> bool {
    p.quantity.is_none_or(|q| p.assigned < q)
}

/// Enrol `mac`: the profiles, then "no profile (hold it)".
#[derive(Debug, Clone, PartialEq)]
pub struct EnrolState {
    pub mac: Mac,
    /// indexes `App::profiles`; `profiles.len()` is "no profile".
    pub selected: usize,
}

impl EnrolState {
    /// Starts on the first profile with room (a full one is never the default).
    pub fn new(mac: Mac, profiles: &[ProfileStatus]) -> EnrolState {
        let selected = profiles.iter().position(has_room).unwrap_or(profiles.len());
        EnrolState { mac, selected }
    }

    pub(super) fn on(&mut self, action: &Action, profiles: &[ProfileStatus]) -> Step {
        // the last entry is "no profile"
        if let Some(step) = list_step(action, &mut self.selected, profiles.len()) {
            return step;
        }
        match action {
            Action::Submit => {
                let profile = profiles.get(self.selected);
                if profile.is_some_and(|p| !has_room(p)) {
                    return Step::Stay;
                }
                let mac = self.mac;
                let into = profile.map_or_else(
                    || "and hold it for an operator".to_string(),
                    |p| format!("into {}", p.name),
                );
                Step::Replace(Dialog::Confirm(ConfirmState {
                    title: format!("Enrol {mac}"),
                    question: vec![
                        format!("{mac} becomes a machine {into}; dnsmasq answers it from its next DHCP request."),
                        format!("Enrol {mac}?"),
                    ],
                    yes: "enrol".into(),
                    then: Then::Run {
                        status: format!("enrolling {mac}…"),
                        command: Box::new(Command::Enrol {
                            mac,
                            profile: profile.map(|p| p.name.clone()),
                        }),
                    },
                }))
            }
            _ => Step::Stay,
        }
    }
}

/// What the power picker offers, in its order.
pub const POWER_ACTIONS: [(PowerAction, &str); 5] = [
    (PowerAction::Status, "ask the BMC"),
    (PowerAction::On, "power on"),
    (PowerAction::Off, "power off (hard)"),
    (PowerAction::Cycle, "power cycle"),
    (
        PowerAction::Reinstall,
        "reinstall now: network boot next, then cycle",
    ),
];

/// A power action for `ids`.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerState {
    pub ids: Vec<MachineId>,
    /// indexes [`POWER_ACTIONS`].
    pub selected: usize,
}

impl PowerState {
    pub(super) fn on(&mut self, action: &Action, machines: &HashMap<MachineId, Machine>) -> Step {
        if let Some(step) = list_step(action, &mut self.selected, POWER_ACTIONS.len() - 1) {
            return step;
        }
        match action {
            Action::Submit => {
                let (what, says) = POWER_ACTIONS[self.selected.min(POWER_ACTIONS.len() - 1)];
                let named = machines_named(&self.ids, machines);
                let command = Command::Power {
                    ids: self.ids.clone(),
                    action: what,
                };
                let run = Then::Run {
                    status: format!("power {} {named}…", what.as_str()),
                    command: Box::new(command),
                };
                // asking the BMC changes nothing: no question
                if what == PowerAction::Status {
                    let Then::Run { status, command } = run else {
                        return Step::Close;
                    };
                    return Step::Finish {
                        status,
                        command: Some(*command),
                    };
                }
                Step::Replace(Dialog::Confirm(ConfirmState {
                    title: format!("Power {}", what.as_str()),
                    question: vec![
                        format!("{says}: {named}."),
                        format!("{} {named}?", capitalised(what.as_str())),
                    ],
                    yes: what.as_str().into(),
                    then: run,
                }))
            }
            _ => Step::Stay,
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
