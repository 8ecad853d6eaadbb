//! Stalls: a machine that has stayed in one boot phase longer than its profile allows
//! (`stall_after`, default 10 minutes). The rule is a pure function here; the engine's watcher
//! (`Engine::scan_stalls`) applies it to the index once a second, sets `Machine::stall` and
//! announces each stall and its end on the bus, so the console, the API, `mayuctl`, SSE
//! clients and the metrics all see the same stalls.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Config;
use crate::machine::{Machine, Phase, Stall, State};

/// A machine in one phase longer than this is stalled, unless its profile says otherwise.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(10 * 60);

/// How often the watcher looks: a stall is announced at most this late.
pub const SCAN_EVERY: Duration = Duration::from_secs(1);

/// The limit for machines of `profile`.
pub fn limit(config: &Config, profile: Option<&str>) -> Duration {
    profile
        .and_then(|p| config.profile(p))
        .and_then(|p| p.stall_after)
        .unwrap_or(DEFAULT_AFTER)
}

/// Whether `m` is in the middle of a boot that should move on: installing its profile (served
/// its script, not yet booted to completion), or a held machine that fetched a kernel or
/// initrd and went no further. A configured machine that has not booted yet (powered off,
/// waiting for its rack) and a running one are not booting.
fn booting(m: &Machine, phase: Phase) -> bool {
    if phase == Phase::BootComplete {
        return false;
    }
    match m.state {
        State::Installing => true,
        State::Waiting => matches!(phase, Phase::Kernel | Phase::Initrd),
        State::Configured | State::Running => false,
    }
}

/// The stall `m` is in at `now`, if any.
pub fn due(m: &Machine, now: OffsetDateTime, after: Duration) -> Option<Stall> {
    let (phase, since) = m.phases.current()?;
    if !booting(m, phase) {
        return None;
    }
    let in_phase: Duration = (now - since).try_into().unwrap_or(Duration::ZERO);
    (in_phase > after).then_some(Stall {
        phase,
        since,
        after_secs: after.as_secs(),
    })
}

/// Whether a machine marked stalled has moved on since (another phase, a new time in the same
/// phase, or a state in which it is not booting).
pub fn moved_on(m: &Machine) -> bool {
    let Some(stall) = m.stall else {
        return false;
    };
    match m.phases.current() {
        Some((phase, since)) => phase != stall.phase || since != stall.since || !booting(m, phase),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineId;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn machine(state: State, phase: Phase, at: OffsetDateTime) -> Machine {
        let id: MachineId = "sn-1".parse().expect("id");
        let mut m = Machine::new(id, String::new(), T0);
        m.state = state;
        m.phases.set(phase, at);
        m
    }

    #[test]
    fn installing_too_long_in_one_phase_is_a_stall() {
        let m = machine(State::Installing, Phase::Initrd, T0);
        let after = Duration::from_secs(600);
        assert_eq!(due(&m, T0 + Duration::from_secs(600), after), None);
        let s = due(&m, T0 + Duration::from_secs(601), after).expect("stalled");
        assert_eq!((s.phase, s.since, s.after_secs), (Phase::Initrd, T0, 600));
    }

    #[test]
    fn configured_running_and_complete_machines_never_stall() {
        let late = T0 + Duration::from_secs(86_400);
        let after = Duration::from_secs(60);
        // assigned but never booted since (powered off): not booting
        assert_eq!(
            due(&machine(State::Configured, Phase::Ipxe, T0), late, after),
            None
        );
        assert_eq!(
            due(&machine(State::Running, Phase::Config, T0), late, after),
            None
        );
        let done = machine(State::Installing, Phase::BootComplete, T0);
        assert_eq!(due(&done, late, after), None);
        // a held machine polling for assignment sits in `ipxe`; one stuck in its kernel stalls
        assert_eq!(
            due(&machine(State::Waiting, Phase::Ipxe, T0), late, after),
            None
        );
        assert!(due(&machine(State::Waiting, Phase::Kernel, T0), late, after).is_some());
    }

    #[test]
    fn a_stall_ends_when_the_machine_moves_on() {
        let mut m = machine(State::Installing, Phase::Kernel, T0);
        m.stall = due(&m, T0 + Duration::from_secs(700), Duration::from_secs(600));
        assert!(m.stall.is_some() && !moved_on(&m));
        m.phases.set(Phase::Initrd, T0 + Duration::from_secs(800));
        assert!(moved_on(&m));
        let mut m = machine(State::Installing, Phase::Kernel, T0);
        m.stall = due(&m, T0 + Duration::from_secs(700), Duration::from_secs(600));
        m.state = State::Running;
        assert!(moved_on(&m));
    }
}
