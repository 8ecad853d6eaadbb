//! The dialogs over the page, each with its own state type that a key press changes in
//! place; what a press leads to beyond the dialog comes back as a [`Step`].

use std::collections::HashMap;

use mayu::engine::{Edit, ProfileStatus};
use mayu::machine::{Machine, MachineId, Rack};

use super::log::LogLine;
use crate::action::{Action, Command};

/// Fields of the edit form, in tab order.
pub const EDIT_FIELDS: [&str; 4] = ["hostname", "rack", "unit", "notes"];

#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    Help,
    Assign(AssignState),
    ConfirmForce(ConfirmForceState),
    Edit(EditState),
    Override(OverrideState),
    Event(EventState),
}

/// What a key press in a dialog asks of the app.
#[derive(Debug)]
pub(super) enum Step {
    /// the dialog stays open (it may have changed).
    Stay,
    Close,
    /// close it, say so on the status line, and hand the runner the command if any.
    Finish {
        status: String,
        command: Option<Command>,
    },
    /// open this dialog in its place.
    Replace(Dialog),
}

/// Closes the help on the keys that opened or confirm it.
pub(super) fn help_step(action: &Action) -> Step {
    match action {
        Action::Back | Action::Help | Action::Submit => Step::Close,
        _ => Step::Stay,
    }
}

/// The profile picker.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignState {
    pub id: MachineId,
    /// indexes `App::profiles`.
    pub selected: usize,
}

impl AssignState {
    /// Starts on the machine's current profile, else the first.
    pub fn new(id: MachineId, current: Option<&str>, profiles: &[ProfileStatus]) -> AssignState {
        let selected = current
            .and_then(|c| profiles.iter().position(|p| p.name == c))
            .unwrap_or(0);
        AssignState { id, selected }
    }

    pub(super) fn on(
        &mut self,
        action: &Action,
        profiles: &[ProfileStatus],
        machines: &HashMap<MachineId, Machine>,
    ) -> Step {
        match action {
            Action::Back => Step::Close,
            Action::Up => {
                self.selected = self.selected.saturating_sub(1);
                Step::Stay
            }
            Action::Down => {
                self.selected = (self.selected + 1).min(profiles.len().saturating_sub(1));
                Step::Stay
            }
            Action::Submit => {
                let Some(p) = profiles.get(self.selected) else {
                    return Step::Close;
                };
                let id = self.id.clone();
                let already =
                    machines.get(&id).and_then(|m| m.profile.as_deref()) == Some(p.name.as_str());
                match p.quantity {
                    Some(quantity) if !already && p.assigned >= quantity => {
                        Step::Replace(Dialog::ConfirmForce(ConfirmForceState {
                            id,
                            profile: p.name.clone(),
                            assigned: p.assigned,
                            quantity,
                        }))
                    }
                    _ => Step::Finish {
                        status: format!("assigning {id} to {}…", p.name),
                        command: Some(Command::Assign {
                            id,
                            profile: p.name.clone(),
                            force: false,
                        }),
                    },
                }
            }
            _ => Step::Stay,
        }
    }
}

/// The chosen profile is full: assigning forces it past its quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfirmForceState {
    pub id: MachineId,
    pub profile: String,
    pub assigned: u32,
    pub quantity: u32,
}

impl ConfirmForceState {
    pub(super) fn on(&self, action: &Action) -> Step {
        match action {
            Action::Confirm(true) | Action::Submit => Step::Finish {
                status: format!("assigning {} to {} (forced)…", self.id, self.profile),
                command: Some(Command::Assign {
                    id: self.id.clone(),
                    profile: self.profile.clone(),
                    force: true,
                }),
            },
            Action::Confirm(false) | Action::Back => Step::Finish {
                status: "assignment cancelled".into(),
                command: None,
            },
            _ => Step::Stay,
        }
    }
}

/// The edit form: hostname, rack, unit and notes.
#[derive(Debug, Clone, PartialEq)]
pub struct EditState {
    pub id: MachineId,
    /// in [`EDIT_FIELDS`] order.
    pub fields: [String; 4],
    pub focus: usize,
    pub error: Option<String>,
}

impl EditState {
    /// The form filled with the machine's current values.
    pub fn new(m: &Machine) -> EditState {
        let rack = m.rack.as_ref();
        EditState {
            id: m.id.clone(),
            fields: [
                m.hostname.clone().unwrap_or_default(),
                rack.map(|r| r.rack.clone()).unwrap_or_default(),
                rack.and_then(|r| r.unit)
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                m.notes.clone(),
            ],
            focus: 0,
            error: None,
        }
    }

    pub(super) fn on(&mut self, action: &Action, machine: Option<&Machine>) -> Step {
        let n = EDIT_FIELDS.len();
        match action {
            Action::Back => return Step::Close,
            Action::NextField | Action::Down => self.focus = (self.focus + 1) % n,
            Action::Up => self.focus = (self.focus + n - 1) % n,
            Action::Input(c) => {
                self.fields[self.focus].push(*c);
                self.error = None;
            }
            Action::Backspace => {
                self.fields[self.focus].pop();
                self.error = None;
            }
            Action::Submit => match edit_from_form(machine, &self.fields) {
                Ok(Some(edit)) => {
                    return Step::Finish {
                        status: format!("saving {}…", self.id),
                        command: Some(Command::Edit {
                            id: self.id.clone(),
                            edit,
                        }),
                    }
                }
                Ok(None) => {
                    return Step::Finish {
                        status: "nothing changed".into(),
                        command: None,
                    }
                }
                Err(e) => self.error = Some(e),
            },
            _ => {}
        }
        Step::Stay
    }
}

/// The template-env override form: one key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideState {
    pub id: MachineId,
    pub key: String,
    pub value: String,
    /// 0 the key, 1 the value.
    pub focus: usize,
    pub error: Option<String>,
}

impl OverrideState {
    pub fn new(id: MachineId) -> OverrideState {
        OverrideState {
            id,
            key: String::new(),
            value: String::new(),
            focus: 0,
            error: None,
        }
    }

    fn focused(&mut self) -> &mut String {
        if self.focus == 0 {
            &mut self.key
        } else {
            &mut self.value
        }
    }

    pub(super) fn on(&mut self, action: &Action) -> Step {
        match action {
            Action::Back => return Step::Close,
            Action::NextField | Action::Down | Action::Up => self.focus = 1 - self.focus,
            Action::Input(c) => {
                self.focused().push(*c);
                self.error = None;
            }
            Action::Backspace => {
                self.focused().pop();
                self.error = None;
            }
            Action::Submit => {
                let k = self.key.trim().to_string();
                if k.is_empty() || k.contains(char::is_whitespace) {
                    self.focus = 0;
                    self.error = Some("the key is one word, e.g. role".into());
                } else {
                    let mut edit = Edit::default();
                    edit.overrides
                        .insert(k.clone(), override_value(&self.value));
                    return Step::Finish {
                        status: format!("overriding {k} on {}…", self.id),
                        command: Some(Command::Edit {
                            id: self.id.clone(),
                            edit,
                        }),
                    };
                }
            }
            _ => {}
        }
        Step::Stay
    }
}

/// One event-log line in full, wrapped.
#[derive(Debug, Clone, PartialEq)]
pub struct EventState {
    pub line: LogLine,
    /// in wrapped lines; the view stops scrolling at the end of the text.
    pub scroll: u16,
}

impl EventState {
    pub(super) fn on(&mut self, action: &Action) -> Step {
        self.scroll = match action {
            Action::Back | Action::Help | Action::Submit => return Step::Close,
            Action::Up => self.scroll.saturating_sub(1),
            Action::Down => self.scroll.saturating_add(1),
            Action::PageUp => self.scroll.saturating_sub(10),
            Action::PageDown => self.scroll.saturating_add(10),
            Action::Top => 0,
            _ => self.scroll,
        };
        Step::Stay
    }
}

/// An empty value removes the override; JSON (numbers, booleans, lists) is taken as such,
/// anything else as a string, so `role=worker` needs no quotes.
pub fn override_value(value: &str) -> Option<serde_json::Value> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    Some(
        serde_json::from_str::<serde_json::Value>(v)
            .unwrap_or_else(|_| serde_json::Value::String(v.to_string())),
    )
}

/// The engine edit for the form's changed fields; `Ok(None)` when nothing changed.
fn edit_from_form(m: Option<&Machine>, fields: &[String; 4]) -> Result<Option<Edit>, String> {
    let [hostname, rack, unit, notes] = fields.each_ref().map(|s| s.trim().to_string());
    let mut edit = Edit::default();
    let old_host = m.and_then(|m| m.hostname.clone()).unwrap_or_default();
    if hostname != old_host {
        if hostname.is_empty() {
            return Err("a hostname cannot be removed, only changed".into());
        }
        edit.hostname = Some(hostname);
    }
    let unit = if unit.is_empty() {
        None
    } else {
        Some(
            unit.parse::<u32>()
                .map_err(|_| format!("unit `{unit}` is not a number; use e.g. 12"))?,
        )
    };
    let new_rack = (!rack.is_empty()).then(|| Rack {
        rack: rack.clone(),
        unit,
    });
    if rack.is_empty() && unit.is_some() {
        return Err("a unit needs a rack".into());
    }
    if new_rack.is_some() && new_rack.as_ref() != m.and_then(|m| m.rack.as_ref()) {
        edit.rack = new_rack;
    }
    if notes != m.map(|m| m.notes.trim().to_string()).unwrap_or_default() {
        edit.notes = Some(notes);
    }
    let changed = edit.hostname.is_some() || edit.rack.is_some() || edit.notes.is_some();
    Ok(changed.then_some(edit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_parses_json_or_text_and_empty_removes() {
        assert_eq!(override_value("3"), Some(serde_json::json!(3)));
        assert_eq!(
            override_value("storage"),
            Some(serde_json::json!("storage"))
        );
        assert_eq!(override_value("[1,2]"), Some(serde_json::json!([1, 2])));
        assert_eq!(override_value("  "), None);
    }
}
