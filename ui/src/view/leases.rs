//! The DHCP lease table, each lease linked to its machine (or marked unknown), and below it
//! the clients dnsmasq ignored as unknown (`known_only`), which `a` enrols.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, StatefulWidget, Table, TableState, Widget};
use time::OffsetDateTime;

use super::{dim, human, pane, since, title};
use crate::app::App;
use crate::view::machines::scroll_offset;

pub fn render(app: &App, now: OffsetDateTime, area: Rect, buf: &mut Buffer) {
    if app.ignored.is_empty() {
        return leases_table(app, now, area, buf);
    }
    let below = u16::try_from(app.ignored.len() + 3)
        .unwrap_or(u16::MAX)
        .min(area.height / 2);
    let [top, bottom] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(below)]).areas(area);
    leases_table(app, now, top, buf);
    ignored_table(app, now, bottom, buf);
}

/// The ignored clients: enrol one with `a`.
fn ignored_table(app: &App, now: OffsetDateTime, area: Rect, buf: &mut Buffer) {
    let focused = app.lease_selected >= app.leases.len();
    let block = pane(
        Line::from(vec![
            title("Ignored (unknown MACs)"),
            Span::styled(format!("{} · a enrols ", app.ignored.len()), dim()),
        ]),
        focused,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let visible = usize::from(inner.height.saturating_sub(1));
    let selected = app
        .lease_selected
        .saturating_sub(app.leases.len())
        .min(app.ignored.len().saturating_sub(1));
    let offset = scroll_offset(0, selected, visible, app.ignored.len());
    let end = (offset + visible).min(app.ignored.len());
    let rows: Vec<Row> = app.ignored[offset..end]
        .iter()
        .map(|c| {
            Row::new(vec![
                Cell::from(c.mac.to_string()),
                Cell::from(c.vendor_class.clone().unwrap_or_else(|| "—".into())),
                Cell::from(format!("×{}", c.count)),
                Cell::from(format!("{} ago", human(since(now, c.last_seen)))),
                Cell::from(Span::styled(
                    format!("first {} ago", human(since(now, c.first_seen))),
                    dim(),
                )),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(17),
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(12),
            Constraint::Length(18),
        ],
    )
    .header(
        Row::new(["MAC", "VENDOR CLASS", "SEEN", "LAST", "FIRST"])
            .style(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().bg(Color::Indexed(236)))
    .highlight_symbol("▶")
    .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(focused.then_some(selected - offset));
    StatefulWidget::render(table, inner, buf, &mut state);
}

fn leases_table(app: &App, now: OffsetDateTime, area: Rect, buf: &mut Buffer) {
    let block = pane(
        Line::from(vec![
            title("Leases"),
            Span::styled(format!("{} ", app.leases.len()), dim()),
        ]),
        true,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    if app.leases.is_empty() {
        Paragraph::new(vec![
            Line::default(),
            Line::styled("No leases", Style::new().bold()),
            Line::styled(
                format!(
                    "dnsmasq ({} on {}) reports leases here as it hands them out",
                    app.setup.dhcp_mode, app.setup.interface
                ),
                dim(),
            ),
        ])
        .alignment(Alignment::Center)
        .render(inner, buf);
        return;
    }
    let visible = usize::from(inner.height.saturating_sub(1));
    let on_leases = app.lease_selected < app.leases.len();
    let selected = app.lease_selected.min(app.leases.len() - 1);
    // no stored offset: a pure function of the selection is steady enough for this table
    let offset = scroll_offset(0, selected, visible, app.leases.len());
    let end = (offset + visible).min(app.leases.len());
    let rows: Vec<Row> = app.leases[offset..end]
        .iter()
        .map(|l| {
            let machine = match &l.machine {
                Some(id) => Cell::from(id.to_string()),
                // seen by DHCP, never asked mayu for a script: what it did so far
                None => match app.unregistered.get(&l.mac).and_then(|t| t.current()) {
                    Some(b) => Cell::from(Span::styled(
                        format!(
                            "unregistered: boot {}, {}",
                            b.number,
                            b.steps.last().map_or("", |s| s.kind.as_str())
                        ),
                        Style::new().fg(Color::Yellow),
                    )),
                    None => Cell::from(Span::styled("unknown", Style::new().fg(Color::Yellow))),
                },
            };
            let expires = match l.expires {
                None => Span::styled("never", dim()),
                Some(t) if t <= now => Span::styled("expired", Style::new().fg(Color::Red)),
                Some(t) => Span::raw(format!("in {}", human(since(t, now)))),
            };
            Row::new(vec![
                Cell::from(l.ip.to_string()),
                Cell::from(l.mac.to_string()),
                Cell::from(l.hostname.clone().unwrap_or_else(|| "—".into())),
                machine,
                Cell::from(expires),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(15),
            Constraint::Length(17),
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(12),
        ],
    )
    .header(
        Row::new(["IP", "MAC", "HOSTNAME", "MACHINE", "EXPIRES"])
            .style(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::new().bg(Color::Indexed(236)))
    .highlight_symbol("▶")
    .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(on_leases.then_some(selected - offset));
    StatefulWidget::render(table, inner, buf, &mut state);
}
