//! The event log: bus events and console notes, newest at the bottom, with follow mode.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{clock, dim, pane, title};
use crate::app::{App, Level};

pub fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let mode = if app.follow {
        Span::styled("following ", Style::new().fg(Color::Green))
    } else {
        Span::styled("paused (f follows) ", Style::new().fg(Color::Yellow))
    };
    let block = pane(Line::from(vec![title("Events"), mode]), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let height = usize::from(inner.height);
    let end = app.log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = app
        .log
        .range(start..end)
        .map(|l| {
            let style = match l.level {
                Level::Info => Style::new(),
                Level::Warn => Style::new().fg(Color::Yellow),
                Level::Error => Style::new().fg(Color::Red).bold(),
            };
            Line::from(vec![
                Span::styled(format!("{} ", clock(l.at)), dim()),
                Span::styled(l.text.clone(), style),
            ])
        })
        .collect();
    if lines.is_empty() {
        Paragraph::new(Line::styled("no events yet", dim())).render(inner, buf);
    } else {
        Paragraph::new(lines).render(inner, buf);
    }
}
