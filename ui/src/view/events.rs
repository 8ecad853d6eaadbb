//! The event log: bus events and console notes, newest at the bottom, with follow mode.
//! Identical events in a row share a line ending `×N`; the selected line (the newest shown)
//! opens in full with Enter, so a line cut at the pane's edge is always readable.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{clock, dim, fit, pane, title};
use crate::app::{App, Level};

pub fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let mode = if app.follow {
        Span::styled("following ", Style::new().fg(Color::Green))
    } else {
        Span::styled("paused (f follows) ", Style::new().fg(Color::Yellow))
    };
    let mut heading = vec![title("Events"), mode];
    if focused {
        heading.push(Span::styled("Enter: full text ", dim()));
    }
    let block = pane(Line::from(heading), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let height = usize::from(inner.height);
    let end = app.log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(height);
    let width = usize::from(inner.width);
    let lines: Vec<Line> = app
        .log
        .range(start..end)
        .enumerate()
        .map(|(i, l)| {
            let mut style = match l.level {
                Level::Info => Style::new(),
                Level::Warn => Style::new().fg(Color::Yellow),
                Level::Error => Style::new().fg(Color::Red).bold(),
            };
            let selected = focused && start + i + 1 == end;
            if selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            let count = if l.count > 1 {
                format!(" ×{}", l.count)
            } else {
                String::new()
            };
            // the count stays visible: the text gives way, marked with `…`
            let room = width.saturating_sub(9 + count.chars().count());
            Line::from(vec![
                Span::styled(format!("{} ", clock(l.at)), dim()),
                Span::styled(fit(&l.text, room), style),
                Span::styled(count, Style::new().fg(Color::Cyan).bold()),
            ])
        })
        .collect();
    if lines.is_empty() {
        Paragraph::new(Line::styled("no events yet", dim())).render(inner, buf);
    } else {
        Paragraph::new(lines).render(inner, buf);
    }
}
