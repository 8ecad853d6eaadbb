//! Key handling: a near-pure function from a key press (and what is open) to an [`Action`],
//! plus the hints the key-hint bar and the help popup list.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::action::{Action, Page};
use crate::app::{App, Dialog};

/// Where keys go right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// typing into the filter line or a form field: letters are text.
    Text,
    /// a list picker (assign): arrows and Enter.
    Picker,
    Confirm,
    Help,
    /// reading one event in full: arrows scroll, Esc closes.
    Popup,
    /// the event log has the movement keys (its pane on the machines page, or the events page).
    Events,
}

pub fn mode(app: &App) -> Mode {
    match &app.dialog {
        Some(Dialog::Help) => Mode::Help,
        Some(Dialog::Assign { .. }) => Mode::Picker,
        Some(Dialog::ConfirmForce { .. }) => Mode::Confirm,
        Some(Dialog::Edit { .. } | Dialog::Override { .. }) => Mode::Text,
        Some(Dialog::Event { .. }) => Mode::Popup,
        None if app.filter_editing => Mode::Text,
        None if app.events_focused() => Mode::Events,
        None => Mode::Normal,
    }
}

/// The action a key stands for in `mode`, if any.
pub fn action_for(mode: Mode, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Some(Action::Quit);
    }
    // keys that mean the same everywhere
    match key.code {
        KeyCode::Esc => return Some(Action::Back),
        KeyCode::Enter => {
            return Some(if matches!(mode, Mode::Normal | Mode::Events) {
                Action::OpenDetail
            } else {
                Action::Submit
            })
        }
        KeyCode::Up => return Some(Action::Up),
        KeyCode::Down => return Some(Action::Down),
        KeyCode::PageUp => return Some(Action::PageUp),
        KeyCode::PageDown => return Some(Action::PageDown),
        KeyCode::Tab | KeyCode::BackTab => {
            return Some(if mode == Mode::Text {
                Action::NextField
            } else {
                Action::NextPane
            })
        }
        _ => {}
    }
    match mode {
        Mode::Text => match key.code {
            KeyCode::Backspace => Some(Action::Backspace),
            KeyCode::Char(c) if !ctrl => Some(Action::Input(c)),
            _ => None,
        },
        Mode::Picker => match key.code {
            KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Char('j') => Some(Action::Down),
            KeyCode::Char('q') => Some(Action::Back),
            _ => None,
        },
        Mode::Confirm => match key.code {
            KeyCode::Char('y' | 'Y') => Some(Action::Confirm(true)),
            KeyCode::Char('n' | 'N' | 'q') => Some(Action::Confirm(false)),
            _ => None,
        },
        Mode::Help => match key.code {
            KeyCode::Char('?' | 'q') => Some(Action::Back),
            _ => None,
        },
        Mode::Popup => match key.code {
            KeyCode::Char('?' | 'q') => Some(Action::Back),
            KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Char('j') => Some(Action::Down),
            KeyCode::Char('g') | KeyCode::Home => Some(Action::Top),
            _ => None,
        },
        // the same keys either way; only the hints differ
        Mode::Normal | Mode::Events => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('?') => Some(Action::Help),
            KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Char('j') => Some(Action::Down),
            KeyCode::Char('g') | KeyCode::Home => Some(Action::Top),
            KeyCode::Char('G') | KeyCode::End => Some(Action::Bottom),
            KeyCode::Char('1') => Some(Action::ShowPage(Page::Machines)),
            KeyCode::Char('2') => Some(Action::ShowPage(Page::Detail)),
            KeyCode::Char('3') => Some(Action::ShowPage(Page::Leases)),
            KeyCode::Char('4') => Some(Action::ShowPage(Page::Events)),
            KeyCode::Char('/') => Some(Action::StartFilter),
            KeyCode::Char('a') => Some(Action::StartAssign),
            KeyCode::Char('u') => Some(Action::Unassign),
            KeyCode::Char('r') => Some(Action::Reinstall),
            KeyCode::Char('c') => Some(Action::BootComplete),
            KeyCode::Char('e') => Some(Action::StartEdit),
            KeyCode::Char('o') => Some(Action::StartOverride),
            KeyCode::Char('s') => Some(Action::SortNext),
            KeyCode::Char('S') => Some(Action::SortReverse),
            KeyCode::Char('f') => Some(Action::ToggleFollow),
            _ => None,
        },
    }
}

/// Every key with what it does, for the help popup.
pub const HELP: &[(&str, &str)] = &[
    ("?", "this help"),
    ("↑↓ j k", "move the selection / scroll"),
    ("PgUp PgDn g G", "page, first, last"),
    ("Tab", "next pane (machines ↔ event log)"),
    ("1 2 3 4", "pages: machines, detail, leases, events"),
    ("Enter", "the selected machine's detail"),
    ("Enter", "in the event log: the selected event in full"),
    (
        "/",
        "filter machines (id, MAC, IP, hostname, profile, state)",
    ),
    ("s  S", "sort by the next column / reverse"),
    ("a", "assign to a profile (a full one asks first)"),
    ("u", "unassign and hold for an operator"),
    ("r", "request a reinstall on next boot"),
    ("c", "mark boot complete"),
    ("e", "edit hostname, rack, unit and notes"),
    ("o", "override a template env key (empty value removes)"),
    ("f", "follow new events in the event log"),
    ("Esc", "close, clear the filter, back to machines"),
    ("q  Ctrl-C", "quit (services stop with the console)"),
];

/// The key-hint bar for the current mode.
pub fn hints(mode: Mode) -> &'static [(&'static str, &'static str)] {
    match mode {
        Mode::Normal => &[
            ("?", "help"),
            ("q", "quit"),
            ("a", "assign"),
            ("u", "unassign"),
            ("r", "reinstall"),
            ("c", "complete"),
            ("e", "edit"),
            ("o", "override"),
            ("/", "filter"),
            ("s", "sort"),
            ("Tab", "pane"),
            ("1-4", "pages"),
        ],
        Mode::Text => &[("Enter", "save"), ("Tab", "next field"), ("Esc", "cancel")],
        Mode::Picker => &[("↑↓", "choose"), ("Enter", "assign"), ("Esc", "cancel")],
        Mode::Confirm => &[("y", "force it"), ("n", "cancel")],
        Mode::Help => &[("Esc", "close")],
        Mode::Popup => &[("↑↓", "scroll"), ("Esc", "close")],
        Mode::Events => &[
            ("?", "help"),
            ("q", "quit"),
            ("↑↓", "select event"),
            ("Enter", "full text"),
            ("f", "follow"),
            ("Tab", "pane"),
            ("1-4", "pages"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn letters_are_text_in_forms_and_commands_elsewhere() {
        assert!(matches!(
            action_for(Mode::Normal, key(KeyCode::Char('q'))),
            Some(Action::Quit)
        ));
        assert!(matches!(
            action_for(Mode::Text, key(KeyCode::Char('q'))),
            Some(Action::Input('q'))
        ));
        assert!(matches!(
            action_for(Mode::Normal, key(KeyCode::Char('a'))),
            Some(Action::StartAssign)
        ));
        assert!(matches!(
            action_for(Mode::Confirm, key(KeyCode::Char('y'))),
            Some(Action::Confirm(true))
        ));
        assert!(action_for(Mode::Confirm, key(KeyCode::Char('a'))).is_none());
    }

    #[test]
    fn ctrl_c_quits_everywhere() {
        for mode in [
            Mode::Normal,
            Mode::Text,
            Mode::Picker,
            Mode::Confirm,
            Mode::Help,
            Mode::Popup,
            Mode::Events,
        ] {
            let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
            assert!(
                matches!(action_for(mode, k), Some(Action::Quit)),
                "{mode:?}"
            );
        }
    }

    /// Every key the hint bar offers outside dialogs is explained in the help popup, and the
    /// keys named there do what the hint says.
    #[test]
    fn hints_and_help_agree() {
        let help_keys: Vec<&str> = HELP
            .iter()
            .flat_map(|(k, _)| k.split_whitespace())
            .collect();
        for mode in [Mode::Normal, Mode::Events] {
            for (k, what) in hints(mode) {
                let named = match *k {
                    "1-4" => "1",
                    "↑↓" => "↑↓",
                    other => other,
                };
                assert!(
                    help_keys.contains(&named),
                    "hint `{k}` ({what}) is not in the help"
                );
            }
        }
        assert!(HELP
            .iter()
            .any(|(k, what)| *k == "Enter" && what.contains("event log")));
        assert!(matches!(
            action_for(Mode::Events, key(KeyCode::Enter)),
            Some(Action::OpenDetail)
        ));
        assert!(matches!(
            action_for(Mode::Events, key(KeyCode::Char('f'))),
            Some(Action::ToggleFollow)
        ));
        assert!(matches!(
            action_for(Mode::Popup, key(KeyCode::Esc)),
            Some(Action::Back)
        ));
        assert!(matches!(
            action_for(Mode::Popup, key(KeyCode::Char('j'))),
            Some(Action::Down)
        ));
    }

    #[test]
    fn enter_opens_detail_or_submits() {
        assert!(matches!(
            action_for(Mode::Normal, key(KeyCode::Enter)),
            Some(Action::OpenDetail)
        ));
        assert!(matches!(
            action_for(Mode::Picker, key(KeyCode::Enter)),
            Some(Action::Submit)
        ));
        assert!(matches!(
            action_for(Mode::Text, key(KeyCode::Tab)),
            Some(Action::NextField)
        ));
    }
}
