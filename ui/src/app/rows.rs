//! The machines table's rows: which machines the filter lets through and in what order,
//! rebuilt lazily when something they depend on changed.

use std::cmp::Ordering;

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

/// `r1 U8`: a machine's place as the table and the filter write it.
pub fn rack_text(m: &Machine) -> Option<String> {
    m.rack.as_ref().map(|r| match r.unit {
        Some(u) => format!("{} U{u}", r.rack),
        None => r.rack.clone(),
    })
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
        name: "serial",
        matches: |m, n| m.serial.as_deref().is_some_and(|s| has(s, n)),
    },
    FilterField {
        name: "rack",
        matches: |m, n| rack_text(m).is_some_and(|r| has(&r, n)),
    },
    FilterField {
        name: "notes",
        matches: |m, n| has(&m.notes, n),
    },
    FilterField {
        name: "profile",
        matches: |m, n| m.profile.as_deref().is_some_and(|p| has(p, n)),
    },
    FilterField {
        name: "state",
        matches: |m, n| m.state.as_str().contains(n),
    },
];

/// What the help page says the filter matches, read off [`FILTER_FIELDS`]:
/// `id, MAC, …, profile or state`.
pub fn filter_help() -> String {
    let names: Vec<&str> = FILTER_FIELDS.iter().map(|f| f.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    }
}

/// Orders ids as people count: digit runs by their value, so `sn-2` comes before `sn-10`;
/// otherwise as text, ignoring case first (the plain order breaks ties, so no two differ
/// only to compare equal).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.chars().next(), y.chars().next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let dx = x.len() - x.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let dy = y.len() - y.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (nx, ny) = (&x[..dx], &y[..dy]);
                // by value without parsing (any length): fewer significant digits is smaller
                let (tx, ty) = (nx.trim_start_matches('0'), ny.trim_start_matches('0'));
                let by_value = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                x = &x[dx..];
                y = &y[dy..];
            }
            (Some(c), Some(d)) => {
                let by_char = c.to_ascii_lowercase().cmp(&d.to_ascii_lowercase());
                if by_char != Ordering::Equal {
                    return by_char;
                }
                x = &x[c.len_utf8()..];
                y = &y[d.len_utf8()..];
            }
        }
    }
}

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
        let by_id = |a: &Machine, b: &Machine| natural_cmp(a.id.as_str(), b.id.as_str());
        match self.sort {
            SortKey::Id => rows.sort_by(|a, b| by_id(a, b)),
            SortKey::State => rows.sort_by(|a, b| a.state.cmp(&b.state).then_with(|| by_id(a, b))),
            SortKey::Profile => {
                rows.sort_by(|a, b| a.profile.cmp(&b.profile).then_with(|| by_id(a, b)))
            }
            SortKey::Phase => rows.sort_by(|a, b| {
                let pa = a.phases.current().map(|(p, _)| p);
                let pb = b.phases.current().map(|(p, _)| p);
                pa.cmp(&pb).then_with(|| by_id(a, b))
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
                tb.cmp(&ta).then_with(|| by_id(a, b))
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
    use mayu::machine::{Mac, Rack, State};

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
        m.rack = Some(Rack {
            rack: "Row4-B".into(),
            unit: Some(17),
        });
        m.notes = "fan noise, check PSU".into();
        for (field, needle) in [
            ("id", "zz-on"),
            ("MAC", "00:99"),
            ("IP", "0.199"),
            ("hostname", "node-sev"),
            ("serial", "sn-abc"),
            ("rack", "row4-b u17"),
            ("notes", "fan noise"),
            ("profile", "stora"),
            ("state", "installing"),
        ] {
            let f = FILTER_FIELDS.iter().find(|f| f.name == field).unwrap();
            assert!((f.matches)(&m, needle), "{field} does not match {needle}");
            let others = FILTER_FIELDS.iter().filter(|f| f.name != field);
            for o in others {
                assert!(!(o.matches)(&m, needle), "{} matches {needle}", o.name);
            }
        }
        assert_eq!(FILTER_FIELDS.len(), 9);
        assert_eq!(
            filter_help(),
            "id, MAC, IP, hostname, serial, rack, notes, profile or state"
        );
    }

    #[test]
    fn ids_sort_as_people_count() {
        let mut ids = vec![
            "sn-100", "sn-10", "sn-2", "sn-1", "r1-u10", "R1-u9", "r1-u09", "a", "sn-010",
        ];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            ids,
            vec!["a", "R1-u9", "r1-u09", "r1-u10", "sn-1", "sn-2", "sn-010", "sn-10", "sn-100"]
        );
        // a total order: only equal strings compare equal
        assert_eq!(natural_cmp("sn-010", "sn-10"), "sn-010".cmp("sn-10"));
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
        // numbers longer than any integer type still order by value
        assert_eq!(
            natural_cmp("n99999999999999999999999", "n100000000000000000000000"),
            Ordering::Less
        );
    }
}
