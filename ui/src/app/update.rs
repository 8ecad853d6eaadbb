//! The update loop: [`update`] applies one [`Action`] (a key, a bus event, a finished
//! command) to the [`App`] and returns the work the runner must do, if any.

use mayu::events::{Event, EventKind};
use mayu::lease::ServiceState;
use mayu::machine::Machine;
use time::OffsetDateTime;

use super::dialogs::{
    help_step, AssignState, ConfirmForceState, Dialog, EditState, EventState, OverrideState, Step,
};
use super::log::Level;
use super::state::{App, TemplateStatus};
use crate::action::{Action, Command, Outcome, Page, Pane};

/// Applies one action. Returns the work the runner must do, if any.
pub fn update(app: &mut App, action: Action) -> Option<Command> {
    match action {
        Action::Bus(ev) => on_bus(app, &ev),
        Action::Resync {
            snapshot,
            leases,
            services,
            lost,
        } => {
            let at = app
                .log
                .back()
                .map(|l| l.at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            app.load_snapshot(snapshot);
            app.set_leases(leases);
            app.set_services(services);
            app.note(
                at,
                Level::Warn,
                format!("console fell {lost} events behind; state re-read"),
            );
            app.history = None;
            app.prepare();
            app.want_history()
        }
        Action::LeasesLoaded(leases) => {
            app.set_leases(leases);
            None
        }
        Action::HistoryLoaded { id, result } => {
            app.history = Some((id, result));
            None
        }
        Action::Done { what, outcome } => match outcome {
            Outcome::Ok => {
                app.set_status(format!("{what}: done"), false);
                // the change is a new commit: show it in the history
                app.history = None;
                app.want_history()
            }
            Outcome::Full {
                id,
                profile,
                quantity,
            } => {
                let assigned = app
                    .profiles
                    .iter()
                    .find(|p| p.name == profile)
                    .map(|p| p.assigned)
                    .unwrap_or(quantity);
                app.dialog = Some(Dialog::ConfirmForce(ConfirmForceState {
                    id,
                    profile,
                    assigned,
                    quantity,
                }));
                None
            }
            Outcome::Failed(e) => {
                app.set_status(format!("{what}: {e}"), true);
                None
            }
        },
        Action::Quit => {
            app.quit = true;
            Some(Command::Quit)
        }
        other => {
            app.prepare();
            if app.dialog.is_some() {
                on_dialog(app, &other)
            } else if app.filter_editing {
                on_filter(app, other)
            } else {
                on_key(app, other)
            }
        }
    }
}

/// A machine as its event brings it, counted into the fill levels in place of what it was.
fn follow(app: &mut App, machine: &Machine) {
    if let Some(old) = app.machines.remove(&machine.id) {
        app.count(&old, false);
    }
    app.count(machine, true);
    app.machines.insert(machine.id.clone(), machine.clone());
    app.rows_dirty = true;
}

/// Follows the engine: machines arrive whole (with their state) in their events, so the
/// console keeps what the engine says rather than working it out again.
fn on_bus(app: &mut App, ev: &Event) -> Option<Command> {
    app.record(ev);
    match &ev.kind {
        EventKind::MachineAdded { machine, .. } => {
            app.added_at.insert(machine.id.clone(), ev.at);
            follow(app, machine);
            None
        }
        EventKind::MachineChanged { machine, .. } => {
            follow(app, machine);
            if app.selected_id.as_ref() == Some(&machine.id) && app.detail_visible() {
                Some(Command::LoadHistory {
                    id: machine.id.clone(),
                })
            } else {
                None
            }
        }
        EventKind::MachineRetired { id, .. } => {
            if let Some(old) = app.machines.remove(id) {
                app.count(&old, false);
            }
            app.added_at.remove(id);
            app.last_event.remove(id);
            app.rows_dirty = true;
            None
        }
        EventKind::BootStep {
            id: Some(id),
            phase,
            ..
        } => {
            // The engine keeps phase times in memory and sends no machine change for them.
            // A state change (boot complete: running) comes as its own machine_changed.
            if let Some(m) = app.machines.get_mut(id) {
                m.phases.set(*phase, ev.at);
                app.rows_dirty = true;
            }
            None
        }
        EventKind::Leases { .. } => Some(Command::LoadLeases),
        EventKind::TemplatesReloaded { ok, errors } => {
            app.templates = TemplateStatus {
                ok: Some(*ok),
                errors: errors.clone(),
            };
            None
        }
        EventKind::Service {
            name,
            status,
            restarts,
            detail,
            problem,
        } => {
            app.services.insert(
                name.clone(),
                ServiceState {
                    name: name.clone(),
                    status: *status,
                    restarts: *restarts,
                    detail: detail.clone(),
                    since: ev.at,
                    problem: problem.clone(),
                },
            );
            None
        }
        _ => None,
    }
}

fn on_key(app: &mut App, action: Action) -> Option<Command> {
    match action {
        Action::Help => {
            app.dialog = Some(Dialog::Help);
            None
        }
        Action::Back => {
            if !app.filter.is_empty() {
                app.filter.clear();
                app.refresh_rows();
            } else if app.page != Page::Machines {
                app.page = Page::Machines;
            }
            app.status = None;
            None
        }
        Action::Up => app.move_by(-1),
        Action::Down => app.move_by(1),
        Action::PageUp => app.move_by(-10),
        Action::PageDown => app.move_by(10),
        Action::Top => app.move_by(-(isize::MAX / 2)),
        Action::Bottom => app.move_by(isize::MAX / 2),
        Action::NextPane => {
            match app.page {
                Page::Machines => {
                    app.focus = match app.focus {
                        Pane::Machines => Pane::Events,
                        Pane::Events => Pane::Machines,
                    }
                }
                _ => {
                    let i = Page::ALL.iter().position(|p| *p == app.page).unwrap_or(0);
                    app.page = Page::ALL[(i + 1) % Page::ALL.len()];
                }
            }
            None
        }
        Action::ShowPage(p) => {
            app.page = p;
            app.want_history()
        }
        Action::OpenDetail if app.events_focused() => {
            match app.selected_log() {
                Some(line) => {
                    app.dialog = Some(Dialog::Event(EventState {
                        line: line.clone(),
                        scroll: 0,
                    }))
                }
                None => app.set_status("no event selected", true),
            }
            None
        }
        Action::OpenDetail => {
            if app.selected_id.is_some() {
                app.page = Page::Detail;
                app.want_history()
            } else {
                None
            }
        }
        Action::StartFilter => {
            app.filter_editing = true;
            app.page = Page::Machines;
            None
        }
        Action::SortNext => {
            app.sort = app.sort.next();
            app.refresh_rows();
            app.set_status(format!("sorted by {}", app.sort.as_str()), false);
            None
        }
        Action::SortReverse => {
            app.sort_desc = !app.sort_desc;
            app.refresh_rows();
            None
        }
        Action::ToggleFollow => {
            app.toggle_follow();
            app.set_status(
                if app.follow {
                    "event log follows new events"
                } else {
                    "event log paused"
                },
                false,
            );
            None
        }
        Action::StartAssign => {
            let id = app.selected_machine_id()?;
            if app.profiles.is_empty() {
                app.set_status("no profiles configured", true);
                return None;
            }
            let current = app.machines.get(&id).and_then(|m| m.profile.as_deref());
            let picker = AssignState::new(id.clone(), current, &app.profiles);
            app.dialog = Some(Dialog::Assign(picker));
            None
        }
        Action::Unassign => {
            let id = app.selected_machine_id()?;
            app.set_status(format!("unassigning {id}…"), false);
            Some(Command::Unassign { id })
        }
        Action::Reinstall => {
            let id = app.selected_machine_id()?;
            app.set_status(format!("requesting reinstall of {id}…"), false);
            Some(Command::Reinstall { id })
        }
        Action::BootComplete => {
            let id = app.selected_machine_id()?;
            app.set_status(format!("marking {id} boot complete…"), false);
            Some(Command::BootComplete { id })
        }
        Action::StartEdit => {
            let id = app.selected_machine_id()?;
            let form = EditState::new(app.machines.get(&id)?);
            app.dialog = Some(Dialog::Edit(form));
            None
        }
        Action::StartOverride => {
            let id = app.selected_machine_id()?;
            app.dialog = Some(Dialog::Override(OverrideState::new(id)));
            None
        }
        _ => None,
    }
}

fn on_filter(app: &mut App, action: Action) -> Option<Command> {
    match action {
        Action::Input(c) => app.filter.push(c),
        Action::Backspace => {
            app.filter.pop();
        }
        Action::Submit => app.filter_editing = false,
        Action::Back => {
            app.filter_editing = false;
            app.filter.clear();
        }
        Action::Up | Action::Down => {
            app.filter_editing = false;
            return on_key(app, action);
        }
        _ => return None,
    }
    app.refresh_rows();
    None
}

/// Hands the key to the open dialog, which changes in place, then does what it asked.
fn on_dialog(app: &mut App, action: &Action) -> Option<Command> {
    let step = match app.dialog.as_mut()? {
        Dialog::Help => help_step(action),
        Dialog::Assign(picker) => picker.on(action, &app.profiles, &app.machines),
        Dialog::ConfirmForce(confirm) => confirm.on(action),
        Dialog::Edit(form) => {
            let machine = app.machines.get(&form.id);
            form.on(action, machine)
        }
        Dialog::Override(form) => form.on(action),
        Dialog::Event(popup) => popup.on(action),
    };
    match step {
        Step::Stay => None,
        Step::Close => {
            app.dialog = None;
            None
        }
        Step::Finish { status, command } => {
            app.dialog = None;
            app.set_status(status, false);
            command
        }
        Step::Replace(next) => {
            app.dialog = Some(next);
            None
        }
    }
}
