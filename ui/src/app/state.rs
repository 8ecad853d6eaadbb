//! What the console holds: the [`App`] struct, the setup it runs in, and the queries and
//! small moves the update loop and the views share.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use mayu::engine::tally::{self, Tally};
use mayu::engine::{IgnoredClient, ProfileStatus, Snapshot};
use mayu::events::Event;
use mayu::inventory::HistoryEntry;
use mayu::lease::{Lease, ServiceState, ServiceStatus};
use mayu::machine::{Mac, Machine, MachineId, Phase, State};
use mayu::power::PowerStatus;
use mayu::timeline::Timeline;
use time::OffsetDateTime;

use super::dialogs::Dialog;
use super::log::LogLine;
use crate::action::{Command, Page, Pane, SortKey, Undo};

/// How long a machine that just appeared is highlighted.
pub const NEW_FOR: Duration = Duration::from_secs(8);
/// A machine with no boot step for this long is not booting any more (powered off, or
/// waiting on something outside mayu), even in a state that is.
pub const BOOTING_QUIET: Duration = Duration::from_secs(10 * 60);
/// How long a status line that is not an error stays up.
pub const STATUS_FOR: Duration = Duration::from_secs(8);
/// What the audit log calls an operator who has no name anywhere.
const NO_NAME: &str = "operator";

/// What the console knows about the setup it runs in (fixed for the run).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub operator: String,
    pub boot_addr: String,
    pub api_addr: String,
    pub dhcp_mode: String,
    pub interface: String,
    pub templates_dir: String,
}

/// The operator's name in the audit log: config `operator`, else `$USER`, else `$LOGNAME`,
/// else the name of the process's uid (`uid_name`, asked only when the environment has none),
/// else "operator".
pub fn operator_name(
    configured: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    uid_name: impl FnOnce() -> Option<String>,
) -> String {
    let named = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    named(configured.map(str::to_string))
        .or_else(|| named(env("USER")))
        .or_else(|| named(env("LOGNAME")))
        .or_else(|| named(uid_name()))
        .unwrap_or_else(|| NO_NAME.to_string())
}

/// The footer's "who am I": `operator alice`, but the fallback name only once.
pub fn operator_label(name: &str) -> String {
    if name == NO_NAME {
        NO_NAME.to_string()
    } else {
        format!("{NO_NAME} {name}")
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
    /// when it was said (by the runner's clock); a fine one goes after [`STATUS_FOR`].
    pub at: OffsetDateTime,
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
    /// machines marked (Space) for a bulk action.
    pub marked: BTreeSet<MachineId>,
    /// assignments made in this session, newest last: what `z` takes back.
    pub undo: Vec<Undo>,
    /// the runner's clock as of its last tick; the update loop reads no clock of its own.
    pub now: OffsetDateTime,
    /// first visible row of the machines table; render-side state like ratatui's `TableState`.
    pub table_offset: Cell<usize>,
    pub quit: bool,
    /// each machine's boots as the engine recorded them (`mayu::timeline`).
    pub timelines: HashMap<MachineId, Timeline>,
    /// steps of MACs seen by DHCP that are no machine yet.
    pub unregistered: HashMap<Mac, Timeline>,
    /// DHCP clients dnsmasq ignored as unknown, most recently seen first (enrolment).
    pub ignored: Vec<IgnoredClient>,
    /// each machine's power as its BMC last said (power control configured).
    pub power: HashMap<MachineId, PowerStatus>,
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
            marked: BTreeSet::new(),
            undo: Vec::new(),
            now: OffsetDateTime::UNIX_EPOCH,
            table_offset: Cell::new(0),
            quit: false,
            timelines: HashMap::new(),
            unregistered: HashMap::new(),
            ignored: Vec::new(),
            power: HashMap::new(),
        };
        app.load_snapshot(snapshot);
        app.prepare();
        app
    }

    pub(super) fn load_snapshot(&mut self, snapshot: Snapshot) {
        self.observe_snapshot(&snapshot);
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
        let rows = self.leases.len() + self.ignored.len();
        self.lease_selected = self.lease_selected.min(rows.saturating_sub(1));
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

    /// Booting: assigned and not finished, with a boot step in the last [`BOOTING_QUIET`] (a
    /// powered-off `configured` machine is not booting, whatever the stall rules say of its
    /// state); a stalled one is counted as stalled instead.
    pub fn is_booting(&self, m: &Machine, now: OffsetDateTime) -> bool {
        matches!(m.state, State::Configured | State::Installing)
            && self
                .phase_of(m, now)
                .is_some_and(|(phase, quiet, stalled)| {
                    phase != Phase::BootComplete && quiet <= BOOTING_QUIET && !stalled
                })
    }

    /// Machines booting right now.
    pub fn booting_count(&self, now: OffsetDateTime) -> usize {
        self.machines
            .values()
            .filter(|m| self.is_booting(m, now))
            .count()
    }

    /// Machines booting `profile` right now.
    pub fn booting_in(&self, profile: &str, now: OffsetDateTime) -> usize {
        self.machines
            .values()
            .filter(|m| m.profile.as_deref() == Some(profile) && self.is_booting(m, now))
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
        // Stalled is the engine's word (`Machine::stall`), never worked out here.
        Some((phase, in_phase, m.stall.is_some()))
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
            at: self.now,
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
        let id = self.rows[next].clone();
        if self.selected_id.as_ref() != Some(&id) {
            // a status line about the machine left behind would read as about this one
            self.status = None;
        }
        self.selected_id = Some(id);
        self.want_history()
    }

    /// Moves whatever has the movement keys: the leases table, the event log or the machines.
    pub(super) fn move_by(&mut self, delta: isize) -> Option<Command> {
        match (self.page, self.focus) {
            (Page::Leases, _) => {
                // the leases, then the ignored clients below them
                let rows = self.leases.len() + self.ignored.len();
                let last = rows.saturating_sub(1) as isize;
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

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn operator_name_prefers_config_then_user_then_logname_then_uid() {
        let none = || None;
        let uid = || Some("carol".to_string());
        let both = [("USER", "bob"), ("LOGNAME", "dave")];
        assert_eq!(operator_name(Some("alice"), env(&both), uid), "alice");
        assert_eq!(operator_name(Some("  "), env(&both), uid), "bob");
        // $USER unset (cron, some containers): $LOGNAME, then the uid's name
        assert_eq!(
            operator_name(None, env(&[("LOGNAME", "dave")]), uid),
            "dave"
        );
        assert_eq!(operator_name(None, env(&[("USER", " ")]), uid), "carol");
        assert_eq!(operator_name(None, env(&[]), none), "operator");
        // the footer names the fallback once
        assert_eq!(operator_label("operator"), "operator");
        assert_eq!(operator_label("carol"), "operator carol");
    }

    #[test]
    fn only_recently_active_machines_are_booting() {
        let now = crate::fixtures::NOW;
        let mut app = App::new(
            Setup::default(),
            Snapshot {
                machines: Vec::new(),
                profiles: Vec::new(),
                waiting: 0,
                ignored: Vec::new(),
                timelines: Default::default(),
            },
        );
        let mut m = Machine::new("pw-off".parse().unwrap(), String::new(), now);
        m.profile = Some("worker".into());
        m.state = State::Configured;
        m.phases.set(Phase::Ipxe, now - time::Duration::seconds(30));
        assert!(app.is_booting(&m, now));
        // assigned, then powered off: no boot step for hours
        let hours = now + time::Duration::hours(3);
        assert!(!app.is_booting(&m, hours));
        // a finished boot is not booting, whatever its state says
        m.phases.set(Phase::BootComplete, now);
        assert!(!app.is_booting(&m, now));
        // a waiting machine is not booting
        let mut w = Machine::new("held".parse().unwrap(), String::new(), now);
        w.phases.set(Phase::Ipxe, now);
        assert!(!app.is_booting(&w, now));
        app.machines.insert(m.id.clone(), m);
        assert_eq!(app.booting_count(hours), 0);
    }
}
