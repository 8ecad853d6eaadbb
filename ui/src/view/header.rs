//! The header: service status (boot HTTP, API, dnsmasq, templates), machine counts, and —
//! when a service cannot do its job — one line saying why and what to do.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};
use time::OffsetDateTime;

use mayu::lease::ServiceState;
use mayu::lease::ServiceStatus;
use mayu::machine::State;

use super::{clock, dim, fit};
use crate::action::Page;
use crate::app::App;

/// The services the header always names, matched by a part of the engine's service name.
const SLOTS: [(&str, &str); 4] = [
    ("boot http", "boot"),
    ("api", "api"),
    ("dnsmasq", "dnsmasq"),
    ("templates", "template"),
];

/// `None`: not started.
fn status_style(status: Option<ServiceStatus>) -> (Style, &'static str) {
    use ServiceStatus as S;
    match status {
        Some(S::Running | S::Ok | S::Watching) => (Style::new().fg(Color::Green), "●"),
        Some(S::Starting | S::Restarting | S::Waiting | S::Retrying) => {
            (Style::new().fg(Color::Yellow), "◐")
        }
        Some(S::Failed) => (Style::new().fg(Color::Red).bold(), "✖"),
        Some(S::Stopped | S::Disabled) | None => (dim(), "○"),
    }
}

fn slot_detail(app: &App, label: &str, svc: Option<&ServiceState>, wide: bool) -> String {
    match label {
        "boot http" if wide => app.setup.boot_addr.clone(),
        "api" if wide => app.setup.api_addr.clone(),
        "boot http" | "api" => String::new(),
        "dnsmasq" => {
            let restarts = svc.map(|s| s.restarts).unwrap_or(0);
            format!(
                "{} on {} ↻{restarts}",
                app.setup.dhcp_mode, app.setup.interface
            )
        }
        _ => match (&app.templates.ok, svc) {
            (Some(false), _) => format!("{} errors", app.templates.errors.len()),
            (Some(true), _) => "ok".into(),
            (None, Some(s)) if !s.detail.is_empty() => s.detail.clone(),
            _ => app.setup.templates_dir.clone(),
        },
    }
}

/// The service whose problem the header shows: the first in the header's order.
fn problem(app: &App) -> Option<&ServiceState> {
    let with_problem = || app.services.values().filter(|s| s.problem.is_some());
    SLOTS
        .iter()
        .find_map(|(_, key)| with_problem().find(|s| s.name.to_lowercase().contains(key)))
        .or_else(|| with_problem().next())
}

/// Rows the header needs: two, and one more while a service reports a problem.
pub fn height(app: &App) -> u16 {
    if problem(app).is_some() {
        3
    } else {
        2
    }
}

pub fn render(app: &App, now: OffsetDateTime, area: Rect, buf: &mut Buffer) {
    let mut spans = vec![Span::styled(
        " mayu ",
        Style::new().fg(Color::Black).bg(Color::Cyan).bold(),
    )];
    let mut named = Vec::new();
    let wide = area.width >= 130;
    for (label, key) in SLOTS {
        let svc = app
            .services
            .values()
            .find(|s| s.name.to_lowercase().contains(key));
        if let Some(s) = svc {
            named.push(s.name.clone());
        }
        let status = match (label, svc) {
            ("templates", _) if app.templates.ok == Some(false) => Some(ServiceStatus::Failed),
            ("templates", None) if app.templates.ok == Some(true) => Some(ServiceStatus::Ok),
            (_, Some(s)) => Some(s.status),
            (_, None) => None,
        };
        let (style, dot) = status_style(status);
        spans.push(Span::raw("  "));
        spans.push(Span::styled(dot, style));
        spans.push(Span::styled(format!(" {label} "), Style::new().bold()));
        let detail = if svc.is_none() && status.is_none() && label != "dnsmasq" {
            "off".to_string()
        } else {
            slot_detail(app, label, svc, wide)
        };
        spans.push(Span::styled(detail, dim()));
    }
    for s in app.services.values().filter(|s| !named.contains(&s.name)) {
        let (style, dot) = status_style(Some(s.status));
        spans.push(Span::raw("  "));
        spans.push(Span::styled(dot, style));
        spans.push(Span::styled(format!(" {} ", s.name), Style::new().bold()));
        // Several boot servers: the members, the leader and this server's link, as said.
        let text = if s.name == "cluster" && !s.detail.is_empty() {
            s.detail.clone()
        } else {
            s.status.as_str().to_string()
        };
        spans.push(Span::styled(text, dim()));
    }
    Paragraph::new(Line::from(spans)).render(Rect { height: 1, ..area }, buf);

    let count = |st: State| app.machines.values().filter(|m| m.state == st).count();
    let stalled = app.stalled_count(now);
    let mut line = vec![
        Span::raw(" "),
        Span::styled(format!("{}", app.machines.len()), Style::new().bold()),
        Span::raw(" machines  "),
        Span::styled(
            format!("{}", app.waiting),
            Style::new().fg(Color::Yellow).bold(),
        ),
        Span::raw(" waiting  "),
        Span::styled(
            format!("{}", app.booting_count(now)),
            Style::new().fg(Color::Magenta).bold(),
        ),
        Span::raw(" booting  "),
        Span::styled(
            format!("{}", count(State::Running)),
            Style::new().fg(Color::Green).bold(),
        ),
        Span::raw(" running  "),
    ];
    if stalled > 0 {
        line.push(Span::styled(
            format!("{stalled} stalled  "),
            Style::new().fg(Color::Red).bold(),
        ));
    }
    line.push(Span::styled(
        format!("{}", app.leases.len()),
        Style::new().bold(),
    ));
    line.push(Span::raw(" leases"));
    let second = Rect {
        y: area.y + 1,
        height: 1,
        ..area
    };
    if area.height > 1 {
        Paragraph::new(Line::from(line)).render(second, buf);
        let mut tabs = Vec::new();
        if area.width >= 110 {
            for (i, p) in Page::ALL.iter().enumerate() {
                let style = if *p == app.page {
                    Style::new().fg(Color::Black).bg(Color::Cyan)
                } else {
                    dim()
                };
                tabs.push(Span::styled(format!(" {} {} ", i + 1, p.title()), style));
            }
            tabs.push(Span::raw(" "));
        }
        if area.width >= 90 {
            tabs.push(Span::styled(format!("{} UTC ", clock(now)), dim()));
        }
        Paragraph::new(Line::from(tabs))
            .alignment(Alignment::Right)
            .render(second, buf);
    }
    if let (Some(svc), true) = (problem(app), area.height > 2) {
        render_problem(
            svc,
            Rect {
                y: area.y + 2,
                height: 1,
                ..area
            },
            buf,
        );
    }
}

/// ` ✖ dnsmasq: interface mayu0 does not exist: set network.interface, …` in one line; the
/// same words are in the event log, whose popup shows them whole if this line is cut.
fn render_problem(svc: &ServiceState, area: Rect, buf: &mut Buffer) {
    let Some(p) = &svc.problem else {
        return;
    };
    let (style, dot) = status_style(Some(svc.status));
    let label = format!("{}: ", svc.name);
    let room = usize::from(area.width).saturating_sub(3 + label.chars().count());
    let text_style = match svc.status {
        ServiceStatus::Failed => Style::new().fg(Color::Red),
        _ => Style::new().fg(Color::Yellow),
    };
    Paragraph::new(Line::from(vec![
        Span::raw(" "),
        Span::styled(dot, style),
        Span::raw(" "),
        Span::styled(label, Style::new().bold()),
        Span::styled(fit(&p.line(), room), text_style),
    ]))
    .render(area, buf);
}
