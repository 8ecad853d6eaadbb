//! What `mayuctl` prints: tables (comfy-table, fitted to the terminal's width only when stdout
//! is one) and key/value pages built from the API's types, and JSON as the server sent it. Everything that came from the server goes through [`clean`]: machine
//! text is data, so a newline in a serial cannot forge a table row and an escape sequence in a
//! provider id cannot clear the operator's screen.

use std::io::IsTerminal;

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use mayu::api::responses::{Profiles, TokenInfo};
use mayu::client::Machine;
use mayu::inventory::HistoryEntry;
use mayu::lease::{Lease, ServiceState};
use mayu::machine::{AssignedBy, Phase};
use mayu::text::escape_control;

/// The columns of `mayuctl list`: the `--fields` name and the header.
pub const FIELDS: &[(&str, &str)] = &[
    ("id", "ID"),
    ("macs", "MACS"),
    ("ip", "IP"),
    ("serial", "SERIAL"),
    ("uuid", "UUID"),
    ("arch", "ARCH"),
    ("hostname", "HOSTNAME"),
    ("profile", "PROFILE"),
    ("state", "STATE"),
    ("phase", "PHASE"),
    ("stalled", "STALLED"),
    ("pinned", "PINNED"),
    ("ipmiaddr", "IPMI"),
    ("power", "POWER"),
    ("providerid", "PROVIDER ID"),
    ("rack", "RACK"),
    ("lastboot", "LAST BOOT"),
    ("server", "SERVER"),
    ("notes", "NOTES"),
];
pub const DEFAULT_FIELDS: &str = "id,macs,ip,profile,state,phase,stalled,hostname,ipmiaddr,power";

/// `text` with every control character as a visible escape (`\n`, `\x1b`, `\0`…).
pub fn clean(text: &str) -> String {
    escape_control(text).into_owned()
}

/// Multi-line text from the server (an error's detail): each line cleaned, the breaks kept.
pub fn clean_lines(text: &str) -> String {
    text.split('\n').map(clean).collect::<Vec<_>>().join("\n")
}

/// JSON for the terminal. serde_json escapes C0 controls inside strings but writes DEL and C1
/// (U+0080–U+009F, which some terminals act on) raw; those become `\u` escapes, which is the
/// same JSON value. Outside strings only the pretty printer's line breaks are control
/// characters, and they stay.
pub fn json_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// An answer as the server sent it, pretty-printed.
pub fn json(v: &Value) -> String {
    json_safe(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()))
}

/// `2026-11-25T04:15:23.123Z` → `2026-11-25 04:15:23`, as Mayu printed times.
pub fn short_time(t: &str) -> String {
    let t = t.replace('T', " ");
    t.get(..19).map(str::to_string).unwrap_or(t)
}

/// A time as the API writes it (RFC 3339), shortened.
fn time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .map(|t| short_time(&t))
        .unwrap_or_default()
}

/// A phase as `mayuctl` names it: its API key with spaces (`disk boot`).
fn phase_name(p: Phase) -> String {
    p.key().replace('_', " ")
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// One `--fields` column of a machine, raw (the table cleans it).
pub fn field(m: &Machine, f: &str) -> String {
    match f {
        "id" => m.id.to_string(),
        "macs" => m
            .macs
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "ip" => m.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "serial" => text(&m.serial),
        "uuid" => text(&m.uuid),
        "arch" => text(&m.arch),
        "hostname" => text(&m.hostname),
        "profile" => text(&m.profile),
        "state" => m.state.to_string(),
        "phase" => m
            .phases
            .current()
            .map(|(p, _)| phase_name(p))
            .unwrap_or_default(),
        // the phase it is stuck in and for how long (empty while it moves along)
        "stalled" => m
            .stall
            .map(|s| {
                let secs = (OffsetDateTime::now_utc() - s.since).whole_seconds();
                format!(
                    "{} {}",
                    phase_name(s.phase),
                    mayu::text::duration(secs.max(0).unsigned_abs())
                )
            })
            .unwrap_or_default(),
        "pinned" => yes_no(m.pinned),
        "ipmiaddr" => text(&m.ipmi_addr),
        // as the server last checked it; empty without a BMC or power control
        "power" => m
            .power
            .as_ref()
            .map(|p| p.state.to_string())
            .unwrap_or_default(),
        "providerid" => text(&m.provider_id),
        "rack" => match &m.rack {
            Some(r) => match r.unit {
                Some(unit) => format!("{}/{unit}", r.rack),
                None => r.rack.clone(),
            },
            None => String::new(),
        },
        "lastboot" => m.phases.boot_complete.map(time).unwrap_or_default(),
        "notes" => m.notes.clone(),
        "server" => m.seen_by.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The terminal's width when stdout is one (then long tables wrap to fit); `None` when stdout
/// is a pipe or file, which get every row on one line however long.
fn terminal_width() -> Option<u16> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&out)
        .ok()
        .map(|w| w.ws_col)
        .filter(|w| *w > 0)
}

/// Aligned columns two spaces apart, no borders, an empty cell shown as `-`, no trailing
/// spaces; the header row first when `legend`. Cells are cleaned here, so a row is exactly
/// one line whatever a caller passes in (unless a terminal too narrow for it wraps it).
pub fn table(headers: &[&str], rows: &[Vec<String>], legend: bool) -> String {
    table_fitted(headers, rows, legend, terminal_width())
}

/// [`table`] for a terminal `width` columns wide (`None`: never wrapped).
pub fn table_fitted(
    headers: &[&str],
    rows: &[Vec<String>],
    legend: bool,
    width: Option<u16>,
) -> String {
    let cell = |c: &str| {
        if c.is_empty() {
            "-".to_string()
        } else {
            clean(c)
        }
    };
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    if legend {
        t.set_header(headers.iter().map(|h| cell(h)).collect::<Vec<_>>());
    }
    for r in rows {
        t.add_row(r.iter().map(|c| cell(c)).collect::<Vec<_>>());
    }
    if t.is_empty() && !legend {
        return String::new();
    }
    match width {
        Some(w) => {
            t.set_width(w)
                .set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    let columns = t.column_count();
    for (i, col) in t.column_iter_mut().enumerate() {
        // Two spaces between columns; the last one has none after it.
        let right = if i + 1 == columns { 0 } else { 2 };
        col.set_padding((0, right));
        col.set_cell_alignment(CellAlignment::Left);
    }
    // The first column (an id, a MAC, a name) is what a reader looks a row up by: never
    // wrapped.
    if width.is_some() && columns > 1 {
        if let Some(first) = t.column_mut(0) {
            first.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    t.trim_fmt()
}

/// `mayuctl list`: the chosen columns (`fields` are known names of [`FIELDS`]).
pub fn machines(machines: &[Machine], fields: &[&str], legend: bool) -> String {
    let headers: Vec<&str> = fields
        .iter()
        .filter_map(|f| FIELDS.iter().find(|(name, _)| name == f).map(|(_, h)| *h))
        .collect();
    let rows: Vec<Vec<String>> = machines
        .iter()
        .map(|m| fields.iter().map(|f| field(m, f)).collect())
        .collect();
    table(&headers, &rows, legend)
}

/// `power:` in `mayuctl show`: the state, when it was checked and what went wrong.
fn power_line(m: &Machine) -> String {
    let Some(p) = &m.power else {
        return String::new();
    };
    let mut s = format!("{} (checked {})", p.state, time(p.checked_at));
    if let Some(e) = &p.error {
        s.push_str(&format!(": {e}"));
    }
    s
}

/// `mayuctl show`: every column, then who assigned it, overrides and the phase times.
pub fn machine(m: &Machine) -> String {
    let mut rows: Vec<(String, String)> = FIELDS
        .iter()
        .map(|(f, h)| {
            let v = if *f == "power" {
                power_line(m)
            } else {
                field(m, f)
            };
            (h.to_lowercase(), v)
        })
        .collect();
    let assigned_by = match &m.assigned_by {
        Some(AssignedBy::Rule) => "rule".to_string(),
        Some(AssignedBy::Operator(name)) => format!("operator {name}"),
        None => String::new(),
    };
    rows.push(("assigned by".into(), assigned_by));
    rows.push(("reinstall".into(), yes_no(m.reinstall)));
    for (k, v) in &m.overrides {
        rows.push((format!("override {k}"), v.to_string()));
    }
    for p in Phase::ALL {
        if let Some(t) = m.phases.get(p) {
            rows.push((format!("phase {}", phase_name(p)), time(t)));
        }
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.into_iter()
        .map(|(k, v)| {
            let v = if v.is_empty() { "-".into() } else { clean(&v) };
            format!("{:<w$}  {v}", format!("{}:", clean(&k)), w = w + 1)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn history(entries: &[HistoryEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            // A first commit touches every field; a count reads better.
            let fields = if e.fields.len() > 5 {
                format!("({} fields)", e.fields.len())
            } else {
                e.fields.join(",")
            };
            vec![
                e.commit.chars().take(10).collect(),
                time(e.time),
                e.author.clone(),
                fields,
                e.message.clone(),
            ]
        })
        .collect();
    table(
        &["COMMIT", "TIME", "AUTHOR", "FIELDS", "MESSAGE"],
        &rows,
        true,
    )
}

pub fn profiles(p: &Profiles) -> String {
    let rows: Vec<Vec<String>> = p
        .profiles
        .iter()
        .map(|p| {
            let s = &p.status;
            vec![
                s.name.clone(),
                s.quantity.map_or_else(|| "∞".into(), |q| q.to_string()),
                s.assigned.to_string(),
                p.waiting.to_string(),
                s.running.to_string(),
                s.fill
                    .map(|f| format!("{:.0}%", f * 100.0))
                    .unwrap_or_default(),
                if s.is_default { "default" } else { "" }.into(),
            ]
        })
        .collect();
    let t = table(
        &[
            "NAME", "QUANTITY", "ASSIGNED", "WAITING", "RUNNING", "FILL", "DEFAULT",
        ],
        &rows,
        true,
    );
    format!("{t}\nunassigned machines: {}", p.unassigned)
}

pub fn leases(leases: &[Lease]) -> String {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.mac.to_string(),
                l.ip.to_string(),
                text(&l.hostname),
                l.expires.map_or_else(|| "never".into(), time),
                l.machine
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["MAC", "IP", "HOSTNAME", "EXPIRES", "MACHINE"],
        &rows,
        true,
    )
}

/// Boots oldest first, each a header (number, start, duration, complete or not) and its steps
/// with their offset from the boot's start; a repeated step shows its count.
pub fn timeline(t: &mayu::timeline::Timeline) -> String {
    if t.boots.is_empty() {
        return "no boot seen since mayu started".into();
    }
    let mut out = Vec::new();
    for b in &t.boots {
        let Some(start) = b.started() else { continue };
        let end = if b.complete() {
            "complete"
        } else {
            "not complete"
        };
        out.push(format!(
            "boot {}  {}  {}  {end}",
            b.number,
            time(start),
            mayu::text::duration(b.duration().as_secs())
        ));
        let rows: Vec<Vec<String>> = b
            .steps
            .iter()
            .map(|s| {
                let offset = (s.at - start).whole_seconds().max(0).unsigned_abs();
                let count = if s.count > 1 {
                    format!(" ×{}", s.count)
                } else {
                    String::new()
                };
                vec![
                    format!("  +{}", mayu::text::duration(offset)),
                    s.kind.as_str().to_string(),
                    format!("{}{count}", s.detail),
                ]
            })
            .collect();
        out.push(table(&["", "", ""], &rows, false));
        if b.dropped > 0 {
            out.push(format!("  … {} more steps not kept", b.dropped));
        }
    }
    out.join("\n")
}

/// MACs seen by DHCP that are no machine yet.
pub fn unregistered(list: &[mayu::engine::Unregistered]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|u| {
            let last = u.timeline.current();
            vec![
                u.mac.to_string(),
                u.last_seen.map(time).unwrap_or_default(),
                last.map(|b| b.number.to_string()).unwrap_or_default(),
                last.and_then(|b| b.steps.last())
                    .map(|s| format!("{} {}", s.kind.as_str(), s.detail))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(&["MAC", "LAST SEEN", "BOOTS", "LAST STEP"], &rows, true)
}

/// The ignored DHCP clients: what an operator needs to decide whether to enrol one.
pub fn ignored(clients: &[mayu::engine::IgnoredClient]) -> String {
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            vec![
                c.mac.to_string(),
                time(c.first_seen),
                time(c.last_seen),
                c.count.to_string(),
                text(&c.vendor_class),
                text(&c.interface),
            ]
        })
        .collect();
    table(
        &[
            "MAC",
            "FIRST SEEN",
            "LAST SEEN",
            "COUNT",
            "VENDOR CLASS",
            "ON",
        ],
        &rows,
        true,
    )
}

/// The service table, then one line per service that has a problem: what is wrong and what
/// to do about it.
pub fn services(services: &[ServiceState]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.to_string(),
                s.restarts.to_string(),
                time(s.since),
                s.detail.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &["SERVICE", "STATUS", "RESTARTS", "SINCE", "DETAIL"],
        &rows,
        true,
    );
    for s in services {
        if let Some(p) = &s.problem {
            out.push_str(&format!("\n{}: {}", clean(&s.name), clean(&p.line())));
        }
    }
    out
}

pub fn tokens(tokens: &[TokenInfo]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| vec![t.name.clone(), t.scope.as_str().to_string()])
        .collect();
    table(&["NAME", "SCOPE"], &rows, true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test should stop at the first surprise
mod tests {
    use super::*;
    use mayu::lease::{ServiceProblem, ServiceStatus};
    use time::macros::datetime;

    fn service(name: &str, problem: Option<ServiceProblem>) -> ServiceState {
        ServiceState {
            name: name.into(),
            status: ServiceStatus::Failed,
            restarts: 2,
            detail: "stopped".into(),
            since: datetime!(2026-11-25 04:15:23.123 UTC),
            problem,
        }
    }

    #[test]
    fn services_name_each_problem_with_its_hint() {
        let problem = ServiceProblem {
            code: "interface_missing".into(),
            reason: "interface eth9 does not exist".into(),
            hint: "create it\x1b[2J or change network.interface".into(),
        };
        let text = services(&[service("dnsmasq", Some(problem)), service("api", None)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].starts_with("dnsmasq  failed  2"), "{text}");
        assert!(lines[1].contains("2026-11-25 04:15:23"), "{text}");
        assert_eq!(
            lines[3],
            "dnsmasq: interface eth9 does not exist: create it\\x1b[2J or change network.interface"
        );
    }

    #[test]
    fn services_without_problems_are_the_table_alone() {
        let text = services(&[service("api", None)]);
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    fn cells(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn tables_are_aligned_columns_two_spaces_apart() {
        let rows = cells(&[
            &["sn-a1", "10.77.0.101", "waiting"],
            &["52-54-00-00-00-03", "", "installing"],
            &["x", "line\nbreak", "é→∞"],
        ]);
        let text = table_fitted(&["ID", "IP", "STATE"], &rows, true, None);
        assert_eq!(
            text,
            "ID                 IP           STATE\n\
             sn-a1              10.77.0.101  waiting\n\
             52-54-00-00-00-03  -            installing\n\
             x                  line\\nbreak  é→∞"
        );
        let text = table_fitted(&["ID", "IP", "STATE"], &rows[..1], false, None);
        assert_eq!(text, "sn-a1  10.77.0.101  waiting");
        assert_eq!(table_fitted(&["ID"], &[], true, None), "ID");
        assert_eq!(table_fitted(&["ID"], &[], false, None), "");
        // The timeline's indented offsets keep their indent.
        let rows = cells(&[&["  +0s", "dhcp", "offer"], &["  +12s", "http", ""]]);
        assert_eq!(
            table_fitted(&["", "", ""], &rows, false, None),
            "  +0s   dhcp  offer\n  +12s  http  -"
        );
    }

    #[test]
    fn only_a_terminal_wraps_long_rows() {
        let long = "a fairly long note about this machine's fan noise".to_string();
        let rows = vec![vec![
            "sn-a1".to_string(),
            "waiting".to_string(),
            long.clone(),
        ]];
        let piped = table_fitted(&["ID", "STATE", "NOTES"], &rows, true, None);
        assert_eq!(piped.lines().count(), 2, "{piped}");
        assert!(piped.lines().nth(1).unwrap().ends_with(&long), "{piped}");
        let narrow = table_fitted(&["ID", "STATE", "NOTES"], &rows, true, Some(40));
        assert!(narrow.lines().count() > 2, "{narrow}");
        assert!(narrow.lines().all(|l| l.chars().count() <= 40), "{narrow}");
        // The first column is never broken.
        assert!(
            narrow.lines().nth(1).unwrap().starts_with("sn-a1  "),
            "{narrow}"
        );
        // Wide enough: the same as a pipe.
        assert_eq!(
            table_fitted(&["ID", "STATE", "NOTES"], &rows, true, Some(200)),
            piped
        );
    }

    #[test]
    fn phases_keep_their_api_names() {
        assert_eq!(phase_name(Phase::DiskBoot), "disk boot");
        assert_eq!(phase_name(Phase::FirstSeen), "first seen");
    }
}
