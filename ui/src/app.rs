//! The console's state ([`App`]) and the pure `update` that applies an [`Action`] to it,
//! returning at most one [`Command`] for the runner. No I/O and no clock in here: times come
//! from the events themselves, so every transition is testable.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use mayu::engine::{Edit, ProfileStatus, Snapshot};
use mayu::events::{Event, EventKind};
use mayu::inventory::HistoryEntry;
use mayu::lease::{Lease, ServiceState};
use mayu::lease::{ServiceStatus, Severity};
use mayu::machine::{Machine, MachineId, Phase, Rack, State};
use time::OffsetDateTime;

use crate::action::{Action, Command, Outcome, Page, Pane, SortKey};

/// How many event-log lines the console keeps.
const LOG_CAP: usize = 2000;
/// How long a machine that just appeared is highlighted.
pub const NEW_FOR: Duration = Duration::from_secs(8);
/// A machine in one phase longer than this is stalled, unless its profile says otherwise.
pub const DEFAULT_STALL: Duration = Duration::from_secs(10 * 60);

/// What the console knows about the setup it runs in (fixed for the run).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub operator: String,
    pub boot_addr: String,
    pub api_addr: String,
    pub dhcp_mode: String,
    pub interface: String,
    pub templates_dir: String,
    /// per profile, from `Profile.stall_after`.
    pub stall_after: HashMap<String, Duration>,
}

impl Setup {
    pub fn stall_after(&self, profile: Option<&str>) -> Duration {
        profile
            .and_then(|p| self.stall_after.get(p))
            .copied()
            .unwrap_or(DEFAULT_STALL)
    }
}

/// The operator's name in the audit log: config `operator`, else `$USER`, else "operator".
pub fn operator_name(configured: Option<&str>, user: Option<String>) -> String {
    configured
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| user.filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "operator".to_string())
}

/// One level table for the engine's log events and the console's log pane.
pub use mayu::events::LogLevel as Level;

/// One line of the event log; identical consecutive events share one line with a count.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// when it last happened.
    pub at: OffsetDateTime,
    /// when it first happened (equal to `at` while `count` is 1).
    pub first: OffsetDateTime,
    /// how many identical events in a row this line stands for.
    pub count: u32,
    pub level: Level,
    /// what kind of event it is (`service`, `dhcp`, ...; `console` for the console's notes).
    pub source: &'static str,
    pub text: String,
}

impl LogLine {
    pub fn new(at: OffsetDateTime, level: Level, source: &'static str, text: String) -> LogLine {
        LogLine {
            at,
            first: at,
            count: 1,
            level,
            source,
            text,
        }
    }
}

/// Adds `line` to `log`, folding it into the newest line when that says the same thing
/// (same source, level and text): a retry loop then reads as one line `… ×12` with its last
/// time instead of a screenful of copies. Drops the oldest line beyond `cap`. Returns true
/// when a line was added, false when it was folded in.
pub fn append_collapsed(log: &mut VecDeque<LogLine>, line: LogLine, cap: usize) -> bool {
    if let Some(last) = log.back_mut() {
        if last.source == line.source && last.level == line.level && last.text == line.text {
            last.count = last.count.saturating_add(line.count);
            last.first = last.first.min(line.first);
            last.at = last.at.max(line.at);
            return false;
        }
    }
    while log.len() >= cap.max(1) {
        log.pop_front();
    }
    log.push_back(line);
    true
}

/// The event's kind as the event log names its source.
fn source_of(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::MachineAdded { .. } => "machine_added",
        EventKind::MachineChanged { .. } => "machine_changed",
        EventKind::MachineRetired { .. } => "machine_retired",
        EventKind::BootStep { .. } => "boot_step",
        EventKind::Dhcp { .. } => "dhcp",
        EventKind::Tftp { .. } => "tftp",
        EventKind::Leases { .. } => "leases",
        EventKind::TemplatesReloaded { .. } => "templates",
        EventKind::Service { .. } => "service",
        EventKind::Log { .. } => "log",
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateStatus {
    /// None until the first reload report.
    pub ok: Option<bool>,
    pub errors: Vec<String>,
}

/// One line at the bottom saying how the last action went.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// Fields of the edit form, in tab order.
pub const EDIT_FIELDS: [&str; 4] = ["hostname", "rack", "unit", "notes"];

#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    Help,
    /// the profile picker; `selected` indexes `App::profiles`.
    Assign {
        id: MachineId,
        selected: usize,
    },
    /// the chosen profile is full: assigning forces it past its quantity.
    ConfirmForce {
        id: MachineId,
        profile: String,
        assigned: u32,
        quantity: u32,
    },
    Edit {
        id: MachineId,
        fields: [String; 4],
        focus: usize,
        error: Option<String>,
    },
    Override {
        id: MachineId,
        key: String,
        value: String,
        focus: usize,
        error: Option<String>,
    },
    /// one event-log line in full, wrapped; `scroll` is in wrapped lines.
    Event {
        line: LogLine,
        scroll: u16,
    },
}

/// Everything the console shows. Rendering reads it; only `update` changes it.
#[derive(Debug)]
pub struct App {
    pub setup: Setup,
    pub machines: HashMap<MachineId, Machine>,
    /// the machines table after filter and sort; rebuilt lazily by [`App::prepare`].
    pub rows: Vec<MachineId>,
    rows_dirty: bool,
    /// index into `rows`.
    pub selected: usize,
    /// the selected machine, kept by id so it stays put while rows move.
    pub selected_id: Option<MachineId>,
    pub profiles: Vec<ProfileStatus>,
    /// unassigned machines.
    pub waiting: u32,
    pub leases: Vec<Lease>,
    pub lease_selected: usize,
    pub services: BTreeMap<String, ServiceState>,
    pub templates: TemplateStatus,
    pub log: VecDeque<LogLine>,
    /// the newest bus sequence number already in the log (the replay and the live feed overlap).
    last_seq: u64,
    pub last_event: HashMap<MachineId, (OffsetDateTime, String)>,
    pub added_at: HashMap<MachineId, OffsetDateTime>,
    pub history: Option<(MachineId, Result<Vec<HistoryEntry>, String>)>,
    pub page: Page,
    pub focus: Pane,
    pub filter: String,
    pub filter_editing: bool,
    pub sort: SortKey,
    pub sort_desc: bool,
    /// the event log sticks to its newest line.
    pub follow: bool,
    /// lines scrolled up from the bottom when not following.
    pub log_scroll: usize,
    pub dialog: Option<Dialog>,
    pub status: Option<Status>,
    /// first visible row of the machines table; render-side state like ratatui's `TableState`.
    pub table_offset: Cell<usize>,
    pub quit: bool,
}

impl App {
    pub fn new(setup: Setup, snapshot: Snapshot) -> App {
        let mut app = App {
            setup,
            machines: HashMap::new(),
            rows: Vec::new(),
            rows_dirty: true,
            selected: 0,
            selected_id: None,
            profiles: Vec::new(),
            waiting: 0,
            leases: Vec::new(),
            lease_selected: 0,
            services: BTreeMap::new(),
            templates: TemplateStatus::default(),
            log: VecDeque::new(),
            last_seq: 0,
            last_event: HashMap::new(),
            added_at: HashMap::new(),
            history: None,
            page: Page::Machines,
            focus: Pane::Machines,
            filter: String::new(),
            filter_editing: false,
            sort: SortKey::Id,
            sort_desc: false,
            follow: true,
            log_scroll: 0,
            dialog: None,
            status: None,
            table_offset: Cell::new(0),
            quit: false,
        };
        app.load_snapshot(snapshot);
        app.prepare();
        app
    }

    fn load_snapshot(&mut self, snapshot: Snapshot) {
        self.machines = snapshot
            .machines
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        self.profiles = snapshot.profiles;
        self.waiting = snapshot.waiting;
        self.rows_dirty = true;
    }

    pub fn set_services(&mut self, services: Vec<ServiceState>) {
        for s in services {
            if s.name.contains("template") {
                self.templates.ok = Some(s.status != ServiceStatus::Failed);
            }
            self.services.insert(s.name.clone(), s);
        }
    }

    pub fn set_leases(&mut self, leases: Vec<Lease>) {
        self.leases = leases;
        self.leases.sort_by_key(|l| l.ip);
        self.lease_selected = self.lease_selected.min(self.leases.len().saturating_sub(1));
    }

    /// Seeds the event log with what happened before the console started.
    pub fn seed_log(&mut self, past: &[Arc<Event>]) {
        for ev in past {
            self.record(ev);
        }
    }

    /// The selected machine, if the table has any.
    pub fn current(&self) -> Option<&Machine> {
        self.selected_id
            .as_ref()
            .and_then(|id| self.machines.get(id))
    }

    /// Selects a machine by id (if it is listed).
    pub fn select(&mut self, id: &MachineId) {
        self.prepare();
        if let Some(i) = self.rows.iter().position(|r| r == id) {
            self.selected = i;
            self.selected_id = Some(id.clone());
        }
    }

    /// Rebuilds the filtered, sorted rows if anything changed; call before rendering.
    pub fn prepare(&mut self) {
        if !self.rows_dirty {
            return;
        }
        self.rows_dirty = false;
        self.recount_profiles();
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Machine> = self
            .machines
            .values()
            .filter(|m| needle.is_empty() || matches_filter(m, &needle))
            .collect();
        let last = &self.last_event;
        match self.sort {
            SortKey::Id => rows.sort_by(|a, b| a.id.cmp(&b.id)),
            SortKey::State => rows.sort_by(|a, b| (a.state, &a.id).cmp(&(b.state, &b.id))),
            SortKey::Profile => rows.sort_by(|a, b| (&a.profile, &a.id).cmp(&(&b.profile, &b.id))),
            SortKey::Phase => rows.sort_by(|a, b| {
                let pa = a.phases.current().map(|(p, _)| p);
                let pb = b.phases.current().map(|(p, _)| p);
                (pa, &a.id).cmp(&(pb, &b.id))
            }),
            SortKey::LastEvent => rows.sort_by(|a, b| {
                let ta = last
                    .get(&a.id)
                    .map(|(t, _)| *t)
                    .or(a.phases.current().map(|c| c.1));
                let tb = last
                    .get(&b.id)
                    .map(|(t, _)| *t)
                    .or(b.phases.current().map(|c| c.1));
                // newest first reads naturally for "what just happened"
                (tb, &a.id).cmp(&(ta, &b.id))
            }),
        }
        if self.sort_desc {
            rows.reverse();
        }
        self.rows = rows.into_iter().map(|m| m.id.clone()).collect();
        self.reselect();
    }

    /// Keeps the selection on the same machine when it is still listed, else near its place.
    fn reselect(&mut self) {
        if let Some(id) = &self.selected_id {
            if let Some(i) = self.rows.iter().position(|r| r == id) {
                self.selected = i;
                return;
            }
        }
        if self.rows.is_empty() {
            self.selected = 0;
            self.selected_id = None;
        } else {
            self.selected = self.selected.min(self.rows.len() - 1);
            self.selected_id = Some(self.rows[self.selected].clone());
        }
    }

    /// Profile counts follow the machines we hold (the engine only reports them in snapshots).
    fn recount_profiles(&mut self) {
        let mut assigned: HashMap<&str, u32> = HashMap::new();
        let mut running: HashMap<&str, u32> = HashMap::new();
        let mut waiting = 0;
        for m in self.machines.values() {
            match &m.profile {
                Some(p) => {
                    *assigned.entry(p.as_str()).or_default() += 1;
                    if m.state == State::Running {
                        *running.entry(p.as_str()).or_default() += 1;
                    }
                }
                None => waiting += 1,
            }
        }
        for p in &mut self.profiles {
            p.assigned = assigned.get(p.name.as_str()).copied().unwrap_or(0);
            p.running = running.get(p.name.as_str()).copied().unwrap_or(0);
            p.fill = p.quantity.map(|q| {
                if q == 0 {
                    1.0
                } else {
                    f64::from(p.assigned) / f64::from(q)
                }
            });
        }
        self.waiting = waiting;
    }

    /// Machines assigned to `profile` that have not finished booting it.
    pub fn booting_in(&self, profile: &str) -> usize {
        self.machines
            .values()
            .filter(|m| {
                m.profile.as_deref() == Some(profile)
                    && matches!(m.state, State::Configured | State::Installing)
            })
            .count()
    }

    /// True while a machine that just appeared should stand out.
    pub fn is_new(&self, id: &MachineId, now: OffsetDateTime) -> bool {
        self.added_at
            .get(id)
            .is_some_and(|t| now - *t < NEW_FOR && now >= *t)
    }

    /// The phase a machine is in and for how long, and whether that is too long.
    pub fn phase_of(&self, m: &Machine, now: OffsetDateTime) -> Option<(Phase, Duration, bool)> {
        let (phase, since) = m.phases.current()?;
        let in_phase: Duration = (now - since).try_into().unwrap_or(Duration::ZERO);
        let done = phase == Phase::BootComplete || m.state == State::Running;
        let stalled = !done && in_phase > self.setup.stall_after(m.profile.as_deref());
        Some((phase, in_phase, stalled))
    }

    pub fn stalled_count(&self, now: OffsetDateTime) -> usize {
        self.machines
            .values()
            .filter(|m| self.phase_of(m, now).is_some_and(|p| p.2))
            .count()
    }

    fn record(&mut self, ev: &Event) {
        if ev.seq != 0 && ev.seq <= self.last_seq {
            return;
        }
        self.last_seq = self.last_seq.max(ev.seq);
        let level = match &ev.kind {
            EventKind::Log { level, .. } => *level,
            EventKind::TemplatesReloaded { ok: false, .. } => Level::Error,
            EventKind::Service { status, .. } => match status.severity() {
                Severity::Failed => Level::Error,
                Severity::Degraded => Level::Warn,
                Severity::Fine => Level::Info,
            },
            EventKind::Tftp { ok: false, .. } => Level::Warn,
            _ => Level::Info,
        };
        self.push_log(LogLine::new(
            ev.at,
            level,
            source_of(&ev.kind),
            ev.summary(),
        ));
        if let Some(id) = ev.machine_id() {
            self.last_event
                .insert(id.clone(), (ev.at, short_summary(ev)));
        }
    }

    fn push_log(&mut self, line: LogLine) {
        if !append_collapsed(&mut self.log, line, LOG_CAP) {
            // folded into the line already shown: nothing moved
            return;
        }
        if !self.follow {
            // keep the operator's view still while new lines arrive below it
            self.log_scroll = (self.log_scroll + 1).min(self.log.len().saturating_sub(1));
        }
    }

    /// A line in the in-app log from the console itself (not from the bus).
    pub fn note(&mut self, at: OffsetDateTime, level: Level, text: String) {
        self.push_log(LogLine::new(at, level, "console", text));
    }

    fn set_status(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    /// The event log has the movement keys: the events page, or its pane on the machines page.
    pub fn events_focused(&self) -> bool {
        self.page == Page::Events || (self.page == Page::Machines && self.focus == Pane::Events)
    }

    /// The selected event-log line: the newest one shown (the bottom of the view, which
    /// scrolling moves).
    pub fn selected_log(&self) -> Option<&LogLine> {
        let i = self.log.len().checked_sub(1 + self.log_scroll)?;
        self.log.get(i)
    }

    fn detail_visible(&self) -> bool {
        self.page == Page::Detail || self.page == Page::Machines
    }

    /// Asks for the selected machine's audit history when it is on screen and not loaded.
    fn want_history(&self) -> Option<Command> {
        let id = self.selected_id.clone()?;
        if !self.detail_visible() {
            return None;
        }
        match &self.history {
            Some((h, _)) if *h == id => None,
            _ => Some(Command::LoadHistory { id }),
        }
    }

    fn move_selection(&mut self, delta: isize) -> Option<Command> {
        self.prepare();
        if self.rows.is_empty() {
            return None;
        }
        let last = self.rows.len() - 1;
        let next = (self.selected as isize + delta).clamp(0, last as isize) as usize;
        self.selected = next;
        self.selected_id = Some(self.rows[next].clone());
        self.want_history()
    }

    fn scroll_log(&mut self, delta: isize) {
        let max = self.log.len().saturating_sub(1);
        let next = (self.log_scroll as isize - delta).clamp(0, max as isize) as usize;
        self.log_scroll = next;
        self.follow = next == 0;
    }

    fn move_by(&mut self, delta: isize) -> Option<Command> {
        match (self.page, self.focus) {
            (Page::Leases, _) => {
                let last = self.leases.len().saturating_sub(1) as isize;
                self.lease_selected =
                    (self.lease_selected as isize + delta).clamp(0, last.max(0)) as usize;
                None
            }
            (Page::Events, _) | (Page::Machines, Pane::Events) => {
                self.scroll_log(delta);
                None
            }
            (Page::Detail, _) | (Page::Machines, Pane::Machines) => self.move_selection(delta),
        }
    }

    fn selected_machine_id(&mut self) -> Option<MachineId> {
        let id = self.selected_id.clone();
        if id.is_none() {
            self.set_status("no machine selected", true);
        }
        id
    }
}

fn matches_filter(m: &Machine, needle: &str) -> bool {
    m.id.as_str().contains(needle)
        || m.macs.iter().any(|mac| mac.to_string().contains(needle))
        || m.ip.is_some_and(|ip| ip.to_string().contains(needle))
        || m.hostname.as_deref().is_some_and(|h| h.contains(needle))
        || m.profile.as_deref().is_some_and(|p| p.contains(needle))
        || m.state.as_str().contains(needle)
        || m.serial
            .as_deref()
            .is_some_and(|s| s.to_lowercase().contains(needle))
}

/// The event as the machines table's "last event" column shows it: without the machine id,
/// and without the actor when the machine itself acted.
fn short_summary(ev: &Event) -> String {
    match &ev.kind {
        EventKind::MachineAdded { machine, actor } if *actor == machine.id.as_str() => {
            "registered".into()
        }
        EventKind::MachineAdded { actor, .. } => format!("added ({actor})"),
        EventKind::MachineChanged {
            machine,
            change,
            actor,
        } if *actor == machine.id.as_str() => change.clone(),
        EventKind::MachineChanged { change, actor, .. } => format!("{change} ({actor})"),
        _ => {
            let s = ev.summary();
            match ev.machine_id() {
                Some(id) => {
                    let prefix = format!("{id}: ");
                    s.strip_prefix(&prefix).map(str::to_string).unwrap_or(s)
                }
                None => s,
            }
        }
    }
}

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
                app.dialog = Some(Dialog::ConfirmForce {
                    id,
                    profile,
                    assigned,
                    quantity,
                });
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
                on_dialog(app, other)
            } else if app.filter_editing {
                on_filter(app, other)
            } else {
                on_key(app, other)
            }
        }
    }
}

fn on_bus(app: &mut App, ev: &Event) -> Option<Command> {
    app.record(ev);
    match &ev.kind {
        EventKind::MachineAdded { machine, .. } => {
            app.added_at.insert(machine.id.clone(), ev.at);
            app.machines.insert(machine.id.clone(), (**machine).clone());
            app.rows_dirty = true;
            None
        }
        EventKind::MachineChanged { machine, .. } => {
            app.machines.insert(machine.id.clone(), (**machine).clone());
            app.rows_dirty = true;
            if app.selected_id.as_ref() == Some(&machine.id) && app.detail_visible() {
                Some(Command::LoadHistory {
                    id: machine.id.clone(),
                })
            } else {
                None
            }
        }
        EventKind::MachineRetired { id, .. } => {
            app.machines.remove(id);
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
            // the engine keeps phase times in memory and sends no machine change for them
            if let Some(m) = app.machines.get_mut(id) {
                m.phases.set(*phase, ev.at);
                if *phase == Phase::BootComplete {
                    m.state = State::Running;
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

fn on_key(app: &mut App, action: Action) -> Option<Command> {
    match action {
        Action::Help => {
            app.dialog = Some(Dialog::Help);
            None
        }
        Action::Back => {
            if !app.filter.is_empty() {
                app.filter.clear();
                app.rows_dirty = true;
                app.prepare();
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
                    app.dialog = Some(Dialog::Event {
                        line: line.clone(),
                        scroll: 0,
                    })
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
            app.rows_dirty = true;
            app.prepare();
            app.set_status(format!("sorted by {}", app.sort.as_str()), false);
            None
        }
        Action::SortReverse => {
            app.sort_desc = !app.sort_desc;
            app.rows_dirty = true;
            app.prepare();
            None
        }
        Action::ToggleFollow => {
            app.follow = !app.follow;
            if app.follow {
                app.log_scroll = 0;
            }
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
            let current = app.machines.get(&id).and_then(|m| m.profile.clone());
            let selected = current
                .and_then(|c| app.profiles.iter().position(|p| p.name == c))
                .unwrap_or(0);
            if app.profiles.is_empty() {
                app.set_status("no profiles configured", true);
                return None;
            }
            app.dialog = Some(Dialog::Assign { id, selected });
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
            let m = app.machines.get(&id)?;
            let fields = [
                m.hostname.clone().unwrap_or_default(),
                m.rack.as_ref().map(|r| r.rack.clone()).unwrap_or_default(),
                m.rack
                    .as_ref()
                    .and_then(|r| r.unit)
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                m.notes.clone(),
            ];
            app.dialog = Some(Dialog::Edit {
                id,
                fields,
                focus: 0,
                error: None,
            });
            None
        }
        Action::StartOverride => {
            let id = app.selected_machine_id()?;
            app.dialog = Some(Dialog::Override {
                id,
                key: String::new(),
                value: String::new(),
                focus: 0,
                error: None,
            });
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
    app.rows_dirty = true;
    app.prepare();
    None
}

fn on_dialog(app: &mut App, action: Action) -> Option<Command> {
    let dialog = app.dialog.take()?;
    let (keep, cmd) = match dialog {
        Dialog::Help => match action {
            Action::Back | Action::Help | Action::Submit => (None, None),
            _ => (Some(Dialog::Help), None),
        },
        Dialog::Event { line, scroll } => {
            let scroll = match action {
                Action::Back | Action::Help | Action::Submit => {
                    app.dialog = None;
                    return None;
                }
                Action::Up => scroll.saturating_sub(1),
                Action::Down => scroll.saturating_add(1),
                Action::PageUp => scroll.saturating_sub(10),
                Action::PageDown => scroll.saturating_add(10),
                Action::Top => 0,
                _ => scroll,
            };
            // the view stops scrolling at the end of the text
            (Some(Dialog::Event { line, scroll }), None)
        }
        Dialog::Assign { id, selected } => {
            let n = app.profiles.len();
            match action {
                Action::Back => (None, None),
                Action::Up => (
                    Some(Dialog::Assign {
                        id,
                        selected: selected.saturating_sub(1),
                    }),
                    None,
                ),
                Action::Down => (
                    Some(Dialog::Assign {
                        id,
                        selected: (selected + 1).min(n.saturating_sub(1)),
                    }),
                    None,
                ),
                Action::Submit => match app.profiles.get(selected) {
                    None => (None, None),
                    Some(p) => {
                        let already = app.machines.get(&id).and_then(|m| m.profile.as_deref())
                            == Some(p.name.as_str());
                        match p.quantity {
                            Some(q) if !already && p.assigned >= q => (
                                Some(Dialog::ConfirmForce {
                                    id,
                                    profile: p.name.clone(),
                                    assigned: p.assigned,
                                    quantity: q,
                                }),
                                None,
                            ),
                            _ => {
                                let profile = p.name.clone();
                                app.set_status(format!("assigning {id} to {profile}…"), false);
                                (
                                    None,
                                    Some(Command::Assign {
                                        id,
                                        profile,
                                        force: false,
                                    }),
                                )
                            }
                        }
                    }
                },
                _ => (Some(Dialog::Assign { id, selected }), None),
            }
        }
        Dialog::ConfirmForce {
            id,
            profile,
            assigned,
            quantity,
        } => match action {
            Action::Confirm(true) | Action::Submit => {
                app.set_status(format!("assigning {id} to {profile} (forced)…"), false);
                (
                    None,
                    Some(Command::Assign {
                        id,
                        profile,
                        force: true,
                    }),
                )
            }
            Action::Confirm(false) | Action::Back => {
                app.set_status("assignment cancelled", false);
                (None, None)
            }
            _ => (
                Some(Dialog::ConfirmForce {
                    id,
                    profile,
                    assigned,
                    quantity,
                }),
                None,
            ),
        },
        Dialog::Edit {
            id,
            mut fields,
            focus,
            error,
        } => match action {
            Action::Back => (None, None),
            Action::NextField | Action::Down => (
                Some(Dialog::Edit {
                    id,
                    fields,
                    focus: (focus + 1) % EDIT_FIELDS.len(),
                    error,
                }),
                None,
            ),
            Action::Up => (
                Some(Dialog::Edit {
                    id,
                    fields,
                    focus: (focus + EDIT_FIELDS.len() - 1) % EDIT_FIELDS.len(),
                    error,
                }),
                None,
            ),
            Action::Input(c) => {
                fields[focus].push(c);
                (
                    Some(Dialog::Edit {
                        id,
                        fields,
                        focus,
                        error: None,
                    }),
                    None,
                )
            }
            Action::Backspace => {
                fields[focus].pop();
                (
                    Some(Dialog::Edit {
                        id,
                        fields,
                        focus,
                        error: None,
                    }),
                    None,
                )
            }
            Action::Submit => match edit_from_form(app.machines.get(&id), &fields) {
                Ok(Some(edit)) => {
                    app.set_status(format!("saving {id}…"), false);
                    (None, Some(Command::Edit { id, edit }))
                }
                Ok(None) => {
                    app.set_status("nothing changed", false);
                    (None, None)
                }
                Err(e) => (
                    Some(Dialog::Edit {
                        id,
                        fields,
                        focus,
                        error: Some(e),
                    }),
                    None,
                ),
            },
            _ => (
                Some(Dialog::Edit {
                    id,
                    fields,
                    focus,
                    error,
                }),
                None,
            ),
        },
        Dialog::Override {
            id,
            mut key,
            mut value,
            focus,
            error,
        } => match action {
            Action::Back => (None, None),
            Action::NextField | Action::Down | Action::Up => (
                Some(Dialog::Override {
                    id,
                    key,
                    value,
                    focus: 1 - focus,
                    error,
                }),
                None,
            ),
            Action::Input(c) => {
                if focus == 0 {
                    key.push(c)
                } else {
                    value.push(c)
                }
                (
                    Some(Dialog::Override {
                        id,
                        key,
                        value,
                        focus,
                        error: None,
                    }),
                    None,
                )
            }
            Action::Backspace => {
                if focus == 0 {
                    key.pop();
                } else {
                    value.pop();
                }
                (
                    Some(Dialog::Override {
                        id,
                        key,
                        value,
                        focus,
                        error: None,
                    }),
                    None,
                )
            }
            Action::Submit => {
                let k = key.trim().to_string();
                if k.is_empty() || k.contains(char::is_whitespace) {
                    (
                        Some(Dialog::Override {
                            id,
                            key,
                            value,
                            focus: 0,
                            error: Some("the key is one word, e.g. role".into()),
                        }),
                        None,
                    )
                } else {
                    let mut edit = Edit::default();
                    edit.overrides.insert(k.clone(), override_value(&value));
                    app.set_status(format!("overriding {k} on {id}…"), false);
                    (None, Some(Command::Edit { id, edit }))
                }
            }
            _ => (
                Some(Dialog::Override {
                    id,
                    key,
                    value,
                    focus,
                    error,
                }),
                None,
            ),
        },
    };
    app.dialog = keep;
    cmd
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
        assert_eq!(
            app.dialog,
            Some(Dialog::Assign {
                id: id("r1-u05"),
                selected: 1
            })
        );
        update(&mut app, Action::Down);
        let cmd = update(&mut app, Action::Submit);
        match cmd {
            Some(Command::Assign {
                id: i,
                profile,
                force,
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
        // control-plane (3 of 3) is first
        assert!(update(&mut app, Action::Submit).is_none());
        assert!(matches!(
            app.dialog,
            Some(Dialog::ConfirmForce {
                assigned: 3,
                quantity: 3,
                ..
            })
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
            },
        );
        assert!(matches!(app.dialog, Some(Dialog::ConfirmForce { .. })));
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
                },
            ),
        );
        let r106 = &app.machines[&id("r1-u06")];
        let (phase, d, stalled) = app.phase_of(r106, NOW).unwrap();
        assert_eq!(phase, Phase::Config);
        assert_eq!(d, Duration::ZERO);
        assert!(!stalled);
        // control-plane has stall_after 20m: 15 minutes in a phase is fine there
        let mut cp = Machine::new(id("cp"), String::new(), NOW - time::Duration::minutes(15));
        cp.profile = Some("control-plane".into());
        assert!(!app.phase_of(&cp, NOW).unwrap().2);
        cp.phases
            .set(Phase::FirstSeen, NOW - time::Duration::minutes(25));
        assert!(app.phase_of(&cp, NOW).unwrap().2);
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
            Some(Dialog::Edit { error: Some(e), .. }) => assert!(e.contains("not a number"), "{e}"),
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
    fn override_parses_json_or_text_and_empty_removes() {
        assert_eq!(override_value("3"), Some(serde_json::json!(3)));
        assert_eq!(
            override_value("storage"),
            Some(serde_json::json!("storage"))
        );
        assert_eq!(override_value("[1,2]"), Some(serde_json::json!([1, 2])));
        assert_eq!(override_value("  "), None);
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

    #[test]
    fn simple_actions_target_the_selection() {
        let mut app = fixtures::session().unwrap();
        app.select(&id("r1-u08"));
        assert!(
            matches!(update(&mut app, Action::Unassign), Some(Command::Unassign { id: i }) if i == id("r1-u08"))
        );
        assert!(matches!(
            update(&mut app, Action::Reinstall),
            Some(Command::Reinstall { .. })
        ));
        assert!(matches!(
            update(&mut app, Action::BootComplete),
            Some(Command::BootComplete { .. })
        ));
        let mut empty = fixtures::empty().unwrap();
        assert!(update(&mut empty, Action::Unassign).is_none());
        assert!(empty.status.as_ref().unwrap().error);
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
            },
        );
        assert!(matches!(done, Some(Command::LoadHistory { .. })));
        assert!(!app.status.as_ref().unwrap().error);
    }

    #[test]
    fn operator_name_prefers_config_then_user() {
        assert_eq!(operator_name(Some("alice"), Some("bob".into())), "alice");
        assert_eq!(operator_name(Some("  "), Some("bob".into())), "bob");
        assert_eq!(operator_name(None, None), "operator");
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

    fn line(secs: i64, source: &'static str, text: &str) -> LogLine {
        LogLine::new(
            NOW + time::Duration::seconds(secs),
            Level::Warn,
            source,
            text.into(),
        )
    }

    #[test]
    fn identical_events_in_a_row_collapse_with_a_count_and_both_times() {
        let mut log = VecDeque::new();
        assert!(append_collapsed(&mut log, line(0, "service", "retry"), 10));
        for i in 1..12 {
            assert!(!append_collapsed(
                &mut log,
                line(i * 5, "service", "retry"),
                10
            ));
        }
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].count, 12);
        assert_eq!(log[0].first, NOW);
        assert_eq!(log[0].at, NOW + time::Duration::seconds(55));
        // another text, another source or another level is a new line
        assert!(append_collapsed(&mut log, line(60, "service", "other"), 10));
        assert!(append_collapsed(&mut log, line(61, "log", "other"), 10));
        let mut error = line(62, "log", "other");
        error.level = Level::Error;
        assert!(append_collapsed(&mut log, error, 10));
        // only consecutive duplicates fold: "retry" again after others is a new line
        assert!(append_collapsed(&mut log, line(63, "service", "retry"), 10));
        let counts: Vec<u32> = log.iter().map(|l| l.count).collect();
        assert_eq!(counts, vec![12, 1, 1, 1, 1]);
        // the cap drops the oldest line
        assert!(append_collapsed(&mut log, line(64, "log", "x"), 5));
        assert_eq!(log.len(), 5);
        assert_eq!(log[0].text, "other");
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
        // the newest line is selected; two up is dnsmasq's status
        update(&mut app, Action::Up);
        update(&mut app, Action::Up);
        update(&mut app, Action::OpenDetail);
        match &app.dialog {
            Some(Dialog::Event { line, scroll: 0 }) => {
                assert!(line.text.starts_with("dnsmasq waiting"), "{}", line.text);
                assert!(line.text.ends_with("does not exist"), "{}", line.text);
            }
            other => panic!("expected the event popup, got {other:?}"),
        }
        update(&mut app, Action::Down);
        assert!(matches!(app.dialog, Some(Dialog::Event { scroll: 1, .. })));
        update(&mut app, Action::Back);
        assert!(app.dialog.is_none());
        // the collapsed line carries its count into the popup
        update(&mut app, Action::ToggleFollow);
        update(&mut app, Action::OpenDetail);
        match &app.dialog {
            Some(Dialog::Event { line, .. }) => {
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
    fn quit_quits() {
        let mut app = fixtures::empty().unwrap();
        assert!(matches!(
            update(&mut app, Action::Quit),
            Some(Command::Quit)
        ));
        assert!(app.quit);
    }
}
