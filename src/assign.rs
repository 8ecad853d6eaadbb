//! The assignment rules, as a pure function: profiles in config order, first match with room.

use std::collections::HashMap;

use crate::config::{AssignmentMode, Config};
use crate::machine::Machine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// put the machine in this profile.
    Profile(String),
    /// leave it waiting for an operator.
    Hold,
}

/// May the rules (re)place this machine? Operators' decisions (pins) are never undone, and a
/// machine in a real profile stays there; one parked in the default profile may move up.
pub fn rules_may_move(config: &Config, m: &Machine) -> bool {
    if m.pinned {
        return false;
    }
    match &m.profile {
        None => true,
        Some(p) => config.default_profile.as_deref() == Some(p.as_str()),
    }
}

/// Chooses a profile for `m` given how many machines each profile holds now.
pub fn decide(config: &Config, counts: &HashMap<String, u32>, m: &Machine) -> Decision {
    if config.assignment == AssignmentMode::Manual {
        return Decision::Hold;
    }
    let default = config.default_profile.as_deref();
    for p in &config.profiles {
        if Some(p.name.as_str()) == default {
            continue;
        }
        let held = counts.get(&p.name).copied().unwrap_or(0);
        // The machine's own seat does not count against it.
        let held = if m.profile.as_deref() == Some(p.name.as_str()) {
            held.saturating_sub(1)
        } else {
            held
        };
        let room = p.quantity.is_none_or(|q| held < q);
        let fits = p.selector.as_ref().is_none_or(|s| s.matches(m));
        if room && fits {
            return Decision::Profile(p.name.clone());
        }
    }
    match default {
        Some(d) => Decision::Profile(d.to_string()),
        None => Decision::Hold,
    }
}
