//! The update loop: [`update`] applies one [`Action`] (a key, a bus event, a finished
//! command) to the [`App`] and returns the work the runner must do, if any.

use mayu::events::{Event, EventKind};
use mayu::lease::ServiceState;
use mayu::machine::Machine;
use time::OffsetDateTime;

use mayu::machine::MachineId;

use super::choose::{EnrolState, PowerState};
use super::dialogs::{
    help_step, machines_named, AssignState, ConfirmForceState, ConfirmState, Dialog, EditState,
    EventState, OverrideState, RackState, Step, Then,
};
use super::log::Level;
use super::state::{App, TemplateStatus, STATUS_FOR};
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
        Action::Done {
            what,
            outcome,
            undo,
        } => match outcome {
            Outcome::Ok => {
                app.set_status(format!("{what}: done"), false);
                app.undo.extend(undo);
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
                    undo,
                }));
                None
            }
            Outcome::Failed(e) => {
                // a batch that partly landed can still be taken back for the part that did
                app.undo.extend(undo);
                app.set_status(format!("{what}: {e}"), true);
                None
            }
        },
        Action::Tick(now) => {
            app.now = now;
            let old = app
                .status
                .as_ref()
                .is_some_and(|s| !s.error && crate::view::since(now, s.at) >= STATUS_FOR);
            if old {
                app.status = None;
            }
            None
        }
        Action::Quit => quit(app),
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
    app.observe(ev);
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
                // as the engine does at once (its stall_ended event follows within a second)
                if mayu::engine::stalls::moved_on(m) {
                    m.stall = None;
                }
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

/// Quits at once when nothing is booting (or the quit question is already up: Ctrl-C twice);
/// else asks, naming how many machines would lose their boot services mid-boot.
fn quit(app: &mut App) -> Option<Command> {
    let asked = matches!(
        &app.dialog,
        Some(Dialog::Confirm(ConfirmState {
            then: Then::Quit,
            ..
        }))
    );
    let booting = app.booting_count(app.now);
    if booting == 0 || asked {
        app.quit = true;
        return Some(Command::Quit);
    }
    let are = if booting == 1 {
        "1 machine is".to_string()
    } else {
        format!("{booting} machines are")
    };
    app.dialog = Some(Dialog::Confirm(ConfirmState {
        title: "Quit".into(),
        question: vec![
            "The boot services stop with the console.".into(),
            format!("{are} booting; stop DHCP, TFTP and HTTP for all? y/N"),
        ],
        yes: "stop and quit".into(),
        then: Then::Quit,
    }));
    None
}

/// The machines an action is for: the marked ones in table order (those the filter hides
/// after them, by id), else the selection; a status line when there is none.
fn targets(app: &mut App) -> Option<Vec<MachineId>> {
    if app.marked.is_empty() {
        return app.selected_machine_id().map(|id| vec![id]);
    }
    let mut ids: Vec<MachineId> = app
        .rows
        .iter()
        .filter(|id| app.marked.contains(*id))
        .cloned()
        .collect();
    let mut hidden: Vec<MachineId> = app
        .marked
        .iter()
        .filter(|id| !ids.contains(*id))
        .cloned()
        .collect();
    hidden.sort_by(|a, b| super::rows::natural_cmp(a.as_str(), b.as_str()));
    ids.extend(hidden);
    Some(ids)
}

/// Asks before `make`'s command for `ids`: `verb` names it (`Unassign`), `consequence` says
/// what follows.
fn confirm_each(
    app: &mut App,
    ids: Vec<MachineId>,
    verb: &str,
    consequence: &str,
    make: fn(MachineId) -> Command,
) {
    let named = machines_named(&ids, &app.machines);
    let lower = verb.to_lowercase();
    let (status, command) = match ids.as_slice() {
        [one] => (format!("{lower} {one}…"), make(one.clone())),
        _ => {
            let what = format!("{lower} {} machines", ids.len());
            (
                format!("{what}…"),
                Command::Batch {
                    what,
                    commands: ids.iter().cloned().map(make).collect(),
                    undo: None,
                },
            )
        }
    };
    app.dialog = Some(Dialog::Confirm(ConfirmState {
        title: format!("{verb} {named}"),
        question: vec![consequence.to_string(), format!("{verb} {named}? y/N")],
        yes: lower,
        then: Then::Run {
            status,
            command: Box::new(command),
        },
    }));
}

/// `z`: puts back the profiles the newest assignment replaced, and says what it undid.
fn undo(app: &mut App) -> Option<Command> {
    let Some(last) = app.undo.pop() else {
        app.set_status("nothing to undo: no assignment made in this session", false);
        return None;
    };
    let back: Vec<String> = last
        .before
        .iter()
        .map(|(id, p)| match p {
            Some(p) => format!("{id} back to {p}"),
            None => format!("{id} unassigned"),
        })
        .collect();
    let what = format!("undo {} ({})", last.did, back.join(", "));
    let commands = last
        .before
        .into_iter()
        .map(|(id, before)| match before {
            Some(profile) => Command::Assign {
                id,
                profile,
                force: false,
                undo: None,
            },
            None => Command::Unassign { id },
        })
        .collect();
    app.set_status(format!("{what}…"), false);
    Some(Command::Batch {
        what,
        commands,
        undo: None,
    })
}

fn on_key(app: &mut App, action: Action) -> Option<Command> {
    match action {
        Action::Help => {
            app.dialog = Some(Dialog::Help(0));
            None
        }
        Action::Back => {
            if !app.filter.is_empty() {
                app.filter.clear();
                app.refresh_rows();
            } else if !app.marked.is_empty() {
                app.marked.clear();
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
        // on the leases page, `a` enrols the selected ignored client
        Action::StartAssign if app.page == Page::Leases => {
            let Some(client) = app.selected_ignored() else {
                app.set_status(
                    "select an ignored client (below the leases) to enrol it",
                    true,
                );
                return None;
            };
            app.dialog = Some(Dialog::Enrol(EnrolState::new(client.mac, &app.profiles)));
            None
        }
        Action::StartPower => {
            let ids = targets(app)?;
            let without: Vec<String> = ids
                .iter()
                .filter(|id| app.machines.get(*id).is_none_or(|m| m.ipmi_addr.is_none()))
                .map(|id| id.to_string())
                .collect();
            if !without.is_empty() {
                app.set_status(
                    format!(
                        "no BMC address for {}: set one with `mayuctl set ID ipmi-addr ADDR`",
                        without.join(", ")
                    ),
                    true,
                );
                return None;
            }
            app.dialog = Some(Dialog::Power(PowerState { ids, selected: 0 }));
            None
        }
        Action::StartAssign => {
            let ids = targets(app)?;
            if app.profiles.is_empty() {
                app.set_status("no profiles configured", true);
                return None;
            }
            let current = ids
                .first()
                .and_then(|id| app.machines.get(id))
                .and_then(|m| m.profile.as_deref());
            let picker = AssignState::new(ids.clone(), current, &app.profiles);
            app.dialog = Some(Dialog::Assign(picker));
            None
        }
        Action::Unassign => {
            let ids = targets(app)?;
            confirm_each(
                app,
                ids,
                "Unassign",
                "It leaves its profile and waits for an operator.",
                |id| Command::Unassign { id },
            );
            None
        }
        Action::Reinstall => {
            let ids = targets(app)?;
            confirm_each(
                app,
                ids,
                "Reinstall",
                "Its next boot installs its profile again, wiping the disk.",
                |id| Command::Reinstall { id },
            );
            None
        }
        Action::Retire => {
            let ids = targets(app)?;
            confirm_each(
                app,
                ids,
                "Retire",
                "It leaves the inventory (its history stays in git).",
                |id| Command::Retire { id },
            );
            None
        }
        Action::ToggleMark if app.page == Page::Leases => None,
        Action::ToggleMark => {
            let id = app.selected_machine_id()?;
            if !app.marked.remove(&id) {
                app.marked.insert(id);
            }
            let next = app.move_by(1);
            let n = app.marked.len();
            app.set_status(
                format!("{n} marked: a, e, u, r and X act on them all · Esc unmarks"),
                false,
            );
            next
        }
        Action::Undo => undo(app),
        Action::BootComplete => {
            let id = app.selected_machine_id()?;
            app.set_status(format!("marking {id} boot complete…"), false);
            Some(Command::BootComplete { id })
        }
        Action::StartEdit => {
            let ids = targets(app)?;
            let dialog = match ids.as_slice() {
                [one] => Dialog::Edit(EditState::new(app.machines.get(one)?)),
                _ => Dialog::Rack(RackState::new(ids, &app.machines)),
            };
            app.dialog = Some(dialog);
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
    // these act on the marked machines: done (or cancelled), the marks have served
    let on_marks = matches!(
        app.dialog,
        Some(Dialog::Assign(_) | Dialog::Rack(_) | Dialog::Confirm(_) | Dialog::ConfirmForce(_))
    );
    let step = match app.dialog.as_mut()? {
        Dialog::Help(scroll) => help_step(action, scroll),
        Dialog::Assign(picker) => picker.on(action, &app.profiles, &app.machines),
        Dialog::ConfirmForce(confirm) => confirm.on(action),
        Dialog::Edit(form) => {
            let machine = app.machines.get(&form.id);
            form.on(action, machine)
        }
        Dialog::Override(form) => form.on(action),
        Dialog::Rack(form) => form.on(action, &app.machines),
        Dialog::Confirm(question) => question.on(action),
        Dialog::Event(popup) => popup.on(action),
        Dialog::Enrol(picker) => picker.on(action, &app.profiles),
        Dialog::Power(picker) => picker.on(action, &app.machines),
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
            if on_marks && command.is_some() {
                app.marked.clear();
            }
            command
        }
        Step::Replace(next) => {
            app.dialog = Some(next);
            None
        }
        Step::Quit => {
            app.dialog = None;
            app.quit = true;
            Some(Command::Quit)
        }
    }
}
