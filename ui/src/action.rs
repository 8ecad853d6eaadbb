//! Intents: [`Action`]s flow into `update` (from keys, the bus and finished commands);
//! [`Command`]s flow out of it to the runner, which does the I/O.

use std::sync::Arc;

use mayu::engine::{Edit, Snapshot};
use mayu::events::Event;
use mayu::inventory::HistoryEntry;
use mayu::lease::{Lease, ServiceState};
use mayu::machine::{Mac, MachineId};
use mayu::power::PowerAction;
use time::OffsetDateTime;

/// A whole screen; `1`–`4` switch between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Machines,
    Detail,
    Leases,
    Events,
}

impl Page {
    pub const ALL: [Page; 4] = [Page::Machines, Page::Detail, Page::Leases, Page::Events];
    pub fn title(&self) -> &'static str {
        match self {
            Page::Machines => "Machines",
            Page::Detail => "Detail",
            Page::Leases => "Leases",
            Page::Events => "Events",
        }
    }
}

/// The pane that takes movement keys on the machines page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Machines,
    Events,
}

/// What the machines table is ordered by (`s` cycles, `S` reverses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    State,
    Profile,
    Phase,
    LastEvent,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Id => SortKey::State,
            SortKey::State => SortKey::Profile,
            SortKey::Profile => SortKey::Phase,
            SortKey::Phase => SortKey::LastEvent,
            SortKey::LastEvent => SortKey::Id,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::State => "state",
            SortKey::Profile => "profile",
            SortKey::Phase => "phase",
            SortKey::LastEvent => "last event",
        }
    }
}

/// How a command the runner carried out went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok,
    /// the profile filled up before the assignment landed: ask before forcing.
    Full {
        id: MachineId,
        profile: String,
        quantity: u32,
    },
    Failed(String),
}

/// An assignment as it can be taken back (`z`): what was done, and each machine's profile
/// before it (`None`: it had none).
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    /// for the status line: `assign r1-u05 to discovery`.
    pub did: String,
    pub before: Vec<(MachineId, Option<String>)>,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// `q` or Ctrl-C: asks first while machines are booting.
    Quit,
    Help,
    /// Esc: close the dialog, stop filtering, or go back to the machines page.
    Back,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    NextPane,
    ShowPage(Page),
    /// Enter on the machines table: the selected machine's detail page.
    OpenDetail,
    StartFilter,
    StartAssign,
    /// `p`: a power action for the selected (or marked) machines.
    StartPower,
    Unassign,
    Reinstall,
    Retire,
    BootComplete,
    /// Space: mark or unmark the selected machine for a bulk action.
    ToggleMark,
    /// `z`: take back the last assignment made in this session.
    Undo,
    StartEdit,
    StartOverride,
    SortNext,
    SortReverse,
    ToggleFollow,
    /// text typed into the open input (filter or dialog field).
    Input(char),
    Backspace,
    /// Tab inside a form.
    NextField,
    /// Enter inside a dialog or the filter line.
    Submit,
    /// y / n in a confirmation.
    Confirm(bool),
    Bus(Arc<Event>),
    /// the bus dropped events; the runner re-read the whole state.
    Resync {
        snapshot: Snapshot,
        leases: Vec<Lease>,
        services: Vec<ServiceState>,
        lost: u64,
    },
    LeasesLoaded(Vec<Lease>),
    HistoryLoaded {
        id: MachineId,
        result: Result<Vec<HistoryEntry>, String>,
    },
    /// a command finished; `what` names it for the status line; `undo` takes back what of it
    /// succeeded, when it was an assignment.
    Done {
        what: String,
        outcome: Outcome,
        undo: Option<Undo>,
    },
    /// the runner's clock, once a second: "recently active" and status lines that age.
    Tick(OffsetDateTime),
}

/// Work for the runner: engine calls (blocking, so run off the UI task) and quitting.
#[derive(Debug, Clone)]
pub enum Command {
    Assign {
        id: MachineId,
        profile: String,
        force: bool,
        /// comes back in `Done` once the assignment landed.
        undo: Option<Undo>,
    },
    Unassign {
        id: MachineId,
    },
    Reinstall {
        id: MachineId,
    },
    BootComplete {
        id: MachineId,
    },
    Retire {
        id: MachineId,
    },
    Edit {
        id: MachineId,
        edit: Edit,
    },
    /// engine commands carried out in order; one `Done` named `what` reports them all.
    Batch {
        what: String,
        commands: Vec<Command>,
        undo: Option<Undo>,
    },
    LoadHistory {
        id: MachineId,
    },
    LoadLeases,
    /// make an ignored DHCP client a machine, in `profile` if given.
    Enrol {
        mac: Mac,
        profile: Option<String>,
    },
    /// the same power action for each machine, through its BMC.
    Power {
        ids: Vec<MachineId>,
        action: PowerAction,
    },
    Quit,
}
