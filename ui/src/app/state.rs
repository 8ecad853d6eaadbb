//! What the console holds: the [`App`] struct, the setup it runs in, and the queries and
//! small moves the update loop and the views share.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use mayu::engine::tally::{self, Tally};
use mayu::engine::{ProfileStatus, Snapshot};
use mayu::events::Event;
use mayu::inventory::HistoryEntry;
use mayu::lease::{Lease, ServiceState, ServiceStatus};
use mayu::machine::{Machine, MachineId, Phase, State};
use time::OffsetDateTime;

use super::dialogs::Dialog;
use super::log::LogLine;
use crate::action::{Command, Page, Pane, SortKey};

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

/// Everything the console shows. Rendering reads it; only `update` changes it.
#[derive(Debug)]
pub struct App {
    pub setup: Setup,
    pub machines: HashMap<MachineId, Machine>,
    /// the machines table after filter and sort; rebuilt lazily by [`App::prepare`].
    pub rows: Vec<MachineId>,
    pub(super) rows_dirty: bool,
    /// index into `rows`.
    pub selected: usize,
    /// the selected machine, kept by id so it stays put while rows move.
    pub selected_id: Option<MachineId>,
    pub profiles: Vec<ProfileStatus>,
    /// unassigned machines.
    pub waiting: u32,
    /// the counts behind `profiles` and `waiting`, followed from machine events.
    pub(super) tally: Tally,
    pub leases: Vec<Lease>,
    pub lease_selected: usize,
    pub services: BTreeMap<String, ServiceState>,
    pub templates: TemplateStatus,
    pub log: VecDeque<LogLine>,
    /// the newest bus sequence number already in the log (the replay and the live feed overlap).
    pub(super) last_seq: u64,
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
            tally: Tally::default(),
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

    pub(super) fn load_snapshot(&mut self, snapshot: Snapshot) {
        self.machines = snapshot
            .machines
            .into_iter()
            .map(|m| (m.id.clone(), m))
            .collect();
        self.tally = Tally::from_statuses(&snapshot.profiles, snapshot.waiting);
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

    /// Counts `m` in or out of the fill levels, the way the engine counts
    /// ([`mayu::engine::tally`]), and refreshes the profiles shown.
    pub(super) fn count(&mut self, m: &Machine, up: bool) {
        self.tally.count(m, up);
        for p in &mut self.profiles {
            tally::fill(p, &self.tally);
        }
        self.waiting = self.tally.waiting;
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

    pub(super) fn set_status(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    /// The event log has the movement keys: the events page, or its pane on the machines page.
    pub fn events_focused(&self) -> bool {
        self.page == Page::Events || (self.page == Page::Machines && self.focus == Pane::Events)
    }

    pub(super) fn detail_visible(&self) -> bool {
        self.page == Page::Detail || self.page == Page::Machines
    }

    /// Asks for the selected machine's audit history when it is on screen and not loaded.
    pub(super) fn want_history(&self) -> Option<Command> {
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

    /// Moves whatever has the movement keys: the leases table, the event log or the machines.
    pub(super) fn move_by(&mut self, delta: isize) -> Option<Command> {
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

    /// The selection's id, or a status line saying there is none.
    pub(super) fn selected_machine_id(&mut self) -> Option<MachineId> {
        let id = self.selected_id.clone();
        if id.is_none() {
            self.set_status("no machine selected", true);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_name_prefers_config_then_user() {
        assert_eq!(operator_name(Some("alice"), Some("bob".into())), "alice");
        assert_eq!(operator_name(Some("  "), Some("bob".into())), "bob");
        assert_eq!(operator_name(None, None), "operator");
    }
}
