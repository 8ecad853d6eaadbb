//! Boot timelines: every step a machine takes while it boots — DHCP and TFTP from dnsmasq's
//! log (attached by MAC from the first packet, before the machine ever asks mayu for a
//! script), then its iPXE script, kernel, initrd, config and boot-complete — in the order they
//! happened, one numbered timeline per boot. Kept in memory only (the last [`KEEP_BOOTS`]
//! boots of each machine): a step is not worth a disk write.
//!
//! The rules here are pure: the engine records steps under its lock and announces each
//! (`timeline_step` events), and the console places those events with [`Timeline::place`].

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::machine::Phase;

/// Boots kept per machine (the current one and those before it).
pub const KEEP_BOOTS: usize = 5;
/// Steps kept per boot; later ones are counted in [`Boot::dropped`].
pub const MAX_STEPS: usize = 200;
/// A firmware step this long after the last one starts a new boot even if the last boot
/// never got as far as a kernel (a machine powered off mid-boot and on again later).
pub const NEW_BOOT_AFTER: Duration = Duration::from_secs(30 * 60);

/// What a step was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Dhcp,
    Tftp,
    /// a boot program (iPXE) fetched over HTTP by a UEFI HTTP boot client: its TFTP.
    Program,
    Ipxe,
    Kernel,
    Initrd,
    Config,
    DiskBoot,
    BootComplete,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Dhcp => "dhcp",
            StepKind::Tftp => "tftp",
            StepKind::Program => "boot program",
            StepKind::Ipxe => "ipxe",
            StepKind::Kernel => "kernel",
            StepKind::Initrd => "initrd",
            StepKind::Config => "config",
            StepKind::DiskBoot => "disk boot",
            StepKind::BootComplete => "boot complete",
        }
    }

    /// The step a boot phase is; `first_seen` is none.
    pub fn of(phase: Phase) -> Option<StepKind> {
        Some(match phase {
            Phase::FirstSeen => return None,
            Phase::Dhcp => StepKind::Dhcp,
            Phase::Ipxe => StepKind::Ipxe,
            Phase::Kernel => StepKind::Kernel,
            Phase::Initrd => StepKind::Initrd,
            Phase::Config => StepKind::Config,
            Phase::DiskBoot => StepKind::DiskBoot,
            Phase::BootComplete => StepKind::BootComplete,
        })
    }

    /// Steps of the loaded system (a kernel runs from here on).
    fn booted(self) -> bool {
        matches!(
            self,
            StepKind::Kernel
                | StepKind::Initrd
                | StepKind::Config
                | StepKind::DiskBoot
                | StepKind::BootComplete
        )
    }
}

/// One step; the same step repeated at once (a held machine polling for its script) is one
/// step with a count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: StepKind,
    pub detail: String,
    /// the firmware's own network boot (a PXE/HTTP boot client's DHCP, TFTP, the iPXE script):
    /// such a step after the last boot reached a kernel starts a new boot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub firmware: bool,
    /// how many times in a row it happened (1 unless repeated).
    #[serde(default = "one")]
    pub count: u32,
    /// the last repetition, when repeated.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_at: Option<OffsetDateTime>,
}

fn one() -> u32 {
    1
}

impl Step {
    pub fn new(at: OffsetDateTime, kind: StepKind, detail: impl Into<String>) -> Step {
        Step {
            at,
            kind,
            detail: detail.into(),
            firmware: matches!(kind, StepKind::Tftp | StepKind::Program | StepKind::Ipxe),
            count: 1,
            last_at: None,
        }
    }

    /// Marks a DHCP step as the firmware's (a PXE or HTTP boot client).
    pub fn firmware(mut self, yes: bool) -> Step {
        self.firmware = self.firmware || yes;
        self
    }

    /// When it last happened.
    pub fn latest(&self) -> OffsetDateTime {
        self.last_at.unwrap_or(self.at)
    }
}

/// One boot: its number (counted per machine since mayu started) and its steps in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    pub number: u32,
    pub steps: Vec<Step>,
    /// steps past [`MAX_STEPS`], not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Boot {
    pub fn started(&self) -> Option<OffsetDateTime> {
        self.steps.first().map(|s| s.at)
    }

    pub fn last(&self) -> Option<OffsetDateTime> {
        self.steps.last().map(Step::latest)
    }

    /// From the first step to the last.
    pub fn duration(&self) -> Duration {
        match (self.started(), self.last()) {
            (Some(a), Some(b)) => (b - a).try_into().unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        }
    }

    pub fn complete(&self) -> bool {
        self.steps.iter().any(|s| s.kind == StepKind::BootComplete)
    }

    /// Whether `step` begins the next boot rather than continuing this one.
    fn ends_before(&self, step: &Step) -> bool {
        if !step.firmware {
            return false;
        }
        let booted = self.steps.iter().any(|s| s.kind.booted());
        let quiet = self
            .last()
            .and_then(|l| Duration::try_from(step.at - l).ok())
            .is_some_and(|gap| gap > NEW_BOOT_AFTER);
        booted || quiet
    }

    /// The announced `step`: the same step further along replaces the copy's, anything else
    /// is added as the engine added it.
    fn catch_up(&mut self, step: Step) {
        if let Some(last) = self.steps.last_mut() {
            if last.kind == step.kind && last.detail == step.detail && last.at == step.at {
                *last = step;
                return;
            }
        }
        if step.count > 1 {
            // the first of these repeats never reached this copy: take them as they are
            if self.steps.len() >= MAX_STEPS {
                self.dropped += 1;
            } else {
                self.steps.push(step);
            }
            return;
        }
        self.push(step);
    }

    fn push(&mut self, step: Step) {
        if let Some(last) = self.steps.last_mut() {
            if last.kind == step.kind && last.detail == step.detail {
                last.count += 1;
                last.last_at = Some(step.at);
                return;
            }
        }
        if self.steps.len() >= MAX_STEPS {
            self.dropped += 1;
        } else {
            self.steps.push(step);
        }
    }
}

/// A machine's (or an unregistered MAC's) boots, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub boots: VecDeque<Boot>,
}

impl Timeline {
    pub fn current(&self) -> Option<&Boot> {
        self.boots.back()
    }

    /// Records `step`; returns the number of the boot it went to.
    pub fn record(&mut self, step: Step) -> u32 {
        let number = match self.boots.back() {
            Some(b) if b.ends_before(&step) => b.number + 1,
            Some(b) => b.number,
            None => 1,
        };
        self.put(number, step, Boot::push);
        number
    }

    /// Puts `step` into boot `number` as the engine announced it (a subscriber's copy): a
    /// step the copy already has, further along (more repeats), replaces it; a number past the
    /// current boot opens it; the oldest boots beyond [`KEEP_BOOTS`] are dropped.
    pub fn place(&mut self, number: u32, step: Step) {
        self.put(number, step, Boot::catch_up);
    }

    fn put(&mut self, number: u32, step: Step, add: fn(&mut Boot, Step)) {
        match self.boots.back_mut() {
            Some(b) if b.number >= number => add(b, step),
            _ => {
                self.boots.push_back(Boot {
                    number,
                    steps: vec![step],
                    dropped: 0,
                });
                while self.boots.len() > KEEP_BOOTS {
                    self.boots.pop_front();
                }
            }
        }
    }

    /// Joins what was recorded under a MAC before the machine registered: all steps of both,
    /// replayed in time order (so DHCP and TFTP land before the iPXE step they led to).
    pub fn merge(&mut self, earlier: Timeline) {
        let mut steps: Vec<Step> = std::mem::take(&mut self.boots)
            .into_iter()
            .chain(earlier.boots)
            .flat_map(|b| b.steps)
            .collect();
        steps.sort_by_key(|s| s.at);
        for s in steps {
            self.record(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn at(secs: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(secs)
    }

    fn pxe_boot(t: &mut Timeline, start: i64) -> Vec<u32> {
        vec![
            t.record(Step::new(at(start), StepKind::Dhcp, "DHCPDISCOVER").firmware(true)),
            t.record(
                Step::new(at(start + 1), StepKind::Dhcp, "DHCPACK 10.77.0.150").firmware(true),
            ),
            t.record(Step::new(at(start + 2), StepKind::Tftp, "undionly.kpxe")),
            t.record(Step::new(
                at(start + 4),
                StepKind::Ipxe,
                "profile worker script served",
            )),
            t.record(Step::new(at(start + 5), StepKind::Kernel, "vmlinuz")),
            t.record(Step::new(at(start + 9), StepKind::Initrd, "initrd")),
            // the installed system's own DHCP: not a firmware step, same boot
            t.record(Step::new(
                at(start + 20),
                StepKind::Dhcp,
                "DHCPACK 10.77.0.150",
            )),
            t.record(Step::new(at(start + 25), StepKind::BootComplete, "")),
        ]
    }

    #[test]
    fn each_boot_is_numbered_and_in_true_order() {
        let mut t = Timeline::default();
        assert_eq!(pxe_boot(&mut t, 0), vec![1; 8]);
        assert_eq!(
            pxe_boot(&mut t, 600),
            vec![2; 8],
            "the next power-on is boot 2"
        );
        assert_eq!(t.boots.len(), 2);
        let b = t.current().unwrap();
        assert_eq!(b.steps[0].kind, StepKind::Dhcp, "DHCP comes first");
        assert_eq!(b.steps.last().unwrap().kind, StepKind::BootComplete);
        assert!(b.complete());
        assert_eq!(b.duration(), Duration::from_secs(25));
        // the previous boot's boot-complete stays in boot 1, not above this boot's DHCP
        assert!(t.boots[0].complete());
        assert_eq!(t.boots[0].steps.len(), 8);
    }

    #[test]
    fn a_held_machine_polling_is_one_step_with_a_count() {
        let mut t = Timeline::default();
        for i in 0..12 {
            t.record(Step::new(
                at(i * 5),
                StepKind::Ipxe,
                "held: waiting for assignment",
            ));
        }
        let b = t.current().unwrap();
        assert_eq!((b.number, b.steps.len()), (1, 1));
        assert_eq!(b.steps[0].count, 12);
        assert_eq!(b.steps[0].latest(), at(55));
    }

    #[test]
    fn a_long_quiet_gap_before_firmware_starts_a_new_boot() {
        let mut t = Timeline::default();
        t.record(Step::new(at(0), StepKind::Dhcp, "DHCPDISCOVER").firmware(true));
        let later = NEW_BOOT_AFTER.as_secs() as i64 + 1;
        assert_eq!(
            t.record(Step::new(at(later), StepKind::Dhcp, "DHCPDISCOVER").firmware(true)),
            2
        );
    }

    #[test]
    fn only_the_last_boots_are_kept() {
        let mut t = Timeline::default();
        for i in 0..(KEEP_BOOTS as i64 + 3) {
            pxe_boot(&mut t, i * 600);
        }
        assert_eq!(t.boots.len(), KEEP_BOOTS);
        assert_eq!(t.current().unwrap().number, KEEP_BOOTS as u32 + 3);
    }

    #[test]
    fn steps_under_a_mac_merge_before_the_registration() {
        let mut mac = Timeline::default();
        mac.record(Step::new(at(0), StepKind::Dhcp, "DHCPDISCOVER").firmware(true));
        mac.record(Step::new(at(2), StepKind::Tftp, "undionly.kpxe"));
        let mut machine = Timeline::default();
        machine.record(Step::new(at(4), StepKind::Ipxe, "held"));
        machine.merge(mac);
        let kinds: Vec<StepKind> = machine.boots[0].steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![StepKind::Dhcp, StepKind::Tftp, StepKind::Ipxe]);
        assert_eq!(machine.boots.len(), 1);
    }

    #[test]
    fn a_subscriber_places_steps_where_the_engine_did() {
        let mut engine = Timeline::default();
        let mut copy = Timeline::default();
        for i in 0..3 {
            for (k, s) in [
                Step::new(at(i * 600), StepKind::Ipxe, "script"),
                Step::new(at(i * 600 + 1), StepKind::Ipxe, "script"),
                Step::new(at(i * 600 + 2), StepKind::Ipxe, "script"),
                Step::new(at(i * 600 + 5), StepKind::Kernel, "vmlinuz"),
            ]
            .into_iter()
            .enumerate()
            {
                let n = engine.record(s);
                // the engine announces the step as recorded; here it skips the second repeat
                if k != 1 {
                    let last = engine.current().unwrap().steps.last().unwrap().clone();
                    copy.place(n, last);
                }
            }
        }
        assert_eq!(engine, copy);
        assert_eq!(copy.current().unwrap().steps[0].count, 3);
    }
}
