//! The machines table. Only the rows on screen are built, so 10,000 machines cost what 30 do.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};
use time::OffsetDateTime;

use super::{dim, human, pane, stalled_style, state_style, title};
use crate::app::App;

/// Columns shown at a width: narrow screens keep what matters for assigning.
struct Columns {
    mac: bool,
    ip: bool,
}

fn columns(width: u16) -> Columns {
    Columns {
        mac: width >= 112,
        ip: width >= 86,
    }
}

/// The first row to show so that `selected` is visible, moving as little as possible.
pub fn scroll_offset(previous: usize, selected: usize, visible: usize, len: usize) -> usize {
    if visible == 0 || len == 0 {
        return 0;
    }
    let mut off = previous.min(len.saturating_sub(visible));
    if selected < off {
        off = selected;
    } else if selected >= off + visible {
        off = selected + 1 - visible;
    }
    off
}

pub fn render(app: &App, now: OffsetDateTime, area: Rect, buf: &mut Buffer, focused: bool) {
    let mut t = vec![title("Machines")];
    let shown = if app.filter.is_empty() {
        format!("{} ", app.rows.len())
    } else {
        format!(
            "{} of {} /{} ",
            app.rows.len(),
            app.machines.len(),
            app.filter
        )
    };
    t.push(Span::styled(shown, dim()));
    t.push(Span::styled(
        format!(
            "· sort {} {} ",
            app.sort.as_str(),
            if app.sort_desc { "↓" } else { "↑" }
        ),
        dim(),
    ));
    let block = pane(Line::from(t), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if app.rows.is_empty() {
        empty_state(app, inner, buf);
        return;
    }
    let cols = columns(inner.width);
    let visible = usize::from(inner.height.saturating_sub(1));
    let offset = scroll_offset(
        app.table_offset.get(),
        app.selected,
        visible,
        app.rows.len(),
    );
    app.table_offset.set(offset);
    let end = (offset + visible).min(app.rows.len());

    // the ID column fits the longest id on screen, leaving the rest room on narrow screens
    let longest = app.rows[offset..end]
        .iter()
        .map(|id| id.as_str().chars().count() + if app.is_new(id, now) { 2 } else { 0 })
        .max()
        .unwrap_or(2);
    let id_w = u16::try_from(longest)
        .unwrap_or(u16::MAX)
        .clamp(6, (inner.width / 5).max(12));
    let mut header = vec!["ID"];
    let mut widths = vec![Constraint::Length(id_w)];
    if cols.mac {
        header.push("MAC");
        widths.push(Constraint::Length(17));
    }
    if cols.ip {
        header.push("IP");
        widths.push(Constraint::Length(13));
    }
    header.extend(["PROFILE", "STATE", "PHASE"]);
    widths.extend([
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Length(15),
        Constraint::Fill(2),
    ]);
    header.push("LAST EVENT");

    let rows: Vec<Row> = app.rows[offset..end]
        .iter()
        .filter_map(|id| app.machines.get(id))
        .map(|m| {
            let new = app.is_new(&m.id, now);
            let id_cell = if new {
                Cell::from(Line::from(vec![
                    Span::styled("✚ ", Style::new().fg(Color::LightGreen).bold()),
                    Span::styled(m.id.to_string(), Style::new().fg(Color::LightGreen).bold()),
                ]))
            } else {
                Cell::from(m.id.to_string())
            };
            let mut cells = vec![id_cell];
            if cols.mac {
                let mac = match m.macs.as_slice() {
                    [] => "—".to_string(),
                    [one] => one.to_string(),
                    [first, rest @ ..] => format!("{first}+{}", rest.len()),
                };
                cells.push(Cell::from(mac));
            }
            if cols.ip {
                cells.push(Cell::from(
                    m.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "—".into()),
                ));
            }
            cells.push(match &m.profile {
                Some(p) => Cell::from(p.clone()),
                None => Cell::from(Span::styled("—", dim())),
            });
            cells.push(Cell::from(Span::styled(
                m.state.as_str(),
                state_style(m.state),
            )));
            cells.push(match app.phase_of(m, now) {
                Some((mayu::machine::Phase::BootComplete, _, _)) => {
                    Cell::from(Span::styled("✔ booted", Style::new().fg(Color::Green)))
                }
                Some((phase, d, true)) => Cell::from(Span::styled(
                    format!("⚠ {} {}", phase.as_str(), human(d)),
                    stalled_style(),
                )),
                Some((phase, d, false)) => Cell::from(Line::from(vec![
                    Span::raw(format!("{} ", phase.as_str())),
                    Span::styled(human(d), dim()),
                ])),
                None => Cell::from("—"),
            });
            cells.push(Cell::from(Span::styled(
                app.last_event
                    .get(&m.id)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default(),
                dim(),
            )));
            Row::new(cells)
        })
        .collect();

    let highlight = if focused {
        Style::new()
            .bg(Color::Indexed(236))
            .add_modifier(Modifier::BOLD)
    } else {
        Style::new().bg(Color::Indexed(235))
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)))
        .column_spacing(1)
        .row_highlight_style(highlight)
        .highlight_symbol("▶")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(Some(app.selected - offset));
    StatefulWidget::render(table, inner, buf, &mut state);
}

fn empty_state(app: &App, area: Rect, buf: &mut Buffer) {
    let lines = if app.filter.is_empty() {
        vec![
            Line::default(),
            Line::styled("No machines yet", Style::new().bold()),
            Line::default(),
            Line::styled(
                format!(
                    "Power on a machine on {}: it shows up here the moment iPXE asks",
                    app.setup.interface
                ),
                dim(),
            ),
            Line::styled(
                format!("http://{}/ipxe for its boot script.", app.setup.boot_addr),
                dim(),
            ),
        ]
    } else {
        vec![
            Line::default(),
            Line::styled(
                format!("No machine matches /{}", app.filter),
                Style::new().bold(),
            ),
            Line::styled("Esc clears the filter", dim()),
        ]
    };
    Paragraph::new(lines)
        .alignment(Alignment::Center)
        .wrap(Wrap { trim: true })
        .render(area, buf);
}

#[cfg(test)]
mod tests {
    use super::scroll_offset;

    #[test]
    fn offset_follows_selection() {
        assert_eq!(scroll_offset(0, 0, 10, 100), 0);
        assert_eq!(scroll_offset(0, 12, 10, 100), 3);
        assert_eq!(scroll_offset(5, 7, 10, 100), 5);
        assert_eq!(scroll_offset(50, 2, 10, 100), 2);
        // the list shrank under the old offset
        assert_eq!(scroll_offset(95, 3, 10, 5), 0);
        assert_eq!(scroll_offset(0, 0, 0, 5), 0);
    }
}
