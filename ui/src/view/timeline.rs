//! A machine's boot timeline in the detail pane: this boot step by step (time, offset from
//! its start, how long each step lasted, repeats counted), then one line for each boot before
//! it. The engine decides the steps and the boots (`mayu::timeline`); this only draws them.

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use time::OffsetDateTime;

use mayu::machine::Machine;
use mayu::timeline::{Boot, Timeline};

use super::{clock, dim, fit, human, since, stalled_style};

/// Columns before a step's detail: kind, offset from the boot's start, how long it lasted.
const LEAD: usize = 2 + 14 + 8 + 10;

fn step_lines(
    b: &Boot,
    m: Option<&Machine>,
    now: OffsetDateTime,
    width: usize,
) -> Vec<Line<'static>> {
    let Some(start) = b.started() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, s) in b.steps.iter().enumerate() {
        let mut detail = s.detail.clone();
        if s.count > 1 {
            detail.push_str(&format!(" ×{}", s.count));
        }
        let mut spans = vec![
            Span::raw(format!("  {:<13} ", s.kind.as_str())),
            Span::styled(format!("+{:<7}", human(since(s.at, start))), dim()),
        ];
        match b.steps.get(i + 1) {
            Some(next) => spans.push(Span::styled(
                format!("{:<10}", human(since(next.at, s.at))),
                dim(),
            )),
            None => {
                let stalled = m.and_then(|m| m.stall);
                let done = b.complete();
                spans.push(match (stalled, done) {
                    (_, true) => Span::styled("✔ done    ", Style::new().fg(Color::Green)),
                    (Some(_), false) => Span::styled(
                        format!("⚠ {:<7} ", human(since(now, s.latest()))),
                        stalled_style(),
                    ),
                    (None, false) => Span::styled(
                        format!("▶ {:<7} ", human(since(now, s.latest()))),
                        Style::new().fg(Color::Magenta).bold(),
                    ),
                });
            }
        }
        spans.push(Span::raw(fit(&detail, width.saturating_sub(LEAD))));
        out.push(Line::from(spans));
    }
    if b.dropped > 0 {
        out.push(Line::styled(
            format!("  … {} more steps not kept", b.dropped),
            dim(),
        ));
    }
    out
}

/// One line for a boot before this one.
fn summary(b: &Boot) -> Line<'static> {
    let start = b.started().map(clock).unwrap_or_default();
    let end = if b.complete() {
        Span::styled("complete", Style::new().fg(Color::Green))
    } else {
        let last = b.steps.last().map(|s| s.kind.as_str()).unwrap_or("nothing");
        Span::styled(format!("ended at {last}"), Style::new().fg(Color::Yellow))
    };
    Line::from(vec![
        Span::styled(format!("  boot {:<3} ", b.number), dim()),
        Span::styled(format!("{start} "), dim()),
        Span::raw(format!("{:<8} ", human(b.duration()))),
        Span::styled(format!("{} steps  ", b.steps.len()), dim()),
        end,
    ])
}

/// The whole section: the current boot's header and steps, then the earlier boots newest
/// first. `m` is the machine (for its stall), absent for a MAC that never registered.
pub fn lines(
    t: Option<&Timeline>,
    m: Option<&Machine>,
    now: OffsetDateTime,
    width: usize,
) -> Vec<Line<'static>> {
    let Some(current) = t.and_then(Timeline::current) else {
        return vec![Line::styled("  no boot seen since mayu started", dim())];
    };
    let mut out = vec![Line::from(vec![
        Span::styled(format!("  boot {} ", current.number), Style::new().bold()),
        Span::styled(current.started().map(clock).unwrap_or_default(), dim()),
        Span::styled(format!("  {}", human(current.duration())), dim()),
    ])];
    out.extend(step_lines(current, m, now, width));
    if let Some(t) = t {
        let earlier: Vec<&Boot> = t.boots.iter().rev().skip(1).collect();
        if !earlier.is_empty() {
            out.push(Line::styled("  earlier boots", dim()));
            out.extend(earlier.into_iter().map(summary));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayu::timeline::{Step, StepKind};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn text(lines: &[Line]) -> String {
        lines
            .iter()
            .map(|l| {
                l.spans
                    .iter()
                    .map(|s| s.content.as_ref())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn this_boot_in_order_then_the_earlier_ones() {
        let at = |s: i64| T0 + time::Duration::seconds(s);
        let mut t = Timeline::default();
        for (s, kind, detail) in [
            (0, StepKind::Ipxe, "script"),
            (5, StepKind::Kernel, "vmlinuz"),
            (9, StepKind::BootComplete, ""),
            (600, StepKind::Dhcp, "DHCPACK 10.77.0.150"),
            (601, StepKind::Tftp, "undionly.kpxe sent"),
            (603, StepKind::Ipxe, "held: waiting for assignment"),
            (608, StepKind::Ipxe, "held: waiting for assignment"),
        ] {
            let step = Step::new(at(s), kind, detail).firmware(kind == StepKind::Dhcp);
            t.record(step);
        }
        let out = text(&lines(Some(&t), None, at(620), 120));
        let dhcp = out.find("dhcp").unwrap();
        let tftp = out.find("tftp").unwrap();
        assert!(out.starts_with("  boot 2"), "{out}");
        assert!(dhcp < tftp, "DHCP before TFTP: {out}");
        assert!(out.contains("held: waiting for assignment ×2"), "{out}");
        assert!(
            out.contains("▶ 12s"),
            "in the last step since its last repeat: {out}"
        );
        assert!(out.contains("boot 1"), "{out}");
        assert!(out.contains("complete"), "{out}");
        // the label never runs into the time
        assert!(!out.contains("boot complete10"), "{out}");
    }

    #[test]
    fn nothing_seen_says_so() {
        assert!(text(&lines(None, None, T0, 80)).contains("no boot seen"));
    }
}
