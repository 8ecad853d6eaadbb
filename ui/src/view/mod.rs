//! Rendering: [`AppView`] draws the whole screen from an [`App`] and an injected clock, as a
//! plain `Widget` with no I/O, so tests render it into a `Buffer` at any size and time.

mod detail;
mod dialogs;
mod events;
mod header;
mod leases;
mod machines;
mod profiles;
mod timeline;

use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph, Widget};
use time::OffsetDateTime;

use crate::action::{Page, Pane};
use crate::app::{operator_label, App};
use crate::keys;
use mayu::machine::State;

/// Wide enough to show the detail pane beside the machines table.
const WIDE: u16 = 120;

/// The screen at one instant. Call [`App::prepare`] before building it.
pub struct AppView<'a> {
    pub app: &'a App,
    pub now: OffsetDateTime,
}

impl Widget for &AppView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let [top, body, status, hints] = area.layout(&Layout::vertical([
            Constraint::Length(header::height(app)),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ]));
        header::render(app, self.now, top, buf);
        match app.page {
            Page::Machines => self.machines_page(body, buf),
            Page::Detail => detail::render(app, self.now, body, buf, true),
            Page::Leases => leases::render(app, self.now, body, buf),
            Page::Events => events::render(app, body, buf, true),
        }
        status_line(app, status, buf);
        hint_bar(app, hints, buf);
        dialogs::render(app, self.now, area, buf);
    }
}

impl AppView<'_> {
    fn machines_page(&self, body: Rect, buf: &mut Buffer) {
        let app = self.app;
        let (left, right) = if body.width >= WIDE {
            let [l, r] = body.layout(&Layout::horizontal([
                Constraint::Percentage(64),
                Constraint::Percentage(36),
            ]));
            (l, Some(r))
        } else {
            (body, None)
        };
        let profile_rows = u16::try_from(app.profiles.len().max(1)).unwrap_or(u16::MAX);
        let profiles_h = (profile_rows + 2).min(left.height / 3).max(3);
        let events_h = (left.height / 4).clamp(4, 10);
        let [p, m, e] = left.layout(&Layout::vertical([
            Constraint::Length(profiles_h),
            Constraint::Fill(1),
            Constraint::Length(events_h),
        ]));
        profiles::render(app, self.now, p, buf);
        machines::render(app, self.now, m, buf, app.focus == Pane::Machines);
        events::render(app, e, buf, app.focus == Pane::Events);
        if let Some(r) = right {
            detail::render(app, self.now, r, buf, false);
        }
    }
}

fn status_line(app: &App, area: Rect, buf: &mut Buffer) {
    let line = if app.filter_editing {
        Line::from(vec![
            Span::styled("/", Style::new().fg(Color::Cyan).bold()),
            Span::raw(app.filter.clone()),
            Span::styled("▏", Style::new().fg(Color::Cyan)),
            Span::styled(
                format!("   {} of {} machines", app.rows.len(), app.machines.len()),
                Style::new().fg(Color::DarkGray),
            ),
        ])
    } else if let Some(s) = &app.status {
        let style = if s.error {
            Style::new().fg(Color::Red).bold()
        } else {
            Style::new().fg(Color::Green)
        };
        Line::from(Span::styled(s.text.clone(), style))
    } else {
        let mut spans = vec![Span::styled(
            operator_label(&app.setup.operator),
            Style::new().fg(Color::DarkGray),
        )];
        if !app.marked.is_empty() {
            spans.push(Span::styled(
                format!("  {} marked (Esc unmarks)", app.marked.len()),
                Style::new().fg(Color::Cyan),
            ));
        }
        if !app.filter.is_empty() {
            spans.push(Span::styled(
                format!("  filter /{}  (Esc clears)", app.filter),
                Style::new().fg(Color::Yellow),
            ));
        }
        Line::from(spans)
    };
    Paragraph::new(line).render(area, buf);
}

fn hint_bar(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    let mut used = 0;
    for (key, what) in keys::hints(keys::mode(app)) {
        // whole hints only: a hint cut in half reads as a different key
        let len = key.chars().count() + what.chars().count() + 3;
        if used + len > usize::from(area.width) + 2 {
            break;
        }
        used += len;
        spans.push(Span::styled(key, Style::new().fg(Color::Cyan).bold()));
        spans.push(Span::styled(
            format!(" {what}  "),
            Style::new().fg(Color::Gray),
        ));
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

/// A bordered pane; the focused one stands out.
pub(crate) fn pane(title: Line<'static>, focused: bool) -> Block<'static> {
    let border = if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(border)
        .title(title)
}

pub(crate) fn title(text: impl Into<String>) -> Span<'static> {
    Span::styled(format!(" {} ", text.into()), Style::new().bold())
}

pub(crate) fn state_style(s: State) -> Style {
    match s {
        State::Waiting => Style::new().fg(Color::Yellow),
        State::Configured => Style::new().fg(Color::Blue),
        State::Installing => Style::new().fg(Color::Magenta),
        State::Running => Style::new().fg(Color::Green),
    }
}

pub(crate) fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub(crate) fn stalled_style() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// Compact durations: `42s`, `4m05s`, `2h03m`, `3d04h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub(crate) fn since(now: OffsetDateTime, then: OffsetDateTime) -> Duration {
    (now - then).try_into().unwrap_or(Duration::ZERO)
}

pub(crate) fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// Cuts `s` to `width` characters, marking the cut.
pub(crate) fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_compactly() {
        assert_eq!(human(Duration::from_secs(0)), "0s");
        assert_eq!(human(Duration::from_secs(65)), "1m05s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 120)), "3h02m");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 3600)), "2d01h");
    }

    #[test]
    fn fit_marks_cuts() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
        assert_eq!(fit("abc", 0), "");
    }
}

#[cfg(test)]
mod big {
    use ratatui::buffer::Buffer;
    use ratatui::layout::Rect;
    use ratatui::widgets::Widget;

    use super::AppView;
    use crate::app::App;
    use crate::fixtures::{self, NOW};
    use mayu::engine::Snapshot;
    use mayu::machine::{Machine, MachineId};

    /// Any terminal size draws without panicking, down to a single cell.
    #[test]
    fn every_page_survives_tiny_and_odd_sizes() {
        for shot in fixtures::shots().unwrap() {
            for (w, h) in [
                (1, 1),
                (2, 3),
                (10, 5),
                (20, 8),
                (40, 12),
                (79, 23),
                (200, 60),
            ] {
                let area = Rect::new(0, 0, w, h);
                let mut buf = Buffer::empty(area);
                (&AppView {
                    app: &shot.app,
                    now: NOW,
                })
                    .render(area, &mut buf);
            }
        }
    }

    fn screen(app: &App, w: u16, h: u16) -> String {
        let area = Rect::new(0, 0, w, h);
        let mut buf = Buffer::empty(area);
        (&AppView { app, now: NOW }).render(area, &mut buf);
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Several boot servers: the header names the cluster's members, leader and this
    /// server; the table says which server saw each machine last.
    #[test]
    fn a_cluster_shows_in_the_header_and_the_server_column() {
        let machine = |i: u32, server: &str| {
            let id: MachineId = format!("m{i}").parse().unwrap();
            let mut m = Machine::new(id, String::new(), NOW);
            m.seen_by = Some(server.into());
            m
        };
        let mut app = App::new(
            fixtures::setup(),
            Snapshot {
                machines: vec![machine(1, "rack-a"), machine(2, "rack-b")],
                profiles: Vec::new(),
                waiting: 2,
                ignored: Vec::new(),
                timelines: Default::default(),
            },
        );
        app.services.insert(
            "cluster".into(),
            mayu::lease::ServiceState {
                name: "cluster".into(),
                status: mayu::lease::ServiceStatus::Running,
                restarts: 0,
                detail: "etcd: 3 of 3 endpoints answer, 3 members, leader m1; this server rack-a"
                    .into(),
                since: NOW,
                problem: None,
            },
        );
        let text = screen(&app, 240, 20);
        assert!(
            text.contains(
                "cluster etcd: 3 of 3 endpoints answer, 3 members, leader m1; this server rack-a"
            ),
            "{text}"
        );
        assert!(text.contains("SERVER"), "{text}");
        let row = text.lines().find(|l| l.contains("m2")).unwrap();
        assert!(row.contains("rack-b"), "{row}");
    }

    /// Ten thousand machines render a screenful; the table shows the selection's neighbours.
    #[test]
    fn ten_thousand_machines_render_the_visible_rows() {
        let mut app = fixtures::crowd(10_000).unwrap();
        app.select(&"m09000".parse().unwrap());
        let area = Rect::new(0, 0, 80, 24);
        let mut buf = Buffer::empty(area);
        (&AppView {
            app: &app,
            now: NOW,
        })
            .render(area, &mut buf);
        let text: String = (0..24)
            .map(|y| {
                (0..80)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("m09000"), "{text}");
        assert!(!text.contains("m00000"), "{text}");
        assert!(text.contains("10000"), "{text}");
    }
}
