//! What the engine tells the console beyond machine records, followed from its events: boot
//! timelines (each step placed in the boot the engine put it in, a MAC's steps joined to its
//! machine when it registers), stalls (set and ended by the engine, never worked out here), the
//! DHCP clients ignored as unknown, and each machine's power as its BMC last said.

use mayu::engine::{IgnoredClient, Snapshot};
use mayu::events::{Event, EventKind};
use mayu::machine::Phase;
use mayu::timeline::StepKind;

use super::state::App;

impl App {
    /// Takes the engine's timelines and ignored clients from a snapshot.
    pub(super) fn observe_snapshot(&mut self, snap: &Snapshot) {
        self.timelines = snap.timelines.machines.clone();
        self.unregistered = snap.timelines.unregistered.clone();
        self.ignored = snap.ignored.clone();
    }

    /// Follows one event; true when something shown changed.
    pub(super) fn observe(&mut self, ev: &Event) -> bool {
        match &ev.kind {
            EventKind::TimelineStep {
                id,
                mac,
                boot,
                step,
            } => {
                let t = match (id, mac) {
                    (Some(id), _) => self.timelines.entry(id.clone()).or_default(),
                    (None, Some(mac)) => self.unregistered.entry(*mac).or_default(),
                    (None, None) => return false,
                };
                t.place(*boot, step.clone());
                // the engine keeps the phase time of every step, also the ones it counts
                // without announcing (a held machine's polls)
                let phase = match step.kind {
                    StepKind::Ipxe => Some(Phase::Ipxe),
                    StepKind::Kernel => Some(Phase::Kernel),
                    StepKind::Initrd => Some(Phase::Initrd),
                    StepKind::Config => Some(Phase::Config),
                    StepKind::DiskBoot => Some(Phase::DiskBoot),
                    StepKind::BootComplete => Some(Phase::BootComplete),
                    StepKind::Dhcp | StepKind::Tftp | StepKind::Program => None,
                };
                if let (Some(id), Some(phase)) = (id, phase) {
                    if let Some(m) = self.machines.get_mut(id) {
                        m.phases.set(phase, step.latest());
                        self.rows_dirty = true;
                    }
                }
                true
            }
            EventKind::TimelineMerged { mac, id } => {
                if let Some(earlier) = self.unregistered.remove(mac) {
                    self.timelines.entry(id.clone()).or_default().merge(earlier);
                }
                true
            }
            EventKind::Stalled { id, stall, .. } => {
                if let Some(m) = self.machines.get_mut(id) {
                    m.stall = Some(*stall);
                    self.rows_dirty = true;
                }
                true
            }
            EventKind::StallEnded { id, .. } => {
                if let Some(m) = self.machines.get_mut(id) {
                    m.stall = None;
                    self.rows_dirty = true;
                }
                true
            }
            EventKind::Ignored { client } => {
                self.note_ignored(client.clone());
                true
            }
            EventKind::MachineAdded { machine, .. } => {
                let before = self.ignored.len();
                self.ignored.retain(|c| !machine.macs.contains(&c.mac));
                before != self.ignored.len()
            }
            EventKind::MachineRetired { id, .. } => {
                self.timelines.remove(id);
                false
            }
            EventKind::Power { id, power, .. } => {
                self.power.insert(id.clone(), power.clone());
                self.rows_dirty = true;
                true
            }
            _ => false,
        }
    }

    fn note_ignored(&mut self, client: IgnoredClient) {
        self.ignored.retain(|c| c.mac != client.mac);
        self.ignored.insert(0, client);
    }

    /// The ignored client selected on the leases page, if the selection is on one.
    pub fn selected_ignored(&self) -> Option<&IgnoredClient> {
        self.lease_selected
            .checked_sub(self.leases.len())
            .and_then(|i| self.ignored.get(i))
    }
}
