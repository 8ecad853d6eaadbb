//! The selected machine: facts, boot timeline with per-phase times, overrides, audit history.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};
use time::OffsetDateTime;

use mayu::machine::{AssignedBy, Machine};

use super::{clock, dim, pane, state_style, title};
use crate::app::App;

fn section(name: &str) -> Line<'static> {
    Line::from(Span::styled(
        format!("── {name} "),
        Style::new().fg(Color::Cyan).bold(),
    ))
}

fn field(label: &str, value: String) -> Vec<Span<'static>> {
    vec![
        Span::styled(format!("{label} "), dim()),
        Span::raw(value),
        Span::raw("  "),
    ]
}

/// Sizes as people say them: `256 MiB` below 1 GiB (where whole GiB would read `0 GiB`),
/// `128 GiB` above, `3.9 TiB` from a TiB on.
pub fn size(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    const TIB: f64 = (1u64 << 40) as f64;
    let b = bytes as f64;
    if b < GIB {
        format!("{:.0} MiB", b / MIB)
    } else if b < TIB {
        format!("{:.0} GiB", b / GIB)
    } else {
        format!("{:.1} TiB", b / TIB)
    }
}

/// The machine's architecture as an operator reads it. The engine records what iPXE's
/// `${buildarch}` said, which is the boot program's build, not the machine: undionly.kpxe is
/// an i386 build that BIOS x86-64 machines run. So: i386 reads `x86 (BIOS)`, x86_64 (the
/// EFI builds mayu serves) `x86_64 (UEFI)`, arm64 `arm64 (UEFI)`; anything else as given.
pub fn arch_label(m: &Machine) -> String {
    match m.arch.as_deref() {
        None => "—".into(),
        Some("i386" | "i686" | "x86") => "x86 (BIOS)".into(),
        Some("x86_64") => "x86_64 (UEFI)".into(),
        Some("arm64" | "aarch64") => "arm64 (UEFI)".into(),
        Some(other) => other.to_string(),
    }
}

fn facts(m: &Machine, power: Option<&mayu::power::PowerStatus>) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let mut head = vec![Span::styled(m.id.to_string(), Style::new().bold())];
    if let Some(h) = &m.hostname {
        head.push(Span::raw(format!("  {h}")));
    }
    head.push(Span::raw("  "));
    head.push(Span::styled(m.state.as_str(), state_style(m.state).bold()));
    if m.reinstall {
        head.push(Span::styled(
            "  reinstall on next boot",
            Style::new().fg(Color::Yellow),
        ));
    }
    out.push(Line::from(head));
    let profile = match (&m.profile, &m.assigned_by) {
        (Some(p), Some(AssignedBy::Operator(who))) => format!("{p} (by {who})"),
        (Some(p), Some(AssignedBy::Rule)) => format!("{p} (by rule)"),
        (Some(p), None) => p.clone(),
        (None, _) => "— (waiting for an operator)".into(),
    };
    let mut l = field("profile", profile);
    if m.pinned {
        l.push(Span::styled("pinned", dim()));
    }
    out.push(Line::from(l));
    let macs: Vec<String> = m.macs.iter().map(|m| m.to_string()).collect();
    out.push(Line::from(field(
        "mac",
        if macs.is_empty() {
            "—".into()
        } else {
            macs.join(", ")
        },
    )));
    let mut l = field(
        "ip",
        m.ip.map(|i| i.to_string()).unwrap_or_else(|| "—".into()),
    );
    l.extend(field("arch", arch_label(m)));
    l.extend(field(
        "serial",
        m.serial.clone().unwrap_or_else(|| "—".into()),
    ));
    out.push(Line::from(l));
    if let Some(u) = &m.uuid {
        out.push(Line::from(field("uuid", u.clone())));
    }
    let mut l = field(
        "rack",
        match &m.rack {
            Some(r) => match r.unit {
                Some(u) => format!("{} U{u}", r.rack),
                None => r.rack.clone(),
            },
            None => "—".into(),
        },
    );
    if let Some(ipmi) = &m.ipmi_addr {
        l.extend(field("ipmi", ipmi.clone()));
    }
    if let Some(p) = power {
        let mut said = format!("{} at {}", p.state, clock(p.checked_at));
        if let Some(e) = &p.error {
            said.push_str(&format!(" ({e})"));
        }
        l.extend(field("power", said));
    }
    out.push(Line::from(l));
    let f = &m.facts;
    if f.cpus.is_some() || f.memory_bytes.is_some() || !f.disks.is_empty() {
        let mut hw = Vec::new();
        if let Some(c) = f.cpus {
            hw.push(format!("{c} cpus"));
        }
        if let Some(b) = f.memory_bytes {
            hw.push(size(b));
        }
        for d in &f.disks {
            hw.push(format!("{} {}", d.name, size(d.size_bytes)));
        }
        if let Some(p) = &f.product {
            hw.push(p.clone());
        }
        out.push(Line::from(field("hardware", hw.join(", "))));
    }
    if !m.notes.is_empty() {
        out.push(Line::from(field("notes", m.notes.clone())));
    }
    out
}

fn history(app: &App, m: &Machine) -> Vec<Line<'static>> {
    match &app.history {
        Some((id, Ok(entries))) if *id == m.id => {
            if entries.is_empty() {
                return vec![Line::styled("  no commits yet", dim())];
            }
            entries
                .iter()
                .map(|h| {
                    let msg = h
                        .message
                        .strip_prefix(&format!("{}: ", m.id))
                        .unwrap_or(&h.message)
                        .to_string();
                    Line::from(vec![
                        Span::styled(format!("  {} ", clock(h.time)), dim()),
                        Span::styled(format!("{:<10} ", h.author), Style::new().fg(Color::Cyan)),
                        Span::raw(msg),
                    ])
                })
                .collect()
        }
        Some((id, Err(e))) if *id == m.id => {
            vec![Line::styled(format!("  {e}"), Style::new().fg(Color::Red))]
        }
        _ => vec![Line::styled("  loading…", dim())],
    }
}

pub fn render(app: &App, now: OffsetDateTime, area: Rect, buf: &mut Buffer, focused: bool) {
    let block = pane(Line::from(title("Detail")), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(m) = app.current() else {
        Paragraph::new(vec![
            Line::default(),
            Line::styled("No machine selected", dim()),
        ])
        .alignment(Alignment::Center)
        .render(inner, buf);
        return;
    };
    let mut lines = facts(m, app.power.get(&m.id));
    lines.push(section("boot timeline"));
    lines.extend(super::timeline::lines(
        app.timelines.get(&m.id),
        Some(m),
        now,
        usize::from(inner.width),
    ));
    lines.push(section("overrides"));
    if m.overrides.is_empty() {
        lines.push(Line::styled("  none (o adds one)", dim()));
    } else {
        for (k, v) in &m.overrides {
            lines.push(Line::from(vec![
                Span::raw(format!("  {k}")),
                Span::styled(" = ", dim()),
                Span::styled(v.to_string(), Style::new().fg(Color::Yellow)),
            ]));
        }
    }
    lines.push(section("audit history"));
    lines.extend(history(app, m));
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .render(inner, buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::NOW;

    #[test]
    fn sizes_below_a_gib_read_in_mib() {
        assert_eq!(size(256 << 20), "256 MiB");
        assert_eq!(size(0), "0 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(128 << 30), "128 GiB");
        assert_eq!(size(4000 << 30), "3.9 TiB");
    }

    /// undionly.kpxe says `i386` on a BIOS x86-64 machine: that is the boot program's build.
    #[test]
    fn arch_says_what_the_machine_is_not_the_boot_programs_build() {
        let mut m = Machine::new("m".parse().unwrap(), String::new(), NOW);
        assert_eq!(arch_label(&m), "—");
        for (build, shown) in [
            ("i386", "x86 (BIOS)"),
            ("x86_64", "x86_64 (UEFI)"),
            ("arm64", "arm64 (UEFI)"),
            ("riscv64", "riscv64"),
        ] {
            m.arch = Some(build.into());
            assert_eq!(arch_label(&m), shown);
        }
    }
}
