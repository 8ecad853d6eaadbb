//! Boot steps into timelines (`crate::timeline`): each DHCP, TFTP and boot-port step is
//! recorded under the index lock against its machine, or against its MAC while no machine has
//! that MAC yet (an "unregistered MAC": seen by DHCP, never asked for a script), and announced
//! as a `timeline_step` event. When a machine with that MAC appears, the MAC's steps join its
//! timeline (`timeline_merged`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Engine, Index};
use crate::events::EventKind;
use crate::machine::{Mac, Machine, MachineId, Phase};
use crate::timeline::{Boot, Step, StepKind, Timeline};

/// A repeated step is announced again only this long after the repeat before it.
const ANNOUNCE_REPEATS_EVERY: time::Duration = time::Duration::SECOND;

/// Unregistered MACs remembered; the one heard from least recently is forgotten first.
pub const MAX_UNREGISTERED: usize = 1024;

/// Every timeline the engine keeps, for a late subscriber to start from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timelines {
    pub machines: HashMap<MachineId, Timeline>,
    pub unregistered: HashMap<Mac, Timeline>,
}

/// A MAC seen by DHCP that is no machine yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unregistered {
    pub mac: Mac,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    pub timeline: Timeline,
}

impl Index {
    /// Records `step` for machine `id`, or for `mac` when no machine has it, and announces
    /// it. Returns how many times in a row it has now happened. A burst of the same step (a
    /// client fetching its script over and over) is announced at most once a second; each
    /// announcement carries the step as recorded (its count and last time), so a subscriber's
    /// copy catches up with the repeats it was not told about.
    fn record_step(
        &mut self,
        engine: &Engine,
        id: Option<&MachineId>,
        mac: Option<Mac>,
        step: Step,
    ) -> u32 {
        let id = id
            .filter(|id| self.machines.contains_key(*id))
            .or_else(|| mac.and_then(|m| self.by_mac.get(&m)))
            .cloned();
        let timeline = match (&id, mac) {
            (Some(id), _) => self.timelines.entry(id.clone()).or_default(),
            (None, Some(mac)) => {
                if !self.unregistered.contains_key(&mac)
                    && self.unregistered.len() >= MAX_UNREGISTERED
                {
                    let oldest = self
                        .unregistered
                        .iter()
                        .min_by_key(|(_, t)| t.current().and_then(|b| b.last()))
                        .map(|(m, _)| *m);
                    if let Some(m) = oldest {
                        self.unregistered.remove(&m);
                    }
                }
                self.unregistered.entry(mac).or_default()
            }
            (None, None) => return 0,
        };
        let before = timeline.current().and_then(Boot::last);
        let boot = timeline.record(step);
        let Some(last) = timeline.current().and_then(|b| b.steps.last()) else {
            return 0;
        };
        let count = last.count;
        let quiet = before.is_none_or(|b| last.latest() - b >= ANNOUNCE_REPEATS_EVERY);
        if count == 1 || quiet {
            engine.inner.bus.publish(EventKind::TimelineStep {
                mac: if id.is_some() { None } else { mac },
                id,
                boot,
                step: last.clone(),
            });
        }
        count
    }

    /// Moves what was recorded under `m`'s MACs into its timeline.
    fn adopt_steps(&mut self, engine: &Engine, m: &Machine) {
        for mac in &m.macs {
            if let Some(earlier) = self.unregistered.remove(mac) {
                self.timelines
                    .entry(m.id.clone())
                    .or_default()
                    .merge(earlier);
                engine.inner.bus.publish(EventKind::TimelineMerged {
                    mac: *mac,
                    id: m.id.clone(),
                });
            }
        }
    }
}

impl Engine {
    /// A DHCP message dnsmasq logged for `mac`. `firmware`: from a PXE or HTTP boot client
    /// (its vendor class), which may start a new boot, except an ACK: it answers the REQUEST
    /// just before it, in the same boot, and as the last of dnsmasq's burst it can reach mayu
    /// after iPXE has already fetched its kernel. An ACK to a known machine is also its DHCP
    /// phase.
    pub fn dhcp_step(&self, mac: Mac, message: &str, detail: String, firmware: bool) {
        let now = OffsetDateTime::now_utc();
        let mut idx = self.index();
        let step = Step::new(
            now,
            StepKind::Dhcp,
            format!("{message} {detail}").trim_end(),
        )
        .firmware(firmware && message != "DHCPACK");
        idx.record_step(self, None, Some(mac), step);
        if message == "DHCPACK" {
            if let Some(id) = idx.by_mac.get(&mac).cloned() {
                idx.touch(&id, Phase::Dhcp, now);
                let profile = idx.machines.get(&id).and_then(|m| m.profile.clone());
                self.inner.bus.publish(EventKind::BootStep {
                    id: Some(id),
                    phase: Phase::Dhcp,
                    detail,
                    bytes: None,
                    duration_ms: None,
                    profile,
                });
            }
        }
    }

    /// A TFTP transfer to the client with `mac` (from its lease), or to machine `id`.
    pub fn tftp_step(&self, id: Option<&MachineId>, mac: Option<Mac>, detail: String) {
        let step = Step::new(OffsetDateTime::now_utc(), StepKind::Tftp, detail);
        self.index().record_step(self, id, mac, step);
    }

    /// Records a boot-port step of machine `id` (called with the index lock held); returns how
    /// many times in a row it has now happened.
    pub(super) fn boot_port_step(
        &self,
        idx: &mut Index,
        id: &MachineId,
        phase: Phase,
        detail: &str,
        at: OffsetDateTime,
    ) -> u32 {
        // On the boot port a DHCP-phase step is a boot program fetched over HTTP (UEFI HTTP
        // boot); dnsmasq's DHCP messages come through `dhcp_step`.
        let kind = match phase {
            Phase::Dhcp => Some(StepKind::Program),
            p => StepKind::of(p),
        };
        match kind {
            Some(kind) => idx.record_step(self, Some(id), None, Step::new(at, kind, detail)),
            None => 0,
        }
    }

    /// Joins the steps recorded under a new machine's MACs to its timeline (index lock held).
    pub(super) fn adopt_steps(&self, idx: &mut Index, m: &Machine) {
        idx.adopt_steps(self, m);
    }

    /// A boot an older server saw complete at `at` (Mayu's `LastBoot`), as a timeline's first
    /// boot.
    pub fn imported_boot(&self, id: &MachineId, at: OffsetDateTime) {
        let mut idx = self.index();
        if idx.machines.contains_key(id) {
            let step = Step::new(at, StepKind::BootComplete, "imported from Mayu's LastBoot");
            idx.record_step(self, Some(id), None, step);
        }
    }

    /// A machine's timeline (empty when it has not booted since mayu started).
    pub fn timeline(&self, id: &MachineId) -> Timeline {
        self.index().timelines.get(id).cloned().unwrap_or_default()
    }

    /// The MACs seen by DHCP that are no machine (yet), most recently heard first.
    pub fn unregistered(&self) -> Vec<Unregistered> {
        let idx = self.index();
        let mut out: Vec<Unregistered> = idx
            .unregistered
            .iter()
            .map(|(mac, t)| Unregistered {
                mac: *mac,
                last_seen: t.current().and_then(|b| b.last()),
                timeline: t.clone(),
            })
            .collect();
        out.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.mac.cmp(&b.mac)));
        out
    }

    /// The unregistered MAC's timeline, if it has one.
    pub fn unregistered_timeline(&self, mac: &Mac) -> Option<Timeline> {
        self.index().unregistered.get(mac).cloned()
    }
}

impl Index {
    pub(super) fn timelines_now(&self) -> Timelines {
        Timelines {
            machines: self.timelines.clone(),
            unregistered: self.unregistered.clone(),
        }
    }
}
