//! The machines table. Only the rows on screen are built, so 10,000 machines cost what 30 do.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget, Wrap};
use time::OffsetDateTime;

use mayu::machine::Machine;
use mayu::power::PowerState;

use super::{dim, human, pane, stalled_style, state_style, title};
use crate::app::{rack_text, App};

/// A column that shows only when there is room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Optional {
    Ip,
    /// what each machine's BMC last said (only with power control configured).
    Power,
    Mac,
    Rack,
    Hostname,
    /// the boot server that saw the machine last (only with several servers, `cluster:`).
    Server,
}

/// The optional columns in the order they are kept: a narrower table drops them from the
/// end, so hostname and rack go first, then MAC, then IP.
const KEPT_FIRST: [Optional; 6] = [
    Optional::Ip,
    Optional::Power,
    Optional::Server,
    Optional::Mac,
    Optional::Rack,
    Optional::Hostname,
];

/// Fixed widths of the columns every table has (profile, state, phase).
const ESSENTIAL: [u16; 3] = [14, 10, 15];
/// The last-event column keeps at least this much; optional columns give way to it.
const LAST_EVENT_MIN: u16 = 12;

/// The optional columns that fit beside the essential ones in `width` cells (the table's
/// inner width), with the widths they take: a prefix of [`KEPT_FIRST`].
fn optional_columns(
    width: u16,
    id_w: u16,
    rack_w: u16,
    host_w: u16,
    power: bool,
    server_w: Option<u16>,
) -> Vec<(Optional, u16)> {
    // the highlight symbol, the ID, the essential columns and one space before each
    let used: u16 = 1 + id_w + ESSENTIAL.iter().map(|w| w + 1).sum::<u16>() + 1;
    let mut room = width.saturating_sub(used).saturating_sub(LAST_EVENT_MIN);
    let mut out = Vec::new();
    for col in KEPT_FIRST {
        if (col == Optional::Power && !power) || (col == Optional::Server && server_w.is_none()) {
            continue;
        }
        let w = match col {
            Optional::Ip => 13,
            Optional::Power => 11,
            Optional::Server => server_w.unwrap_or(0),
            Optional::Mac => 17,
            Optional::Rack => rack_w,
            Optional::Hostname => host_w,
        };
        if w + 1 > room {
            break;
        }
        room -= w + 1;
        out.push((col, w));
    }
    out
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
    if !app.marked.is_empty() {
        t.push(Span::styled(
            format!("· {} marked ", app.marked.len()),
            Style::new().fg(Color::Cyan).bold(),
        ));
    }
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
    let visible = usize::from(inner.height.saturating_sub(1));
    let offset = scroll_offset(
        app.table_offset.get(),
        app.selected,
        visible,
        app.rows.len(),
    );
    app.table_offset.set(offset);
    let end = (offset + visible).min(app.rows.len());
    let on_screen: Vec<&Machine> = app.rows[offset..end]
        .iter()
        .filter_map(|id| app.machines.get(id))
        .collect();
    let marker = |m: &Machine| {
        if app.marked.contains(&m.id) {
            Some(("✓ ", Style::new().fg(Color::Cyan).bold()))
        } else if app.is_new(&m.id, now) {
            Some(("✚ ", Style::new().fg(Color::LightGreen).bold()))
        } else {
            None
        }
    };

    // the ID column fits the longest id on screen, leaving the rest room on narrow screens
    let longest = on_screen
        .iter()
        .map(|m| m.id.as_str().chars().count() + if marker(m).is_some() { 2 } else { 0 })
        .max()
        .unwrap_or(2);
    let id_w = u16::try_from(longest)
        .unwrap_or(u16::MAX)
        .clamp(6, (inner.width / 5).max(12));
    let fitted = |texts: Vec<usize>, lo: u16, hi: u16| {
        u16::try_from(texts.into_iter().max().unwrap_or(0))
            .unwrap_or(u16::MAX)
            .clamp(lo, hi)
    };
    let rack_w = fitted(
        on_screen
            .iter()
            .filter_map(|m| rack_text(m))
            .map(|r| r.chars().count())
            .collect(),
        4,
        10,
    );
    let host_w = fitted(
        on_screen
            .iter()
            .filter_map(|m| m.hostname.as_deref())
            .map(|h| h.chars().count())
            .collect(),
        8,
        18,
    );
    // Several boot servers: which one saw each machine last.
    let server_w = on_screen.iter().any(|m| m.seen_by.is_some()).then(|| {
        fitted(
            on_screen
                .iter()
                .filter_map(|m| m.seen_by.as_deref())
                .map(|s| s.chars().count())
                .collect(),
            6,
            14,
        )
    });
    let optional = optional_columns(
        inner.width,
        id_w,
        rack_w,
        host_w,
        !app.power.is_empty(),
        server_w,
    );
    let mut header = vec!["ID"];
    let mut widths = vec![Constraint::Length(id_w)];
    for (col, w) in &optional {
        header.push(match col {
            Optional::Ip => "IP",
            Optional::Power => "POWER",
            Optional::Mac => "MAC",
            Optional::Rack => "RACK",
            Optional::Hostname => "HOSTNAME",
            Optional::Server => "SERVER",
        });
        widths.push(Constraint::Length(*w));
    }
    header.extend(["PROFILE", "STATE", "PHASE"]);
    widths.extend(ESSENTIAL.map(Constraint::Length));
    widths.push(Constraint::Fill(2));
    header.push("LAST EVENT");
    let or_dash = |v: Option<String>| match v {
        Some(v) => Cell::from(v),
        None => Cell::from(Span::styled("—", dim())),
    };

    let rows: Vec<Row> = on_screen
        .iter()
        .map(|m| {
            let id_cell = match marker(m) {
                Some((mark, style)) => Cell::from(Line::from(vec![
                    Span::styled(mark, style),
                    Span::styled(m.id.to_string(), style),
                ])),
                None => Cell::from(m.id.to_string()),
            };
            let mut cells = vec![id_cell];
            for (col, _) in &optional {
                cells.push(match col {
                    Optional::Ip => or_dash(m.ip.map(|ip| ip.to_string())),
                    Optional::Power => match app.power.get(&m.id) {
                        None => or_dash(None),
                        Some(p) => {
                            let style = match p.state {
                                PowerState::On => Style::new().fg(Color::Green),
                                PowerState::Off => dim(),
                                _ => Style::new().fg(Color::Yellow).bold(),
                            };
                            Cell::from(Span::styled(p.state.to_string(), style))
                        }
                    },
                    Optional::Mac => or_dash(match m.macs.as_slice() {
                        [] => None,
                        [one] => Some(one.to_string()),
                        [first, rest @ ..] => Some(format!("{first}+{}", rest.len())),
                    }),
                    Optional::Rack => or_dash(rack_text(m)),
                    Optional::Hostname => or_dash(m.hostname.clone()),
                    Optional::Server => or_dash(m.seen_by.clone()),
                });
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
            let row = Row::new(cells);
            if app.marked.contains(&m.id) {
                row.style(Style::new().fg(Color::Cyan))
            } else {
                row
            }
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
    use super::{optional_columns, scroll_offset, Optional};

    /// Narrow tables drop hostname and rack first, then MAC, then IP; 80 columns keep the
    /// essential ones with room for the last event.
    #[test]
    fn optional_columns_drop_hostname_and_rack_first() {
        let cols = |w| {
            optional_columns(w, 17, 6, 10, false, None)
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>()
        };
        assert_eq!(cols(78), vec![]);
        assert_eq!(cols(100), vec![Optional::Ip]);
        assert_eq!(cols(108), vec![Optional::Ip, Optional::Mac]);
        assert_eq!(cols(115), vec![Optional::Ip, Optional::Mac, Optional::Rack]);
        assert_eq!(
            cols(130),
            vec![
                Optional::Ip,
                Optional::Mac,
                Optional::Rack,
                Optional::Hostname
            ]
        );
    }

    #[test]
    fn the_server_column_shows_only_with_several_servers() {
        let cols = |server| {
            optional_columns(200, 17, 6, 10, false, server)
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>()
        };
        assert!(!cols(None).contains(&Optional::Server));
        assert_eq!(cols(Some(8))[1], Optional::Server);
    }

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
