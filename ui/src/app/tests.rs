//! The update loop driven the way the runner drives it: actions in, state and commands out.

use std::sync::Arc;
use std::time::Duration;

use mayu::engine::Snapshot;
use mayu::events::{Event, EventKind};
use mayu::lease::{Lease, ServiceStatus};
use mayu::machine::{Machine, MachineId, Phase, Rack, State};

use super::*;
use crate::action::{Action, Command, Outcome, Page, Pane, SortKey};
use crate::fixtures::{self, NOW};
use mayu::machine::Mac;

fn id(s: &str) -> MachineId {
    s.parse().unwrap()
}

fn bus(seq: u64, kind: EventKind) -> Action {
    Action::Bus(Arc::new(Event { seq, at: NOW, kind }))
}

fn new_machine(name: &str) -> Machine {
    let mut m = Machine::new(id(name), String::new(), NOW);
    m.macs = vec!["52:54:00:00:00:99".parse::<Mac>().unwrap()];
    m
}

#[test]
fn assign_picks_a_profile_and_sends_the_command() {
    let mut app = fixtures::session().unwrap();
    app.select(&id("r1-u05"));
    assert!(update(&mut app, Action::StartAssign).is_none());
    // the picker starts on the machine's current profile (worker, the second)
    match &app.dialog {
        Some(Dialog::Assign(a)) => {
            assert_eq!(
                a,
                &AssignState {
                    ids: vec![id("r1-u05")],
                    selected: 1
                }
            )
        }
        other => panic!("expected the picker, got {other:?}"),
    }
    update(&mut app, Action::Down);
    let cmd = update(&mut app, Action::Submit);
    match cmd {
        Some(Command::Assign {
            id: i,
            profile,
            force,
            ..
        }) => {
            assert_eq!(i, id("r1-u05"));
            assert_eq!(profile, "discovery");
            assert!(!force);
        }
        other => panic!("expected an assignment, got {other:?}"),
    }
    assert!(app.dialog.is_none());
}

#[test]
fn a_full_profile_asks_and_yes_forces() {
    let mut app = fixtures::session().unwrap();
    let waiting = id("4c4c4544-0042-3510-8052-b4c04f4b4e32");
    app.select(&waiting);
    update(&mut app, Action::StartAssign);
    // control-plane (3 of 3) is first; the picker starts past it, on worker
    update(&mut app, Action::Up);
    assert!(update(&mut app, Action::Submit).is_none());
    assert!(matches!(
        app.dialog,
        Some(Dialog::ConfirmForce(ConfirmForceState {
            assigned: 3,
            quantity: 3,
            ..
        }))
    ));
    match update(&mut app, Action::Confirm(true)) {
        Some(Command::Assign {
            force: true,
            profile,
            ..
        }) => {
            assert_eq!(profile, "control-plane")
        }
        other => panic!("expected a forced assignment, got {other:?}"),
    }
    // and "no" sends nothing
    update(&mut app, Action::StartAssign);
    update(&mut app, Action::Up);
    update(&mut app, Action::Submit);
    assert!(update(&mut app, Action::Confirm(false)).is_none());
    assert!(app.dialog.is_none());
}

#[test]
fn engine_refusing_a_full_profile_opens_the_confirmation() {
    let mut app = fixtures::session().unwrap();
    update(
        &mut app,
        Action::Done {
            what: "assign".into(),
            outcome: Outcome::Full {
                id: id("r1-u05"),
                profile: "control-plane".into(),
                quantity: 3,
            },
            undo: None,
        },
    );
    assert!(matches!(app.dialog, Some(Dialog::ConfirmForce(_))));
}

#[test]
fn new_machines_appear_highlighted_and_counted() {
    let mut app = fixtures::empty().unwrap();
    let m = new_machine("zz-new");
    update(
        &mut app,
        bus(
            1,
            EventKind::MachineAdded {
                machine: Box::new(m),
                actor: "zz-new".into(),
            },
        ),
    );
    app.prepare();
    assert_eq!(app.rows, vec![id("zz-new")]);
    assert_eq!(app.selected_id, Some(id("zz-new")));
    assert_eq!(app.waiting, 1);
    assert!(app.is_new(&id("zz-new"), NOW + time::Duration::seconds(2)));
    assert!(!app.is_new(&id("zz-new"), NOW + time::Duration::seconds(60)));
    assert_eq!(app.log.back().unwrap().text, "zz-new registered (zz-new)");
    assert_eq!(app.last_event[&id("zz-new")].1, "registered");
}

#[test]
fn changes_recount_profiles() {
    let mut app = fixtures::session().unwrap();
    let worker = |app: &App| {
        app.profiles
            .iter()
            .find(|p| p.name == "worker")
            .unwrap()
            .assigned
    };
    let before = worker(&app);
    let mut m = app.machines[&id("4c4c4544-0042-3510-8052-b4c04f4b4e32")].clone();
    m.profile = Some("worker".into());
    update(
        &mut app,
        bus(
            500,
            EventKind::MachineChanged {
                machine: Box::new(m),
                change: "assigned to worker".into(),
                actor: "alice".into(),
            },
        ),
    );
    app.prepare();
    assert_eq!(worker(&app), before + 1);
    assert_eq!(app.waiting, 1);
}

#[test]
fn selection_stays_on_its_machine_when_rows_move() {
    let mut app = fixtures::session().unwrap();
    app.select(&id("r1-u04"));
    let before = app.selected;
    // "0-first" sorts before every fixture id
    update(
        &mut app,
        bus(
            501,
            EventKind::MachineAdded {
                machine: Box::new(new_machine("0-first")),
                actor: "0-first".into(),
            },
        ),
    );
    app.prepare();
    assert_eq!(app.selected_id, Some(id("r1-u04")));
    assert_eq!(app.selected, before + 1);
}

#[test]
fn boot_steps_move_the_phase_and_stalls_show() {
    let mut app = fixtures::session().unwrap();
    let r106 = app.machines[&id("r1-u06")].clone();
    // initrd 14 minutes ago, worker stalls after the default 10
    assert!(app.phase_of(&r106, NOW).unwrap().2);
    update(
        &mut app,
        bus(
            502,
            EventKind::BootStep {
                id: Some(id("r1-u06")),
                phase: Phase::Config,
                detail: "ignition".into(),
                bytes: None,
                duration_ms: None,
                profile: None,
            },
        ),
    );
    let r106 = &app.machines[&id("r1-u06")];
    let (phase, d, stalled) = app.phase_of(r106, NOW).unwrap();
    assert_eq!(phase, Phase::Config);
    assert_eq!(d, Duration::ZERO);
    assert!(!stalled, "a step on clears the stall at once");
    // The engine says when a machine stalls and when that ends; the console only follows.
    let stall = mayu::machine::Stall {
        phase: Phase::Config,
        since: NOW,
        after_secs: 600,
    };
    update(
        &mut app,
        bus(
            503,
            EventKind::Stalled {
                id: id("r1-u06"),
                stall,
                profile: Some("worker".into()),
            },
        ),
    );
    assert!(app.phase_of(&app.machines[&id("r1-u06")], NOW).unwrap().2);
    assert_eq!(app.stalled_count(NOW), 1);
    update(
        &mut app,
        bus(
            504,
            EventKind::StallEnded {
                id: id("r1-u06"),
                phase: Phase::Config,
                stalled_secs: 700,
                now_in: Some(Phase::BootComplete),
                profile: None,
            },
        ),
    );
    assert!(!app.phase_of(&app.machines[&id("r1-u06")], NOW).unwrap().2);
    assert_eq!(app.stalled_count(NOW), 0);
}

#[test]
fn filter_narrows_and_escape_clears() {
    let mut app = fixtures::session().unwrap();
    let all = app.rows.len();
    update(&mut app, Action::StartFilter);
    for c in "r2-".chars() {
        update(&mut app, Action::Input(c));
    }
    assert_eq!(app.rows, vec![id("r2-u01"), id("r2-u02")]);
    update(&mut app, Action::Submit);
    assert!(!app.filter_editing);
    assert_eq!(app.rows.len(), 2);
    update(&mut app, Action::Back);
    assert_eq!(app.rows.len(), all);
}

#[test]
fn sort_cycles_and_reverses() {
    let mut app = fixtures::session().unwrap();
    update(&mut app, Action::SortNext);
    assert_eq!(app.sort, SortKey::State);
    let first = app.machines[&app.rows[0]].state;
    assert_eq!(first, State::Waiting);
    update(&mut app, Action::SortReverse);
    assert_eq!(app.machines[&app.rows[0]].state, State::Running);
}

#[test]
fn edit_sends_only_changed_fields_and_checks_the_unit() {
    let mut app = fixtures::session().unwrap();
    app.select(&id("r1-u04"));
    update(&mut app, Action::StartEdit);
    // hostname field: replace "worker-04" with "worker-4a"
    update(&mut app, Action::Backspace);
    update(&mut app, Action::Backspace);
    update(&mut app, Action::Input('4'));
    update(&mut app, Action::Input('a'));
    update(&mut app, Action::NextField);
    update(&mut app, Action::NextField);
    update(&mut app, Action::Input('x'));
    assert!(update(&mut app, Action::Submit).is_none());
    match &app.dialog {
        Some(Dialog::Edit(EditState { error: Some(e), .. })) => {
            assert!(e.contains("not a number"), "{e}")
        }
        other => panic!("expected the form with an error, got {other:?}"),
    }
    update(&mut app, Action::Backspace);
    match update(&mut app, Action::Submit) {
        Some(Command::Edit { edit, .. }) => {
            assert_eq!(edit.hostname.as_deref(), Some("worker-4a"));
            assert!(edit.rack.is_none());
            assert!(edit.notes.is_none());
        }
        other => panic!("expected an edit, got {other:?}"),
    }
}

#[test]
fn override_form_refuses_an_empty_key_and_empty_value_removes() {
    let mut app = fixtures::session().unwrap();
    update(&mut app, Action::StartOverride);
    assert!(
        update(&mut app, Action::Submit).is_none(),
        "an empty key is refused"
    );
    for c in "role".chars() {
        update(&mut app, Action::Input(c));
    }
    update(&mut app, Action::NextField);
    match update(&mut app, Action::Submit) {
        Some(Command::Edit { edit, .. }) => {
            assert_eq!(edit.overrides.get("role"), Some(&None))
        }
        other => panic!("expected an edit, got {other:?}"),
    }
}

/// The confirmation's question, as one string.
fn question(app: &App) -> String {
    match &app.dialog {
        Some(Dialog::Confirm(q)) => q.question.join(" "),
        other => panic!("expected a confirmation, got {other:?}"),
    }
}

#[test]
fn unassign_reinstall_and_retire_ask_first_naming_the_machine() {
    let mut app = fixtures::session().unwrap();
    app.select(&id("r1-u04"));
    for (action, verb) in [
        (Action::Unassign, "Unassign"),
        (Action::Reinstall, "Reinstall"),
        (Action::Retire, "Retire"),
    ] {
        assert!(
            update(&mut app, action.clone()).is_none(),
            "{verb} acted at once"
        );
        let q = question(&app);
        assert!(q.contains(&format!("{verb} r1-u04 (worker-04)?")), "{q}");
        // n, q and Esc say no and send nothing
        assert!(update(&mut app, Action::Confirm(false)).is_none());
        assert!(app.dialog.is_none());
        assert!(app.status.as_ref().unwrap().text.contains("cancelled"));
        update(&mut app, action);
        match update(&mut app, Action::Confirm(true)) {
            Some(Command::Unassign { id: i }) => {
                assert_eq!((verb, i), ("Unassign", id("r1-u04")))
            }
            Some(Command::Reinstall { id: i }) => {
                assert_eq!((verb, i), ("Reinstall", id("r1-u04")))
            }
            Some(Command::Retire { id: i }) => assert_eq!((verb, i), ("Retire", id("r1-u04"))),
            other => panic!("{verb}: got {other:?}"),
        }
    }
    // boot complete is not destructive: at once
    assert!(matches!(
        update(&mut app, Action::BootComplete),
        Some(Command::BootComplete { .. })
    ));
    let mut empty = fixtures::empty().unwrap();
    assert!(update(&mut empty, Action::Unassign).is_none());
    assert!(empty.status.as_ref().unwrap().error);
    assert!(empty.dialog.is_none());
}

#[test]
fn quit_asks_while_machines_boot_and_says_how_many() {
    let mut app = fixtures::session().unwrap();
    app.now = NOW;
    let booting = app.booting_count(NOW);
    assert_eq!(booting, 5, "r1-u06 is stalled, not booting");
    assert!(update(&mut app, Action::Quit).is_none());
    assert!(!app.quit);
    assert!(
        question(&app).contains("5 machines are booting; stop DHCP, TFTP and HTTP for all? y/N"),
        "{}",
        question(&app)
    );
    // n keeps everything running
    assert!(update(&mut app, Action::Confirm(false)).is_none());
    assert!(!app.quit && app.dialog.is_none());
    // y quits; so does a second Ctrl-C
    update(&mut app, Action::Quit);
    assert!(matches!(
        update(&mut app, Action::Confirm(true)),
        Some(Command::Quit)
    ));
    assert!(app.quit);
    let mut again = fixtures::session().unwrap();
    again.now = NOW;
    update(&mut again, Action::Quit);
    assert!(matches!(
        update(&mut again, Action::Quit),
        Some(Command::Quit)
    ));
    // hours later nothing has booted for a while: one key quits
    let mut idle = fixtures::session().unwrap();
    update(&mut idle, Action::Tick(NOW + time::Duration::hours(2)));
    assert!(matches!(
        update(&mut idle, Action::Quit),
        Some(Command::Quit)
    ));
}

#[test]
fn the_picker_starts_on_a_profile_with_room() {
    let mut app = fixtures::session().unwrap();
    // waiting, no profile: control-plane is full, worker has room
    app.select(&id("4c4c4544-0042-3510-8052-b4c04f4b4e32"));
    update(&mut app, Action::StartAssign);
    assert!(matches!(
        &app.dialog,
        Some(Dialog::Assign(AssignState { selected: 1, .. }))
    ));
    // one already in the full profile starts on it
    update(&mut app, Action::Back);
    app.select(&id("r1-u03"));
    update(&mut app, Action::StartAssign);
    assert!(matches!(
        &app.dialog,
        Some(Dialog::Assign(AssignState { selected: 0, .. }))
    ));
}

/// Runs `cmd` as the engine would have, and reports it done.
fn land(app: &mut App, cmd: Option<Command>) {
    let (what, undo, changes) = match cmd {
        Some(Command::Assign {
            id, profile, undo, ..
        }) => (
            format!("assign {id} to {profile}"),
            undo,
            vec![(id, Some(profile))],
        ),
        Some(Command::Batch {
            what,
            commands,
            undo,
        }) => {
            let changes = commands
                .into_iter()
                .map(|c| match c {
                    Command::Assign { id, profile, .. } => (id, Some(profile)),
                    Command::Unassign { id } => (id, None),
                    other => panic!("not an assignment: {other:?}"),
                })
                .collect();
            (what, undo, changes)
        }
        other => panic!("expected an assignment, got {other:?}"),
    };
    for (i, (mid, profile)) in changes.into_iter().enumerate() {
        let mut m = app.machines[&mid].clone();
        m.profile = profile;
        update(
            app,
            bus(
                700 + i as u64 + app.log.len() as u64,
                EventKind::MachineChanged {
                    machine: Box::new(m),
                    change: "assigned".into(),
                    actor: "alice".into(),
                },
            ),
        );
    }
    update(
        app,
        Action::Done {
            what,
            outcome: Outcome::Ok,
            undo,
        },
    );
}

#[test]
fn z_undoes_the_last_assignment_and_says_what() {
    let mut app = fixtures::session().unwrap();
    // nothing yet
    assert!(update(&mut app, Action::Undo).is_none());
    assert_eq!(
        app.status.as_ref().unwrap().text,
        "nothing to undo: no assignment made in this session"
    );
    // r1-u05: worker → discovery, then the waiting one → worker
    app.select(&id("r1-u05"));
    update(&mut app, Action::StartAssign);
    update(&mut app, Action::Down);
    let cmd = update(&mut app, Action::Submit);
    land(&mut app, cmd);
    let waiting = id("4c4c4544-0042-3510-8052-b4c04f4b4e32");
    app.select(&waiting);
    update(&mut app, Action::StartAssign);
    let cmd = update(&mut app, Action::Submit);
    land(&mut app, cmd);
    assert_eq!(app.undo.len(), 2);
    // the newest first: the waiting machine goes back to no profile
    let undo = update(&mut app, Action::Undo);
    assert_eq!(
        app.status.as_ref().unwrap().text,
        format!("undo assign {waiting} to worker ({waiting} unassigned)…")
    );
    assert!(matches!(
        &undo,
        Some(Command::Batch { commands, .. })
            if matches!(commands.as_slice(), [Command::Unassign { id: i }] if *i == waiting)
    ));
    land(&mut app, undo);
    // an undo is not itself undone by z: the next z takes back the one before
    let undo = update(&mut app, Action::Undo);
    assert!(matches!(
        &undo,
        Some(Command::Batch { commands, .. })
            if matches!(commands.as_slice(), [Command::Assign { id: i, profile, .. }]
                if *i == id("r1-u05") && profile == "worker")
    ));
    assert!(app
        .status
        .as_ref()
        .unwrap()
        .text
        .contains("r1-u05 back to worker"));
    land(&mut app, undo);
    assert_eq!(
        app.machines[&id("r1-u05")].profile.as_deref(),
        Some("worker")
    );
    update(&mut app, Action::Undo);
    assert!(app
        .status
        .as_ref()
        .unwrap()
        .text
        .starts_with("nothing to undo"));
}

#[test]
fn a_failed_assignment_leaves_nothing_to_undo() {
    let mut app = fixtures::session().unwrap();
    update(
        &mut app,
        Action::Done {
            what: "assign r1-u05 to worker".into(),
            outcome: Outcome::Failed("no such profile".into()),
            undo: None,
        },
    );
    assert!(app.undo.is_empty());
    assert!(app.status.as_ref().unwrap().error);
}

#[test]
fn fine_status_lines_go_after_a_while_and_when_the_selection_moves() {
    let mut app = fixtures::session().unwrap();
    update(&mut app, Action::Tick(NOW));
    app.select(&id("r1-u04"));
    update(
        &mut app,
        Action::Done {
            what: "override role on r1-u04".into(),
            outcome: Outcome::Ok,
            undo: None,
        },
    );
    assert_eq!(
        app.status.as_ref().unwrap().text,
        "override role on r1-u04: done"
    );
    update(&mut app, Action::Tick(NOW + time::Duration::seconds(2)));
    assert!(app.status.is_some());
    update(&mut app, Action::Tick(NOW + time::Duration::seconds(9)));
    assert!(app.status.is_none(), "a stale status line stayed");
    // an error stays until the selection moves on
    update(
        &mut app,
        Action::Done {
            what: "edit r1-u04".into(),
            outcome: Outcome::Failed("boom".into()),
            undo: None,
        },
    );
    update(&mut app, Action::Tick(NOW + time::Duration::seconds(60)));
    assert!(app.status.is_some());
    update(&mut app, Action::Down);
    assert!(app.status.is_none());
}

#[test]
fn leases_events_ask_for_the_table_and_results_land() {
    let mut app = fixtures::empty().unwrap();
    assert!(matches!(
        update(&mut app, bus(1, EventKind::Leases { count: 1 })),
        Some(Command::LoadLeases)
    ));
    let lease = Lease {
        mac: "52:54:00:00:00:01".parse().unwrap(),
        ip: "10.77.0.150".parse().unwrap(),
        hostname: None,
        expires: None,
        client_id: None,
        machine: None,
    };
    update(&mut app, Action::LeasesLoaded(vec![lease.clone()]));
    assert_eq!(app.leases, vec![lease]);
}

#[test]
fn replayed_events_are_logged_once() {
    let mut app = fixtures::empty().unwrap();
    let ev = Arc::new(Event {
        seq: 7,
        at: NOW,
        kind: EventKind::Log {
            level: Level::Error,
            message: "boom".into(),
        },
    });
    app.seed_log(std::slice::from_ref(&ev));
    update(&mut app, Action::Bus(ev));
    assert_eq!(app.log.len(), 1);
    assert_eq!(app.log[0].level, Level::Error);
}

#[test]
fn follow_mode_pauses_when_scrolling_up() {
    let mut app = fixtures::session().unwrap();
    update(&mut app, Action::NextPane);
    assert_eq!(app.focus, Pane::Events);
    update(&mut app, Action::Up);
    assert!(!app.follow);
    assert_eq!(app.log_scroll, 1);
    // a new line arrives: the view stays where it was
    update(&mut app, bus(900, EventKind::Leases { count: 3 }));
    assert_eq!(app.log_scroll, 2);
    update(&mut app, Action::ToggleFollow);
    assert!(app.follow);
    assert_eq!(app.log_scroll, 0);
}

#[test]
fn history_is_requested_for_the_selection_and_reloaded_after_changes() {
    let mut app = fixtures::session().unwrap();
    app.select(&id("r1-u04"));
    assert!(update(&mut app, Action::Down)
        .is_some_and(|c| matches!(c, Command::LoadHistory { id: i } if i == id("r1-u05"))));
    app.history = Some((id("r1-u05"), Ok(Vec::new())));
    let done = update(
        &mut app,
        Action::Done {
            what: "assign".into(),
            outcome: Outcome::Ok,
            undo: None,
        },
    );
    assert!(matches!(done, Some(Command::LoadHistory { .. })));
    assert!(!app.status.as_ref().unwrap().error);
}

#[test]
fn resync_replaces_the_state_and_says_so() {
    let mut app = fixtures::session().unwrap();
    let cmd = update(
        &mut app,
        Action::Resync {
            snapshot: Snapshot {
                machines: vec![new_machine("only-one")],
                profiles: Vec::new(),
                waiting: 1,
                ignored: Vec::new(),
                timelines: Default::default(),
            },
            leases: Vec::new(),
            services: Vec::new(),
            lost: 42,
        },
    );
    app.prepare();
    assert_eq!(app.rows, vec![id("only-one")]);
    assert!(app.leases.is_empty());
    assert!(app.log.back().unwrap().text.contains("42 events"));
    assert!(matches!(cmd, Some(Command::LoadHistory { .. })));
}

#[test]
fn repeated_bus_events_are_one_log_line() {
    let mut app = fixtures::empty().unwrap();
    for seq in 1..=12 {
        update(
            &mut app,
            bus(
                seq,
                EventKind::Log {
                    level: Level::Warn,
                    message: "same thing".into(),
                },
            ),
        );
    }
    assert_eq!(app.log.len(), 1);
    assert_eq!(app.log[0].count, 12);
    // a paused view does not move for a folded line
    update(&mut app, Action::ShowPage(Page::Events));
    update(&mut app, bus(13, EventKind::Leases { count: 1 }));
    update(&mut app, Action::Up);
    assert_eq!(app.log_scroll, 1);
    update(&mut app, bus(14, EventKind::Leases { count: 1 }));
    assert_eq!(app.log_scroll, 1);
    assert_eq!(app.selected_log().unwrap().text, "warn: same thing");
}

#[test]
fn enter_in_the_event_log_opens_the_selected_event_in_full() {
    let mut app = fixtures::first_minute().unwrap();
    // on the machines table, Enter is still the machine's detail
    app.select(&id("52-54-00-aa-00-09"));
    update(&mut app, Action::OpenDetail);
    assert_eq!(app.page, Page::Detail);
    assert!(app.dialog.is_none());
    update(&mut app, Action::ShowPage(Page::Machines));
    update(&mut app, Action::NextPane);
    assert!(app.events_focused());
    // the newest line (TFTP retries ×12) is selected; three up is dnsmasq's status
    update(&mut app, Action::Up);
    update(&mut app, Action::Up);
    update(&mut app, Action::Up);
    update(&mut app, Action::OpenDetail);
    match &app.dialog {
        Some(Dialog::Event(EventState { line, scroll: 0 })) => {
            assert!(line.text.starts_with("dnsmasq waiting"), "{}", line.text);
            assert!(line.text.ends_with("does not exist"), "{}", line.text);
        }
        other => panic!("expected the event popup, got {other:?}"),
    }
    update(&mut app, Action::Down);
    assert!(matches!(
        app.dialog,
        Some(Dialog::Event(EventState { scroll: 1, .. }))
    ));
    update(&mut app, Action::Back);
    assert!(app.dialog.is_none());
    // the collapsed line carries its count into the popup
    update(&mut app, Action::ToggleFollow);
    update(&mut app, Action::OpenDetail);
    match &app.dialog {
        Some(Dialog::Event(EventState { line, .. })) => {
            assert_eq!(line.count, 12);
            assert!(line.first < line.at);
        }
        other => panic!("expected the event popup, got {other:?}"),
    }
}

#[test]
fn service_problems_reach_the_console() {
    let app = fixtures::first_minute().unwrap();
    let dnsmasq = &app.services["dnsmasq"];
    assert_eq!(dnsmasq.status, ServiceStatus::Waiting);
    assert_eq!(
        dnsmasq.problem.as_ref().map(|p| p.code.as_str()),
        Some("interface_missing")
    );
}

#[test]
fn quit_quits_when_nothing_boots() {
    let mut app = fixtures::empty().unwrap();
    assert!(matches!(
        update(&mut app, Action::Quit),
        Some(Command::Quit)
    ));
    assert!(app.quit);
}

/// The console keeps the state the engine sends: a boot-complete step moves the phase, and
/// "running" arrives with the machine in its machine_changed event.
#[test]
fn boot_complete_takes_the_state_from_the_engine() {
    let mut app = fixtures::session().unwrap();
    let r106 = id("r1-u06");
    let before = app.machines[&r106].state;
    assert_ne!(before, State::Running);
    update(
        &mut app,
        bus(
            600,
            EventKind::BootStep {
                id: Some(r106.clone()),
                phase: Phase::BootComplete,
                detail: "reported".into(),
                bytes: None,
                duration_ms: None,
                profile: None,
            },
        ),
    );
    let m = &app.machines[&r106];
    assert_eq!(
        m.phases.current().map(|(p, _)| p),
        Some(Phase::BootComplete)
    );
    assert_eq!(m.state, before, "the step alone changes no state");
    let mut running = m.clone();
    running.state = State::Running;
    update(
        &mut app,
        bus(
            601,
            EventKind::MachineChanged {
                machine: Box::new(running),
                change: "boot complete".into(),
                actor: "r1-u06".into(),
            },
        ),
    );
    assert_eq!(app.machines[&r106].state, State::Running);
}

#[test]
fn space_marks_and_moves_on_and_esc_unmarks() {
    let mut app = fixtures::session().unwrap();
    app.select(&id("r1-u03"));
    update(&mut app, Action::ToggleMark);
    update(&mut app, Action::ToggleMark);
    assert_eq!(app.selected_id, Some(id("r1-u05")));
    assert_eq!(
        app.marked.iter().cloned().collect::<Vec<_>>(),
        vec![id("r1-u03"), id("r1-u04")]
    );
    assert!(app.status.as_ref().unwrap().text.starts_with("2 marked"));
    // Space on a marked one unmarks it
    update(&mut app, Action::Up);
    update(&mut app, Action::ToggleMark);
    assert_eq!(app.marked.len(), 1);
    update(&mut app, Action::Back);
    assert!(app.marked.is_empty());
    // Space is the table's: the event log and the leases page leave marks alone
    assert!(crate::keys::action_for(
        crate::keys::Mode::Events,
        crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char(' '),
            crossterm::event::KeyModifiers::NONE
        )
    )
    .is_none());
    update(&mut app, Action::ShowPage(Page::Leases));
    update(&mut app, Action::ToggleMark);
    assert!(app.marked.is_empty());
}

#[test]
fn bulk_assign_is_one_batch_and_undoes_as_one() {
    let mut app = fixtures::session().unwrap();
    // marks survive the filter: r1-u03 (control-plane), then r2-u01 and r2-u02 (discovery)
    app.select(&id("r1-u03"));
    update(&mut app, Action::ToggleMark);
    update(&mut app, Action::StartFilter);
    for c in "r2-".chars() {
        update(&mut app, Action::Input(c));
    }
    update(&mut app, Action::Submit);
    update(&mut app, Action::Top);
    update(&mut app, Action::ToggleMark);
    update(&mut app, Action::ToggleMark);
    assert_eq!(app.marked.len(), 3);
    update(&mut app, Action::StartAssign);
    match &app.dialog {
        Some(Dialog::Assign(a)) => {
            // the table's rows first, then the one the filter hides
            assert_eq!(a.ids, vec![id("r2-u01"), id("r2-u02"), id("r1-u03")]);
            // control-plane is full, worker has room for three more
            assert_eq!(a.selected, 1);
        }
        other => panic!("expected the picker, got {other:?}"),
    }
    let cmd = update(&mut app, Action::Submit);
    assert!(app.marked.is_empty(), "the marks have served");
    match &cmd {
        Some(Command::Batch {
            what,
            commands,
            undo: Some(undo),
        }) => {
            assert_eq!(what, "assign 3 machines to worker");
            assert_eq!(commands.len(), 3);
            assert!(commands.iter().all(
                |c| matches!(c, Command::Assign { profile, force: false, .. } if profile == "worker")
            ));
            assert_eq!(
                undo.before,
                vec![
                    (id("r2-u01"), Some("discovery".into())),
                    (id("r2-u02"), Some("discovery".into())),
                    (id("r1-u03"), Some("control-plane".into())),
                ]
            );
        }
        other => panic!("expected a batch, got {other:?}"),
    }
    land(&mut app, cmd);
    let undo = update(&mut app, Action::Undo);
    assert!(
        matches!(&undo, Some(Command::Batch { commands, .. }) if commands.len() == 3),
        "{undo:?}"
    );
    assert!(app
        .status
        .as_ref()
        .unwrap()
        .text
        .contains("r2-u02 back to discovery, r1-u03 back to control-plane"));
}

#[test]
fn bulk_assign_past_a_quantity_asks_naming_the_count() {
    let mut app = fixtures::session().unwrap();
    for m in ["r2-u01", "r2-u02"] {
        app.select(&id(m));
        update(&mut app, Action::ToggleMark);
    }
    update(&mut app, Action::StartAssign);
    update(&mut app, Action::Up);
    assert!(update(&mut app, Action::Submit).is_none());
    let q = question(&app);
    assert!(
        q.contains("3 of 3 assigned; 2 more go past its quantity"),
        "{q}"
    );
    assert!(
        q.contains("Assign 2 machines (r2-u01, r2-u02) anyway?"),
        "{q}"
    );
    match update(&mut app, Action::Confirm(true)) {
        Some(Command::Batch { commands, .. }) => assert!(commands
            .iter()
            .all(|c| matches!(c, Command::Assign { force: true, .. }))),
        other => panic!("expected a forced batch, got {other:?}"),
    }
}

#[test]
fn bulk_reinstall_asks_naming_the_count() {
    let mut app = fixtures::session().unwrap();
    for m in ["r1-u01", "r1-u02", "r1-u07"] {
        app.select(&id(m));
        update(&mut app, Action::ToggleMark);
    }
    assert!(update(&mut app, Action::Reinstall).is_none());
    let q = question(&app);
    assert!(
        q.contains("Reinstall 3 machines (r1-u01, r1-u02, r1-u07)? y/N"),
        "{q}"
    );
    match update(&mut app, Action::Submit) {
        Some(Command::Batch { what, commands, .. }) => {
            assert_eq!(what, "reinstall 3 machines");
            assert!(commands
                .iter()
                .all(|c| matches!(c, Command::Reinstall { .. })));
        }
        other => panic!("expected a batch, got {other:?}"),
    }
    assert!(app.marked.is_empty());
}

#[test]
fn bulk_rack_edit_sets_one_rack_and_counts_units_up() {
    let mut app = fixtures::session().unwrap();
    for m in ["r2-u02", "r2-u01"] {
        app.select(&id(m));
        update(&mut app, Action::ToggleMark);
    }
    update(&mut app, Action::StartEdit);
    // the rack they share is filled in
    assert!(matches!(&app.dialog, Some(Dialog::Rack(r)) if r.rack == "r2"));
    // no rack name: refused, the form stays
    update(&mut app, Action::Backspace);
    update(&mut app, Action::Backspace);
    assert!(update(&mut app, Action::Submit).is_none());
    assert!(matches!(&app.dialog, Some(Dialog::Rack(r)) if r.error.is_some()));
    for c in "r2".chars() {
        update(&mut app, Action::Input(c));
    }
    update(&mut app, Action::NextField);
    for c in "10".chars() {
        update(&mut app, Action::Input(c));
    }
    match update(&mut app, Action::Submit) {
        Some(Command::Batch { commands, .. }) => {
            let racks: Vec<(String, Option<Rack>)> = commands
                .into_iter()
                .map(|c| match c {
                    Command::Edit { id, edit } => (id.to_string(), edit.rack),
                    other => panic!("not an edit: {other:?}"),
                })
                .collect();
            let r = |u| {
                Some(Rack {
                    rack: "r2".into(),
                    unit: Some(u),
                })
            };
            // in table order, whatever the marking order
            assert_eq!(
                racks,
                vec![("r2-u01".to_string(), r(10)), ("r2-u02".to_string(), r(11))]
            );
        }
        other => panic!("expected a batch of edits, got {other:?}"),
    }
    // the table's order as sorted now: reversed, r2-u02 comes first
    for m in ["r2-u02", "r2-u01"] {
        app.select(&id(m));
        update(&mut app, Action::ToggleMark);
    }
    update(&mut app, Action::SortReverse);
    update(&mut app, Action::StartEdit);
    update(&mut app, Action::NextField);
    update(&mut app, Action::Input('1'));
    match update(&mut app, Action::Submit) {
        Some(Command::Batch { commands, .. }) => {
            let first = commands.first().map(|c| match c {
                Command::Edit { id, edit } => (id.to_string(), edit.rack.clone()),
                other => panic!("not an edit: {other:?}"),
            });
            assert_eq!(
                first,
                Some((
                    "r2-u02".to_string(),
                    Some(Rack {
                        rack: "r2".into(),
                        unit: Some(1)
                    })
                ))
            );
        }
        other => panic!("expected a batch of edits, got {other:?}"),
    }
}

#[test]
fn filter_finds_rack_notes_and_serial_and_ids_sort_naturally() {
    let mut app = fixtures::session().unwrap();
    let find = |app: &mut App, text: &str| {
        update(app, Action::Back);
        update(app, Action::StartFilter);
        for c in text.chars() {
            update(app, Action::Input(c));
        }
        app.rows.iter().map(|i| i.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(find(&mut app, "psu b"), vec!["r1-u04"]);
    assert_eq!(find(&mut app, "r1 u16"), vec!["r1-u08"]);
    assert_eq!(find(&mut app, "R2-U0"), vec!["r2-u01", "r2-u02"]);
    // natural order: u9 before u10
    let mut sorted = fixtures::empty().unwrap();
    for (seq, name) in ["sn-10", "sn-2", "sn-100", "sn-1"].into_iter().enumerate() {
        update(
            &mut sorted,
            bus(
                seq as u64 + 1,
                EventKind::MachineAdded {
                    machine: Box::new(new_machine(name)),
                    actor: name.into(),
                },
            ),
        );
    }
    sorted.prepare();
    let rows: Vec<String> = sorted.rows.iter().map(|i| i.to_string()).collect();
    assert_eq!(rows, vec!["sn-1", "sn-2", "sn-10", "sn-100"]);
}

#[test]
fn the_filter_line_has_its_own_hints() {
    let mut app = fixtures::session().unwrap();
    update(&mut app, Action::StartFilter);
    assert_eq!(crate::keys::mode(&app), crate::keys::Mode::Filter);
    let hints: Vec<&str> = crate::keys::hints(crate::keys::mode(&app))
        .into_iter()
        .map(|(_, what)| what)
        .collect();
    assert!(
        !hints.contains(&"save") && !hints.contains(&"next field"),
        "{hints:?}"
    );
    update(&mut app, Action::StartEdit);
    assert!(app.dialog.is_none(), "e is text in the filter");
}

#[test]
fn help_scrolls_and_closes() {
    let mut app = fixtures::session().unwrap();
    update(&mut app, Action::Help);
    update(&mut app, Action::Down);
    update(&mut app, Action::PageDown);
    assert!(matches!(app.dialog, Some(Dialog::Help(11))));
    update(&mut app, Action::Up);
    assert!(matches!(app.dialog, Some(Dialog::Help(10))));
    update(&mut app, Action::Top);
    assert!(matches!(app.dialog, Some(Dialog::Help(0))));
    update(&mut app, Action::Back);
    assert!(app.dialog.is_none());
}

fn ignored(mac: &str) -> mayu::engine::IgnoredClient {
    mayu::engine::IgnoredClient {
        mac: mac.parse().unwrap(),
        first_seen: NOW - time::Duration::minutes(3),
        last_seen: NOW,
        count: 4,
        vendor_class: Some("PXEClient:Arch:00000:UNDI:002001".into()),
        interface: Some("mayu0".into()),
    }
}

#[test]
fn an_ignored_client_is_enrolled_from_the_leases_page_after_a_question() {
    let mut app = fixtures::session().unwrap();
    let mac: Mac = "0c:c4:7a:99:00:01".parse().unwrap();
    update(
        &mut app,
        bus(
            700,
            EventKind::Ignored {
                client: ignored("0c:c4:7a:99:00:01"),
            },
        ),
    );
    assert_eq!(app.ignored[0].mac, mac, "newest first");
    update(&mut app, Action::ShowPage(Page::Leases));
    // on a lease, `a` says where the ignored clients are
    update(&mut app, Action::StartAssign);
    assert!(app.dialog.is_none());
    assert!(app.status.as_ref().unwrap().error);
    // the ignored client sits below the leases
    for _ in 0..app.leases.len() {
        update(&mut app, Action::Down);
    }
    assert_eq!(app.selected_ignored().map(|c| c.mac), Some(mac));
    update(&mut app, Action::StartAssign);
    let Some(Dialog::Enrol(picker)) = &app.dialog else {
        panic!("expected the enrol picker, got {:?}", app.dialog);
    };
    // control-plane is full in the fixture: the picker starts on a profile with room
    let start = &app.profiles[picker.selected];
    assert!(
        start.quantity.is_none_or(|q| start.assigned < q),
        "{start:?}"
    );
    let profile = start.name.clone();
    assert!(update(&mut app, Action::Submit).is_none(), "asks first");
    match &app.dialog {
        Some(Dialog::Confirm(q)) => assert!(q.question.join(" ").contains(&mac.to_string())),
        other => panic!("expected the question, got {other:?}"),
    }
    match update(&mut app, Action::Confirm(true)) {
        Some(Command::Enrol { mac: m, profile: p }) => {
            assert_eq!((m, p), (mac, Some(profile)));
        }
        other => panic!("expected the enrolment, got {other:?}"),
    }
    // once it is a machine, it is no longer ignored
    let mut m = new_machine("0c-c4-7a-99-00-01");
    m.macs = vec![mac];
    update(
        &mut app,
        bus(
            701,
            EventKind::MachineAdded {
                machine: Box::new(m),
                actor: "alice".into(),
            },
        ),
    );
    assert!(app.ignored.iter().all(|c| c.mac != mac));
}

#[test]
fn power_keys_need_a_bmc_and_ask_naming_the_machine() {
    let mut app = fixtures::session().unwrap();
    app.select(&id("r1-u05"));
    app.machines.get_mut(&id("r1-u05")).unwrap().ipmi_addr = None;
    update(&mut app, Action::StartPower);
    assert!(app.dialog.is_none());
    assert!(app.status.as_ref().unwrap().text.contains("no BMC address"));
    app.machines.get_mut(&id("r1-u05")).unwrap().ipmi_addr = Some("10.77.0.25".into());
    update(&mut app, Action::StartPower);
    assert!(matches!(app.dialog, Some(Dialog::Power(_))));
    // asking the BMC changes nothing: no question
    match update(&mut app, Action::Submit) {
        Some(Command::Power { ids, action }) => {
            assert_eq!(
                (ids, action),
                (vec![id("r1-u05")], mayu::power::PowerAction::Status)
            );
        }
        other => panic!("expected a status request, got {other:?}"),
    }
    update(&mut app, Action::StartPower);
    for _ in 0..4 {
        update(&mut app, Action::Down);
    }
    assert!(
        update(&mut app, Action::Submit).is_none(),
        "reinstall now asks first"
    );
    match &app.dialog {
        Some(Dialog::Confirm(q)) => {
            assert!(q.question.join(" ").contains("r1-u05"), "{q:?}");
            assert_eq!(q.yes, "reinstall");
        }
        other => panic!("expected the question, got {other:?}"),
    }
    assert!(update(&mut app, Action::Confirm(false)).is_none());
    assert!(app.dialog.is_none());
    update(&mut app, Action::StartPower);
    for _ in 0..4 {
        update(&mut app, Action::Down);
    }
    update(&mut app, Action::Submit);
    match update(&mut app, Action::Confirm(true)) {
        Some(Command::Power { ids, action }) => {
            assert_eq!(
                (ids, action),
                (vec![id("r1-u05")], mayu::power::PowerAction::Reinstall)
            );
        }
        other => panic!("expected reinstall now, got {other:?}"),
    }
    // the BMC's answer shows as the machine's power
    update(
        &mut app,
        bus(
            710,
            EventKind::Power {
                id: id("r1-u05"),
                power: mayu::power::PowerStatus {
                    state: mayu::power::PowerState::Unreachable,
                    checked_at: NOW,
                    error: Some("no answer in 5 s".into()),
                },
                action: None,
                actor: None,
            },
        ),
    );
    assert_eq!(
        app.power[&id("r1-u05")].state,
        mayu::power::PowerState::Unreachable
    );
}
