//! The machines table's rows: which machines the filter lets through and in what order,
//! rebuilt lazily when something they depend on changed.

use mayu::machine::Machine;

use super::state::App;
use crate::action::SortKey;

/// One thing the filter line looks in.
pub struct FilterField {
    /// as the help page names it.
    pub name: &'static str,
    /// whether the field contains `needle` (given lower-cased), ignoring case.
    pub matches: fn(&Machine, &str) -> bool,
}

fn has(field: &str, needle: &str) -> bool {
    field.to_lowercase().contains(needle)
}

/// Everything the filter matches, in the order the help page lists it: a machine is shown
/// when the typed text occurs, ignoring case, in any of these.
pub const FILTER_FIELDS: &[FilterField] = &[
    FilterField {
        name: "id",
        matches: |m, n| has(m.id.as_str(), n),
    },
    FilterField {
        name: "MAC",
        matches: |m, n| m.macs.iter().any(|mac| has(&mac.to_string(), n)),
    },
    FilterField {
        name: "IP",
        matches: |m, n| m.ip.is_some_and(|ip| ip.to_string().contains(n)),
    },
    FilterField {
        name: "hostname",
        matches: |m, n| m.hostname.as_deref().is_some_and(|h| has(h, n)),
    },
    FilterField {
        name: "profile",
        matches: |m, n| m.profile.as_deref().is_some_and(|p| has(p, n)),
    },
    FilterField {
        name: "state",
        matches: |m, n| m.state.as_str().contains(n),
    },
    FilterField {
        name: "serial",
        matches: |m, n| m.serial.as_deref().is_some_and(|s| has(s, n)),
    },
];

fn matches_filter(m: &Machine, needle: &str) -> bool {
    FILTER_FIELDS.iter().any(|f| (f.matches)(m, needle))
}

impl App {
    /// Rebuilds the filtered, sorted rows if anything changed; call before rendering.
    pub fn prepare(&mut self) {
        if !self.rows_dirty {
            return;
        }
        self.rows_dirty = false;
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

    /// Marks the rows stale and rebuilds them now.
    pub(super) fn refresh_rows(&mut self) {
        self.rows_dirty = true;
        self.prepare();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::NOW;
    use mayu::machine::{Mac, State};

    /// Each field the help names finds a machine by that field alone, ignoring case.
    #[test]
    fn every_filter_field_finds_a_machine_by_it() {
        let mut m = Machine::new("zz-one".parse().unwrap(), String::new(), NOW);
        m.macs = vec!["52:54:00:00:00:99".parse::<Mac>().unwrap()];
        m.ip = Some("10.77.0.199".parse().unwrap());
        m.hostname = Some("Node-Seven".into());
        m.profile = Some("storage".into());
        m.state = State::Installing;
        m.serial = Some("SN-ABC123".into());
        for (field, needle) in [
            ("id", "zz-on"),
            ("MAC", "00:99"),
            ("IP", "0.199"),
            ("hostname", "node-sev"),
            ("profile", "stora"),
            ("state", "installing"),
            ("serial", "sn-abc"),
        ] {
            let f = FILTER_FIELDS.iter().find(|f| f.name == field).unwrap();
            assert!((f.matches)(&m, needle), "{field} does not match {needle}");
            let others = FILTER_FIELDS.iter().filter(|f| f.name != field);
            for o in others {
                assert!(!(o.matches)(&m, needle), "{} matches {needle}", o.name);
            }
        }
        assert_eq!(FILTER_FIELDS.len(), 7);
    }
}
