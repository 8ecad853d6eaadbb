//! The dialogs over the page, each with its own state type that a key press changes in
//! place; what a press leads to beyond the dialog comes back as a [`Step`].

use std::collections::HashMap;

use mayu::engine::{Edit, ProfileStatus};
use mayu::machine::{Machine, MachineId, Rack};

use super::choose::{EnrolState, PowerState};
use super::log::LogLine;
use crate::action::{Action, Command, Undo};

/// Fields of the edit form, in tab order.
pub const EDIT_FIELDS: [&str; 4] = ["hostname", "rack", "unit", "notes"];

#[derive(Debug, Clone)]
pub enum Dialog {
    /// the key table; the number is how far it is scrolled (a short terminal shows part).
    Help(u16),
    Assign(AssignState),
    ConfirmForce(ConfirmForceState),
    /// a yes/no question before something that is hard to take back.
    Confirm(ConfirmState),
    Edit(EditState),
    /// one rack for the marked machines.
    Rack(RackState),
    Override(OverrideState),
    Event(EventState),
    /// enrol an ignored DHCP client into a profile.
    Enrol(EnrolState),
    /// a power action for machines with a BMC.
    Power(PowerState),
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
    /// stop the console (and with it the services).
    Quit,
}

/// Closes the help on the keys that opened or confirm it; the movement keys scroll it (the
/// view stops at its end).
pub(super) fn help_step(action: &Action, scroll: &mut u16) -> Step {
    *scroll = match action {
        Action::Back | Action::Help | Action::Submit => return Step::Close,
        Action::Up => scroll.saturating_sub(1),
        Action::Down => scroll.saturating_add(1),
        Action::PageUp => scroll.saturating_sub(10),
        Action::PageDown => scroll.saturating_add(10),
        Action::Top => 0,
        _ => *scroll,
    };
    Step::Stay
}

/// A picker's list cursor over `last + 1` entries: Back closes, Up and Down move (stopping at
/// the ends). `None` for any other action, which the picker handles itself.
pub(super) fn list_step(action: &Action, selected: &mut usize, last: usize) -> Option<Step> {
    match action {
        Action::Back => Some(Step::Close),
        Action::Up => {
            *selected = selected.saturating_sub(1);
            Some(Step::Stay)
        }
        Action::Down => {
            *selected = (*selected + 1).min(last);
            Some(Step::Stay)
        }
        _ => None,
    }
}

/// The profile picker, for one machine or the marked ones.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignState {
    /// the machines to assign, in table order.
    pub ids: Vec<MachineId>,
    /// indexes `App::profiles`.
    pub selected: usize,
}

/// Whether `p` takes `more` machines without going past its quantity.
fn has_room(p: &ProfileStatus, more: u32) -> bool {
    p.quantity
        .is_none_or(|q| p.assigned.saturating_add(more) <= q)
}

/// `r1-u04 (worker-04)`: the id, and the hostname an operator gave it.
pub fn machine_name(id: &MachineId, machines: &HashMap<MachineId, Machine>) -> String {
    match machines.get(id).and_then(|m| m.hostname.as_deref()) {
        Some(h) if h != id.as_str() => format!("{id} ({h})"),
        _ => id.to_string(),
    }
}

/// `r1-u04 (worker-04)` for one machine, `3 machines (r1-u03, r1-u04, r1-u05)` for several
/// (the first few named).
pub fn machines_named(ids: &[MachineId], machines: &HashMap<MachineId, Machine>) -> String {
    match ids {
        [one] => machine_name(one, machines),
        _ => {
            let shown: Vec<&str> = ids.iter().take(4).map(|i| i.as_str()).collect();
            let more = if ids.len() > shown.len() { ", …" } else { "" };
            format!("{} machines ({}{more})", ids.len(), shown.join(", "))
        }
    }
}

/// Each machine with the profile it has now: what an undo puts back.
pub(super) fn undo_of(
    did: String,
    ids: &[MachineId],
    machines: &HashMap<MachineId, Machine>,
) -> Undo {
    Undo {
        did,
        before: ids
            .iter()
            .map(|id| (id.clone(), machines.get(id).and_then(|m| m.profile.clone())))
            .collect(),
    }
}

impl AssignState {
    /// Starts on the machine's current profile when it is one machine, else on the first
    /// profile with room for them all (a full profile only when every one is full).
    pub fn new(
        ids: Vec<MachineId>,
        current: Option<&str>,
        profiles: &[ProfileStatus],
    ) -> AssignState {
        let more = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let on_current = current
            .filter(|_| ids.len() == 1)
            .and_then(|c| profiles.iter().position(|p| p.name == c));
        let selected = on_current
            .or_else(|| profiles.iter().position(|p| has_room(p, more)))
            .unwrap_or(0);
        AssignState { ids, selected }
    }

    pub(super) fn on(
        &mut self,
        action: &Action,
        profiles: &[ProfileStatus],
        machines: &HashMap<MachineId, Machine>,
    ) -> Step {
        if let Some(step) = list_step(action, &mut self.selected, profiles.len().saturating_sub(1))
        {
            return step;
        }
        match action {
            Action::Submit => match profiles.get(self.selected) {
                Some(p) => self.submit(p, machines),
                None => Step::Close,
            },
            _ => Step::Stay,
        }
    }

    fn submit(&self, p: &ProfileStatus, machines: &HashMap<MachineId, Machine>) -> Step {
        // machines already in the profile take no new seat
        let moving: Vec<MachineId> = self
            .ids
            .iter()
            .filter(|id| machines.get(*id).and_then(|m| m.profile.as_deref()) != Some(&p.name))
            .cloned()
            .collect();
        let more = u32::try_from(moving.len()).unwrap_or(u32::MAX);
        let full = !moving.is_empty() && !has_room(p, more);
        match (self.ids.as_slice(), p.quantity) {
            ([id], Some(quantity)) if full => {
                Step::Replace(Dialog::ConfirmForce(ConfirmForceState {
                    id: id.clone(),
                    profile: p.name.clone(),
                    assigned: p.assigned,
                    quantity,
                    undo: Some(undo_of(
                        format!("assign {id} to {}", p.name),
                        &self.ids,
                        machines,
                    )),
                }))
            }
            ([id], _) => Step::Finish {
                status: format!("assigning {id} to {}…", p.name),
                command: Some(Command::Assign {
                    id: id.clone(),
                    profile: p.name.clone(),
                    force: false,
                    undo: Some(undo_of(
                        format!("assign {id} to {}", p.name),
                        &self.ids,
                        machines,
                    )),
                }),
            },
            (ids, quantity) => {
                let named = machines_named(ids, machines);
                let did = format!("assign {} machines to {}", ids.len(), p.name);
                let run = |force: bool| {
                    let commands = ids
                        .iter()
                        .map(|id| Command::Assign {
                            id: id.clone(),
                            profile: p.name.clone(),
                            force,
                            undo: None,
                        })
                        .collect();
                    Command::Batch {
                        what: did.clone(),
                        commands,
                        undo: Some(undo_of(did.clone(), ids, machines)),
                    }
                };
                match quantity {
                    Some(q) if full => Step::Replace(Dialog::Confirm(ConfirmState {
                        title: format!("Profile {} has no room", p.name),
                        question: vec![
                            format!(
                                "{} has {} of {q} assigned; {more} more go past its quantity.",
                                p.name, p.assigned
                            ),
                            format!("Assign {named} anyway?"),
                        ],
                        yes: "force them".into(),
                        then: Then::Run {
                            status: format!("{did} (forced)…"),
                            command: Box::new(run(true)),
                        },
                    })),
                    _ => Step::Finish {
                        status: format!("{did}…"),
                        command: Some(run(false)),
                    },
                }
            }
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
    /// what `z` puts back once the forced assignment landed.
    pub undo: Option<Undo>,
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
                    undo: self.undo.clone(),
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

/// What a yes to a [`ConfirmState`] does.
#[derive(Debug, Clone)]
pub enum Then {
    /// stop the console and the boot services.
    Quit,
    /// hand the runner `command`, saying `status`.
    Run {
        status: String,
        command: Box<Command>,
    },
}

/// A yes/no question before an action that is hard to take back: quitting while machines
/// boot, unassign, reinstall, retire, bulk actions (and, later, power actions). Enter or y
/// says yes; n, q or Esc says no.
#[derive(Debug, Clone)]
pub struct ConfirmState {
    pub title: String,
    /// what will happen, naming the machines; the last line is the question.
    pub question: Vec<String>,
    /// the yes key's label: `stop services`, `unassign`.
    pub yes: String,
    pub then: Then,
}

impl ConfirmState {
    pub(super) fn on(&self, action: &Action) -> Step {
        match action {
            Action::Confirm(true) | Action::Submit => match &self.then {
                Then::Quit => Step::Quit,
                Then::Run { status, command } => Step::Finish {
                    status: status.clone(),
                    command: Some(Command::clone(command)),
                },
            },
            Action::Confirm(false) | Action::Back => Step::Finish {
                status: format!("{}: cancelled", self.title),
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

/// The bulk rack form: one rack for every marked machine; a first unit numbers them up from
/// it in table order, an empty one keeps each machine's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct RackState {
    /// in table order.
    pub ids: Vec<MachineId>,
    pub rack: String,
    pub first_unit: String,
    /// 0 the rack, 1 the first unit.
    pub focus: usize,
    pub error: Option<String>,
}

impl RackState {
    /// Starts with the rack the machines share, if they do.
    pub fn new(ids: Vec<MachineId>, machines: &HashMap<MachineId, Machine>) -> RackState {
        let mut racks = ids.iter().map(|id| {
            machines
                .get(id)
                .and_then(|m| m.rack.as_ref())
                .map(|r| &r.rack)
        });
        let first = racks.next().flatten();
        let shared = racks.all(|r| r == first);
        RackState {
            rack: first.filter(|_| shared).cloned().unwrap_or_default(),
            ids,
            first_unit: String::new(),
            focus: 0,
            error: None,
        }
    }

    fn focused(&mut self) -> &mut String {
        if self.focus == 0 {
            &mut self.rack
        } else {
            &mut self.first_unit
        }
    }

    pub(super) fn on(&mut self, action: &Action, machines: &HashMap<MachineId, Machine>) -> Step {
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
            Action::Submit => match self.edits(machines) {
                Ok(commands) => {
                    let what = format!("rack {} for {} machines", self.rack.trim(), self.ids.len());
                    return Step::Finish {
                        status: format!("{what}…"),
                        command: Some(Command::Batch {
                            what,
                            commands,
                            undo: None,
                        }),
                    };
                }
                Err(e) => self.error = Some(e),
            },
            _ => {}
        }
        Step::Stay
    }

    fn edits(&self, machines: &HashMap<MachineId, Machine>) -> Result<Vec<Command>, String> {
        let rack = self.rack.trim();
        if rack.is_empty() {
            return Err("the rack needs a name, e.g. r3".into());
        }
        let first = match self.first_unit.trim() {
            "" => None,
            u => Some(
                u.parse::<u32>()
                    .map_err(|_| format!("unit `{u}` is not a number; use e.g. 12"))?,
            ),
        };
        Ok(self
            .ids
            .iter()
            .zip(0u32..)
            .map(|(id, i)| {
                let kept = machines
                    .get(id)
                    .and_then(|m| m.rack.as_ref())
                    .and_then(|r| r.unit);
                let edit = Edit {
                    rack: Some(Rack {
                        rack: rack.to_string(),
                        unit: first.map(|f| f.saturating_add(i)).or(kept),
                    }),
                    ..Edit::default()
                };
                Command::Edit {
                    id: id.clone(),
                    edit,
                }
            })
            .collect())
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
