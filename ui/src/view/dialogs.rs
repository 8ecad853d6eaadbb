//! Popups over the page: help, the assign picker with fill levels, the force confirmation,
//! the edit and override forms, and one event in full.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Widget, Wrap};
use time::OffsetDateTime;

use super::dim;
use super::profiles::gauge;
use crate::app::{
    machines_named, App, AssignState, ConfirmForceState, ConfirmState, Dialog, EditState,
    EnrolState, EventState, Level, LogLine, OverrideState, PowerState, RackState, EDIT_FIELDS,
    POWER_ACTIONS,
};
use crate::keys;

fn popup(area: Rect, width: u16, height: u16, title: String, buf: &mut Buffer) -> Rect {
    let r = area.centered(
        Constraint::Length(width.min(area.width)),
        Constraint::Length(height.min(area.height)),
    );
    Clear.render(r, buf);
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(format!(" {title} "), Style::new().bold()));
    let inner = block.inner(r);
    block.render(r, buf);
    inner
}

fn input_line(label: &str, value: &str, focused: bool) -> Line<'static> {
    let label_style = if focused {
        Style::new().fg(Color::Cyan).bold()
    } else {
        dim()
    };
    let mut spans = vec![
        Span::styled(format!("{label:>9} "), label_style),
        Span::styled(
            value.to_string(),
            if focused {
                Style::new().add_modifier(Modifier::UNDERLINED)
            } else {
                Style::new()
            },
        ),
    ];
    if focused {
        spans.push(Span::styled("▏", Style::new().fg(Color::Cyan)));
    }
    Line::from(spans)
}

/// `2026-11-25 10:00:00 UTC`: an event may be from another day than the clock shows.
fn stamp(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Rows `text` needs when wrapped at `width` (at least; word wrapping may need a few more).
fn wrapped_rows(text: &str, width: usize) -> usize {
    let width = width.max(1);
    text.split('\n')
        .map(|l| l.chars().count().div_ceil(width).max(1))
        .sum()
}

/// One event-log line in full: its text wrapped, how often and when it happened.
fn event_popup(line: &LogLine, scroll: u16, area: Rect, buf: &mut Buffer) {
    let width = area.width.saturating_sub(4).min(96);
    let text_width = usize::from(width.saturating_sub(2));
    let (level, style) = match line.level {
        Level::Info => ("info", Style::new()),
        Level::Warn => ("warn", Style::new().fg(Color::Yellow)),
        Level::Error => ("error", Style::new().fg(Color::Red).bold()),
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(stamp(line.at), Style::new().bold()),
        Span::styled(format!("   {} · {level}", line.source), dim()),
    ])];
    if line.count > 1 {
        lines.push(Line::from(vec![
            Span::styled(
                format!("×{}", line.count),
                Style::new().fg(Color::Cyan).bold(),
            ),
            Span::raw(format!(
                " in a row, first at {}, last at {}",
                stamp(line.first),
                stamp(line.at)
            )),
        ]));
    }
    lines.push(Line::default());
    let head = lines.len();
    lines.push(Line::styled(line.text.clone(), style));
    lines.push(Line::default());
    lines.push(Line::styled("↑↓ scroll · Esc closes", dim()));
    // a word-wrapped line can take a row more than its length says every few rows
    let body = wrapped_rows(&line.text, text_width);
    let rows = head + body + body / 4 + 2;
    let height = u16::try_from(rows + 2).unwrap_or(u16::MAX);
    let inner = popup(area, width, height, "Event".into(), buf);
    let max_scroll = u16::try_from(rows)
        .unwrap_or(u16::MAX)
        .saturating_sub(inner.height);
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((scroll.min(max_scroll), 0))
        .render(inner, buf);
}

/// Every key with its help line; a long line wraps under its own text, not under the keys.
/// On a short terminal it scrolls (↑↓), and the title says there is more.
fn help_popup(app: &App, scroll: u16, area: Rect, buf: &mut Buffer) {
    const KEYS: usize = 14;
    let width = 80.min(area.width);
    let text_w = usize::from(width.saturating_sub(2))
        .saturating_sub(KEYS + 2)
        .max(10);
    let mut lines: Vec<Line> = Vec::new();
    for (k, what) in keys::help_lines() {
        for (i, part) in wrap_words(&what, text_w).into_iter().enumerate() {
            let keys = if i == 0 { k } else { "" };
            lines.push(Line::from(vec![
                Span::styled(
                    format!("{keys:>KEYS$}  "),
                    Style::new().fg(Color::Cyan).bold(),
                ),
                Span::raw(part),
            ]));
        }
    }
    lines.push(Line::default());
    lines.push(Line::styled(
        format!(
            "Changes are committed to the inventory's git log as {}.",
            app.setup.operator
        ),
        dim(),
    ));
    let rows = u16::try_from(lines.len()).unwrap_or(u16::MAX);
    let shown = rows.min(area.height.saturating_sub(2));
    let title = if shown < rows {
        "Help (↑↓ for more)"
    } else {
        "Help"
    };
    let inner = popup(area, width, rows.saturating_add(2), title.into(), buf);
    let scroll = scroll.min(rows.saturating_sub(inner.height));
    Paragraph::new(lines).scroll((scroll, 0)).render(inner, buf);
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than a
/// line is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push(line);
    out
}

/// A yes/no question: what happens, the machines it happens to, and the keys.
fn confirm_popup(q: &ConfirmState, area: Rect, buf: &mut Buffer) {
    let width = 72u16;
    let text_w = usize::from(width.min(area.width).saturating_sub(2)).max(10);
    let mut lines: Vec<Line> = Vec::new();
    let last = q.question.len().saturating_sub(1);
    for (i, l) in q.question.iter().enumerate() {
        let style = if i == last {
            Style::new().bold()
        } else {
            Style::new()
        };
        lines.extend(
            wrap_words(l, text_w)
                .into_iter()
                .map(|part| Line::styled(part, style)),
        );
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::styled("y", Style::new().fg(Color::Cyan).bold()),
        Span::raw(format!(" {}    ", q.yes)),
        Span::styled("n", Style::new().fg(Color::Cyan).bold()),
        Span::raw(" cancel"),
    ]));
    let h = u16::try_from(lines.len()).unwrap_or(8) + 2;
    let title = crate::view::fit(&q.title, usize::from(width.saturating_sub(6)));
    let inner = popup(area, width, h, title, buf);
    Paragraph::new(lines).render(inner, buf);
}

/// The bulk rack form.
fn rack_popup(form: &RackState, app: &App, area: Rect, buf: &mut Buffer) {
    let title = format!("Rack for {}", machines_named(&form.ids, &app.machines));
    let inner = popup(area, 64, 9, crate::view::fit(&title, 58), buf);
    let lines = vec![
        input_line("rack", &form.rack, form.focus == 0),
        input_line("from unit", &form.first_unit, form.focus == 1),
        Line::default(),
        Line::styled(
            "a unit counts up in table order; empty keeps each one's",
            dim(),
        ),
        match &form.error {
            Some(e) => Line::styled(e.clone(), Style::new().fg(Color::Red).bold()),
            None => Line::styled("Tab next field · Enter saves · Esc cancels", dim()),
        },
    ];
    Paragraph::new(lines).render(inner, buf);
}

/// The profiles as the assign and enrol pickers list them: a gauge each, full or current
/// marked.
fn profile_lines(app: &App, selected: usize, current: Option<&str>) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (i, p) in app.profiles.iter().enumerate() {
        let sel = i == selected;
        let mut spans = vec![
            Span::styled(
                if sel { "▶ " } else { "  " },
                Style::new().fg(Color::Cyan).bold(),
            ),
            Span::styled(
                format!("{:<16}", p.name),
                if sel {
                    Style::new().bold().add_modifier(Modifier::REVERSED)
                } else {
                    Style::new().bold()
                },
            ),
            Span::raw(" "),
        ];
        spans.extend(gauge(p, 16));
        let full = p.quantity.is_some_and(|q| p.assigned >= q);
        if current == Some(p.name.as_str()) {
            spans.push(Span::styled(" current", Style::new().fg(Color::Cyan)));
        } else if full {
            spans.push(Span::styled(" full", Style::new().fg(Color::Red).bold()));
        }
        if !p.tags.is_empty() {
            spans.push(Span::styled(format!(" #{}", p.tags.join(" #")), dim()));
        }
        lines.push(Line::from(spans));
    }
    lines
}

pub fn render(app: &App, _now: OffsetDateTime, area: Rect, buf: &mut Buffer) {
    let Some(dialog) = &app.dialog else {
        return;
    };
    match dialog {
        Dialog::Event(EventState { line, scroll }) => event_popup(line, *scroll, area, buf),
        Dialog::Help(scroll) => help_popup(app, *scroll, area, buf),
        Dialog::Confirm(question) => confirm_popup(question, area, buf),
        Dialog::Rack(form) => rack_popup(form, app, area, buf),
        Dialog::Assign(AssignState { ids, selected }) => {
            let h = u16::try_from(app.profiles.len()).unwrap_or(10) + 5;
            let inner = popup(
                area,
                70,
                h,
                format!("Assign {}", machines_named(ids, &app.machines)),
                buf,
            );
            let current = match ids.as_slice() {
                [one] => app.machines.get(one).and_then(|m| m.profile.clone()),
                _ => None,
            };
            let mut lines = profile_lines(app, *selected, current.as_deref());
            lines.push(Line::default());
            lines.push(Line::styled(
                "Enter assigns · a full profile asks before going past its quantity",
                dim(),
            ));
            Paragraph::new(lines).render(inner, buf);
        }
        Dialog::Enrol(EnrolState { mac, selected }) => {
            let h = u16::try_from(app.profiles.len()).unwrap_or(10) + 6;
            let inner = popup(area, 70, h, format!("Enrol {mac}"), buf);
            let mut lines = profile_lines(app, *selected, None);
            let hold = *selected == app.profiles.len();
            lines.push(Line::from(vec![
                Span::styled(
                    if hold { "▶ " } else { "  " },
                    Style::new().fg(Color::Cyan).bold(),
                ),
                Span::styled(
                    "no profile: hold it for an operator",
                    if hold {
                        Style::new().add_modifier(Modifier::REVERSED)
                    } else {
                        Style::new()
                    },
                ),
            ]));
            lines.push(Line::default());
            lines.push(Line::styled(
                "Enter enrols (asks first) · a full profile takes no one here",
                dim(),
            ));
            Paragraph::new(lines).render(inner, buf);
        }
        Dialog::Power(PowerState { ids, selected }) => {
            let h = u16::try_from(POWER_ACTIONS.len()).unwrap_or(5) + 5;
            let inner = popup(
                area,
                70,
                h,
                format!("Power {}", machines_named(ids, &app.machines)),
                buf,
            );
            let mut lines: Vec<Line> = POWER_ACTIONS
                .iter()
                .enumerate()
                .map(|(i, (action, says))| {
                    let sel = i == *selected;
                    Line::from(vec![
                        Span::styled(
                            if sel { "▶ " } else { "  " },
                            Style::new().fg(Color::Cyan).bold(),
                        ),
                        Span::styled(
                            format!("{:<10}", action.as_str()),
                            if sel {
                                Style::new().bold().add_modifier(Modifier::REVERSED)
                            } else {
                                Style::new().bold()
                            },
                        ),
                        Span::styled(format!(" {says}"), dim()),
                    ])
                })
                .collect();
            lines.push(Line::default());
            lines.push(Line::styled(
                "Enter chooses (asks first, naming the machines) · Esc closes",
                dim(),
            ));
            Paragraph::new(lines).render(inner, buf);
        }
        Dialog::ConfirmForce(ConfirmForceState {
            id,
            profile,
            assigned,
            quantity,
            ..
        }) => {
            let inner = popup(area, 60, 8, "Profile full".into(), buf);
            let lines = vec![
                Line::from(vec![
                    Span::raw("Profile "),
                    Span::styled(profile.clone(), Style::new().bold()),
                    Span::styled(
                        format!(" is full ({assigned} of {quantity})."),
                        Style::new().fg(Color::Red),
                    ),
                ]),
                Line::from(format!(
                    "Assign {id} anyway? It goes past the profile's quantity."
                )),
                Line::default(),
                Line::from(vec![
                    Span::styled("y", Style::new().fg(Color::Cyan).bold()),
                    Span::raw(" force it    "),
                    Span::styled("n", Style::new().fg(Color::Cyan).bold()),
                    Span::raw(" cancel"),
                ]),
            ];
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .render(inner, buf);
        }
        Dialog::Edit(EditState {
            id,
            fields,
            focus,
            error,
        }) => {
            let inner = popup(area, 64, 9, format!("Edit {id}"), buf);
            let mut lines: Vec<Line> = EDIT_FIELDS
                .iter()
                .zip(fields.iter())
                .enumerate()
                .map(|(i, (label, value))| input_line(label, value, i == *focus))
                .collect();
            lines.push(Line::default());
            lines.push(match error {
                Some(e) => Line::styled(e.clone(), Style::new().fg(Color::Red).bold()),
                None => Line::styled("Tab next field · Enter saves · Esc cancels", dim()),
            });
            Paragraph::new(lines).render(inner, buf);
        }
        Dialog::Override(OverrideState {
            id,
            key,
            value,
            focus,
            error,
        }) => {
            let inner = popup(area, 64, 8, format!("Override template env on {id}"), buf);
            let lines = vec![
                input_line("key", key, *focus == 0),
                input_line("value", value, *focus == 1),
                Line::default(),
                match error {
                    Some(e) => Line::styled(e.clone(), Style::new().fg(Color::Red).bold()),
                    None => {
                        Line::styled("JSON or plain text · an empty value removes the key", dim())
                    }
                },
            ];
            Paragraph::new(lines).render(inner, buf);
        }
    }
}
