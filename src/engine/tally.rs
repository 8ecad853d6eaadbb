//! Profile fill levels, counted one way: the engine's index keeps a [`Tally`] in step with every
//! machine it holds (and every unreadable file's seat) and [`profiles`] turns it into what the
//! API and metrics show; the console starts a `Tally` from its snapshot
//! ([`Tally::from_statuses`]) and follows machine events with the same [`Tally::count`].

use std::collections::HashMap;

use super::ProfileStatus;
use crate::config::Config;
use crate::machine::{Machine, State};

#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// machines (and held seats of unreadable files) per profile: what quotas count.
    pub assigned: HashMap<String, u32>,
    /// machines per profile that report they run it.
    pub running: HashMap<String, u32>,
    /// machines without a profile.
    pub waiting: u32,
}

fn bump(map: &mut HashMap<String, u32>, key: &str, up: bool) {
    if up {
        *map.entry(key.to_string()).or_default() += 1;
    } else if let Some(c) = map.get_mut(key) {
        *c = c.saturating_sub(1);
    }
}

impl Tally {
    /// The counts a snapshot's fill levels stand for (held seats included).
    pub fn from_statuses(profiles: &[ProfileStatus], waiting: u32) -> Tally {
        Tally {
            assigned: profiles
                .iter()
                .map(|p| (p.name.clone(), p.assigned))
                .collect(),
            running: profiles
                .iter()
                .map(|p| (p.name.clone(), p.running))
                .collect(),
            waiting,
        }
    }

    /// Counts `m` in (`up`) or out.
    pub fn count(&mut self, m: &Machine, up: bool) {
        match &m.profile {
            Some(p) => {
                bump(&mut self.assigned, p, up);
                if m.state == State::Running {
                    bump(&mut self.running, p, up);
                }
            }
            None if up => self.waiting += 1,
            None => self.waiting = self.waiting.saturating_sub(1),
        }
    }

    /// A seat held for a machine file that could not be read.
    pub fn hold(&mut self, profile: &str) {
        bump(&mut self.assigned, profile, true);
    }
}

/// Every configured profile's fill level, in config order.
pub fn profiles(config: &Config, tally: &Tally) -> Vec<ProfileStatus> {
    config
        .profiles
        .iter()
        .map(|p| {
            let mut status = ProfileStatus {
                name: p.name.clone(),
                quantity: p.quantity,
                assigned: 0,
                running: 0,
                tags: p.tags.clone(),
                image: p.image.clone(),
                fill: None,
                is_default: config.default_profile.as_deref() == Some(p.name.as_str()),
            };
            fill(&mut status, tally);
            status
        })
        .collect()
}

/// Sets a profile's counts and fill level from `tally`.
pub fn fill(p: &mut ProfileStatus, tally: &Tally) {
    p.assigned = tally.assigned.get(&p.name).copied().unwrap_or(0);
    p.running = tally.running.get(&p.name).copied().unwrap_or(0);
    p.fill = p.quantity.map(|q| {
        if q == 0 {
            1.0
        } else {
            f64::from(p.assigned) / f64::from(q)
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineId;

    fn machine(id: &str, profile: Option<&str>, state: State) -> Machine {
        let id: MachineId = id.parse().expect("id");
        let mut m = Machine::new(id, String::new(), time::OffsetDateTime::UNIX_EPOCH);
        m.profile = profile.map(str::to_string);
        m.state = state;
        m
    }

    #[test]
    fn counting_in_and_out_and_from_a_snapshot_agree() {
        let mut t = Tally::default();
        let a = machine("a", Some("worker"), State::Running);
        let b = machine("b", Some("worker"), State::Installing);
        let c = machine("c", None, State::Waiting);
        for m in [&a, &b, &c] {
            t.count(m, true);
        }
        t.hold("worker");
        assert_eq!(t.assigned["worker"], 3);
        assert_eq!(t.running["worker"], 1);
        assert_eq!(t.waiting, 1);
        let mut p = ProfileStatus {
            name: "worker".into(),
            quantity: Some(4),
            assigned: 0,
            running: 0,
            tags: Vec::new(),
            image: "x".into(),
            fill: None,
            is_default: false,
        };
        fill(&mut p, &t);
        assert_eq!((p.assigned, p.running, p.fill), (3, 1, Some(0.75)));
        // The console's view: from the snapshot, then the same counting.
        let mut console = Tally::from_statuses(std::slice::from_ref(&p), t.waiting);
        console.count(&a, false);
        t.count(&a, false);
        fill(&mut p, &console);
        assert_eq!((p.assigned, p.running), (2, 0));
        assert_eq!(console.assigned["worker"], t.assigned["worker"]);
        assert_eq!(console.waiting, t.waiting);
    }
}
