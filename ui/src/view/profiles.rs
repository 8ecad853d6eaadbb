//! Profile fill levels: a gauge per profile (assigned of quantity), tags, machines booting it.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};
use time::OffsetDateTime;

use mayu::engine::ProfileStatus;

use super::{dim, fit, pane, title};
use crate::app::App;

/// The gauge's colour: room left, nearly full, full.
fn fill_color(p: &ProfileStatus) -> Color {
    match p.fill {
        Some(f) if f >= 1.0 => Color::Red,
        Some(f) if f >= 0.75 => Color::Yellow,
        _ => Color::Green,
    }
}

/// `███████░░░ 7/10` as spans, `width` cells of bar.
pub fn gauge(p: &ProfileStatus, width: usize) -> Vec<Span<'static>> {
    match p.quantity {
        Some(q) => {
            let f = p.fill.unwrap_or(0.0).clamp(0.0, 1.0);
            let full = ((f * width as f64).round() as usize).min(width);
            vec![
                Span::styled("█".repeat(full), Style::new().fg(fill_color(p))),
                Span::styled("░".repeat(width - full), dim()),
                Span::styled(
                    format!(" {:>3}/{:<3}", p.assigned, q),
                    Style::new().fg(fill_color(p)).bold(),
                ),
            ]
        }
        None => vec![
            Span::styled("·".repeat(width), dim()),
            Span::styled(format!(" {:>3}/∞  ", p.assigned), Style::new().bold()),
        ],
    }
}

pub fn render(app: &App, now: OffsetDateTime, area: Rect, buf: &mut Buffer) {
    let mut t = vec![title("Profiles")];
    if app.waiting > 0 {
        t.push(Span::styled(
            format!("{} waiting for an operator ", app.waiting),
            Style::new().fg(Color::Yellow),
        ));
    }
    let block = pane(Line::from(t), false);
    let inner = block.inner(area);
    block.render(area, buf);
    let name_w = app
        .profiles
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(8)
        .clamp(8, 16);
    let bar_w = if inner.width >= 90 { 24 } else { 12 };
    let lines: Vec<Line> = if app.profiles.is_empty() {
        vec![Line::styled(
            "no profiles configured: every machine waits for an operator",
            dim(),
        )]
    } else {
        app.profiles
            .iter()
            .map(|p| {
                let mut spans = vec![Span::styled(
                    format!("{:<name_w$} ", fit(&p.name, name_w)),
                    Style::new().bold(),
                )];
                spans.extend(gauge(p, bar_w));
                let booting = app.booting_in(&p.name, now);
                if booting > 0 {
                    spans.push(Span::styled(
                        format!(" {booting} booting"),
                        Style::new().fg(Color::Magenta),
                    ));
                }
                if p.running > 0 {
                    spans.push(Span::styled(
                        format!(" {} running", p.running),
                        Style::new().fg(Color::Green),
                    ));
                }
                if !p.tags.is_empty() {
                    spans.push(Span::styled(format!("  #{}", p.tags.join(" #")), dim()));
                }
                if p.is_default {
                    spans.push(Span::styled("  default", Style::new().fg(Color::Cyan)));
                }
                Line::from(spans)
            })
            .collect()
    };
    Paragraph::new(lines).render(inner, buf);
}
