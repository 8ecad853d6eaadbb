//! Key handling: one table, [`BINDINGS`], says which key does what in which [`Mode`], what
//! the help page says about it and what the key-hint bar shows. The key-to-action mapping
//! ([`action_for`]), the help page ([`help_lines`]) and the hint bar ([`hints`]) are read off
//! it, so they cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::action::{Action, Page};
use crate::app::{filter_help, App, Dialog};

/// Where keys go right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// typing into a form field: letters are text.
    Text,
    /// typing into the filter line: letters are text, the arrows go back to the rows.
    Filter,
    /// a list picker (assign): arrows and Enter.
    Picker,
    Confirm,
    Help,
    /// reading one event in full: arrows scroll, Esc closes.
    Popup,
    /// the event log has the movement keys (its pane on the machines page, or the events page).
    Events,
}

impl Mode {
    pub const ALL: &'static [Mode] = &[
        Mode::Normal,
        Mode::Events,
        Mode::Text,
        Mode::Filter,
        Mode::Picker,
        Mode::Confirm,
        Mode::Help,
        Mode::Popup,
    ];
}

pub fn mode(app: &App) -> Mode {
    match &app.dialog {
        Some(Dialog::Help(_)) => Mode::Help,
        Some(Dialog::Assign(_) | Dialog::Enrol(_) | Dialog::Power(_)) => Mode::Picker,
        Some(Dialog::ConfirmForce(_) | Dialog::Confirm(_)) => Mode::Confirm,
        Some(Dialog::Edit(_) | Dialog::Override(_) | Dialog::Rack(_)) => Mode::Text,
        Some(Dialog::Event(_)) => Mode::Popup,
        None if app.filter_editing => Mode::Filter,
        None if app.events_focused() => Mode::Events,
        None => Mode::Normal,
    }
}

/// A key as the table names it: a key by itself (Shift is part of the character), or a
/// letter with Ctrl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Code(KeyCode),
    Ctrl(char),
}

impl Key {
    fn of(ev: &KeyEvent) -> Key {
        match ev.code {
            KeyCode::Char(c) if ev.modifiers.contains(KeyModifiers::CONTROL) => {
                Key::Ctrl(c.to_ascii_lowercase())
            }
            code => Key::Code(code),
        }
    }

    /// The key as the help page writes it.
    pub fn name(self) -> String {
        match self {
            Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            Key::Code(code) => match code {
                KeyCode::Char(' ') => "Space".into(),
                KeyCode::Char(c) => c.to_string(),
                KeyCode::Up => "↑".into(),
                KeyCode::Down => "↓".into(),
                KeyCode::PageUp => "PgUp".into(),
                KeyCode::PageDown => "PgDn".into(),
                KeyCode::Home => "Home".into(),
                KeyCode::End => "End".into(),
                KeyCode::Tab => "Tab".into(),
                KeyCode::BackTab => "Shift-Tab".into(),
                KeyCode::Enter => "Enter".into(),
                KeyCode::Esc => "Esc".into(),
                KeyCode::Backspace => "Backspace".into(),
                other => format!("{other:?}"),
            },
        }
    }
}

/// What a hint says, in which modes.
pub type HintTexts = &'static [(&'static [Mode], &'static str)];

/// One row of the table: keys that do one thing in some modes, and how the help page and the
/// hint bar speak of them.
#[derive(Debug)]
pub struct Binding {
    pub keys: &'static [Key],
    pub modes: &'static [Mode],
    pub action: Action,
    /// the help page's line: the keys as written there, and what they do. Rows whose keys a
    /// neighbour's line already names (↓ beside ↑) have none.
    pub help: Option<(&'static str, &'static str)>,
    /// the hint bar: the keys as written there, and what the hint says in which modes.
    pub hint: Option<(&'static str, HintTexts)>,
}

impl Binding {
    const fn new(keys: &'static [Key], modes: &'static [Mode], action: Action) -> Binding {
        Binding {
            keys,
            modes,
            action,
            help: None,
            hint: None,
        }
    }

    const fn help(mut self, keys: &'static str, text: &'static str) -> Binding {
        self.help = Some((keys, text));
        self
    }

    const fn hint(mut self, keys: &'static str, says: HintTexts) -> Binding {
        self.hint = Some((keys, says));
        self
    }

    /// The hint this row shows in `mode`, if any.
    fn hint_in(&self, mode: Mode) -> Option<(&'static str, &'static str)> {
        let (keys, says) = self.hint?;
        says.iter()
            .find(|(modes, _)| modes.contains(&mode))
            .map(|(_, what)| (keys, *what))
    }
}

const fn ch(c: char) -> Key {
    Key::Code(KeyCode::Char(c))
}

const fn code(c: KeyCode) -> Key {
    Key::Code(c)
}

/// Outside dialogs and text fields: the machines table or the event log has the keys.
const BROWSE: &[Mode] = &[Mode::Normal, Mode::Events];
/// Where j and k move: lists and the event popup, not text.
const LISTS: &[Mode] = &[Mode::Normal, Mode::Events, Mode::Picker, Mode::Popup];
/// Where Enter confirms rather than opens.
const DIALOGS: &[Mode] = &[
    Mode::Text,
    Mode::Filter,
    Mode::Picker,
    Mode::Confirm,
    Mode::Help,
    Mode::Popup,
];
/// Where letters are text.
const TYPING: &[Mode] = &[Mode::Text, Mode::Filter];
const NOT_TEXT: &[Mode] = &[
    Mode::Normal,
    Mode::Events,
    Mode::Picker,
    Mode::Confirm,
    Mode::Help,
    Mode::Popup,
];

/// Every key binding. The help page lists the rows with help in this order; the hint bar
/// shows a mode's hints in this order.
pub const BINDINGS: &[Binding] = &[
    Binding::new(&[ch('?')], BROWSE, Action::Help)
        .help("?", "this help")
        .hint("?", &[(BROWSE, "help")]),
    Binding::new(&[ch('q')], BROWSE, Action::Quit)
        .help(
            "q  Ctrl-C",
            "quit; services stop too (asks while machines boot)",
        )
        .hint("q", &[(BROWSE, "quit")]),
    Binding::new(&[Key::Ctrl('c')], Mode::ALL, Action::Quit),
    Binding::new(&[code(KeyCode::Up)], Mode::ALL, Action::Up)
        .help("↑↓ j k", "move the selection / scroll")
        .hint(
            "↑↓",
            &[
                (&[Mode::Events], "select event"),
                (&[Mode::Picker], "choose"),
                (&[Mode::Help, Mode::Popup], "scroll"),
                (&[Mode::Filter], "rows"),
            ],
        ),
    Binding::new(&[code(KeyCode::Down)], Mode::ALL, Action::Down),
    Binding::new(&[ch('k')], LISTS, Action::Up),
    Binding::new(&[ch('j')], LISTS, Action::Down),
    Binding::new(&[code(KeyCode::Enter)], &[Mode::Normal], Action::OpenDetail)
        .help("Enter", "the selected machine's detail"),
    Binding::new(&[code(KeyCode::Enter)], &[Mode::Events], Action::OpenDetail)
        .help("Enter", "in the event log: the selected event in full")
        .hint("Enter", &[(&[Mode::Events], "full text")]),
    Binding::new(&[code(KeyCode::Enter)], DIALOGS, Action::Submit).hint(
        "Enter",
        &[
            (&[Mode::Text], "save"),
            (&[Mode::Filter], "keep filter"),
            (&[Mode::Picker], "assign"),
        ],
    ),
    // the machines table only: in the event log Space would mark a row out of sight
    Binding::new(&[ch(' ')], &[Mode::Normal], Action::ToggleMark)
        .help("Space", "mark / unmark; a u r e X then act on all marked")
        .hint("Space", &[(&[Mode::Normal], "mark")]),
    Binding::new(&[ch('a')], BROWSE, Action::StartAssign)
        .help(
            "a",
            "assign to a profile (a full one asks first); on the leases page: enrol the selected ignored client",
        )
        .hint("a", &[(&[Mode::Normal], "assign")]),
    Binding::new(&[ch('p')], BROWSE, Action::StartPower)
        .help(
            "p",
            "power: status, on, off, cycle, reinstall now (over the BMC; asks first)",
        ),
    Binding::new(&[ch('z')], BROWSE, Action::Undo)
        .help("z", "undo the last assignment made in this session")
        .hint("z", &[(&[Mode::Normal], "undo")]),
    Binding::new(&[ch('u')], BROWSE, Action::Unassign)
        .help("u", "unassign and hold for an operator (asks first)")
        .hint("u", &[(&[Mode::Normal], "unassign")]),
    Binding::new(&[ch('r')], BROWSE, Action::Reinstall)
        .help("r", "reinstall on next boot (asks first)")
        .hint("r", &[(&[Mode::Normal], "reinstall")]),
    Binding::new(&[ch('X')], BROWSE, Action::Retire)
        .help("X", "retire: remove from the inventory (asks first)"),
    Binding::new(&[ch('c')], BROWSE, Action::BootComplete)
        .help("c", "mark boot complete")
        .hint("c", &[(&[Mode::Normal], "complete")]),
    Binding::new(&[ch('e')], BROWSE, Action::StartEdit)
        .help(
            "e",
            "edit hostname, rack, unit and notes (marked: their rack)",
        )
        .hint("e", &[(&[Mode::Normal], "edit")]),
    Binding::new(&[ch('o')], BROWSE, Action::StartOverride)
        .help("o", "override a template env key (empty value removes)")
        .hint("o", &[(&[Mode::Normal], "override")]),
    // `help_lines` adds what the filter matches, from `app::FILTER_FIELDS`
    Binding::new(&[ch('/')], BROWSE, Action::StartFilter)
        .help("/", "filter:")
        .hint("/", &[(&[Mode::Normal], "filter")]),
    Binding::new(&[ch('s')], BROWSE, Action::SortNext)
        .help("s  S", "sort by the next column / reverse")
        .hint("s", &[(&[Mode::Normal], "sort")]),
    Binding::new(&[ch('S')], BROWSE, Action::SortReverse),
    Binding::new(&[ch('f')], BROWSE, Action::ToggleFollow)
        .help("f", "follow new events in the event log")
        .hint("f", &[(&[Mode::Events], "follow")]),
    Binding::new(
        &[code(KeyCode::Tab), code(KeyCode::BackTab)],
        NOT_TEXT,
        Action::NextPane,
    )
    .help("Tab Shift-Tab", "next pane (machines ↔ event log)")
    .hint("Tab", &[(BROWSE, "pane")]),
    // the filter line has no fields to go to
    Binding::new(
        &[code(KeyCode::Tab), code(KeyCode::BackTab)],
        &[Mode::Text],
        Action::NextField,
    )
    .hint("Tab", &[(&[Mode::Text], "next field")]),
    Binding::new(&[ch('1')], BROWSE, Action::ShowPage(Page::Machines))
        .help("1 2 3 4", "pages: machines, detail, leases, events")
        .hint("1-4", &[(BROWSE, "pages")]),
    Binding::new(&[ch('2')], BROWSE, Action::ShowPage(Page::Detail)),
    Binding::new(&[ch('3')], BROWSE, Action::ShowPage(Page::Leases)),
    Binding::new(&[ch('4')], BROWSE, Action::ShowPage(Page::Events)),
    Binding::new(&[code(KeyCode::PageUp)], Mode::ALL, Action::PageUp)
        .help("PgUp PgDn", "a page up / down"),
    Binding::new(&[code(KeyCode::PageDown)], Mode::ALL, Action::PageDown),
    Binding::new(
        &[ch('g'), code(KeyCode::Home)],
        &[Mode::Normal, Mode::Events, Mode::Help, Mode::Popup],
        Action::Top,
    )
    .help("g  Home", "first"),
    Binding::new(&[ch('G'), code(KeyCode::End)], BROWSE, Action::Bottom).help("G  End", "last"),
    Binding::new(&[code(KeyCode::Esc)], Mode::ALL, Action::Back)
        .help("Esc", "close, clear the filter, unmark, back to machines")
        .hint(
            "Esc",
            &[
                (&[Mode::Text, Mode::Picker], "cancel"),
                (&[Mode::Filter], "clear"),
                (&[Mode::Help, Mode::Popup], "close"),
            ],
        ),
    Binding::new(&[code(KeyCode::Backspace)], TYPING, Action::Backspace),
    Binding::new(
        &[ch('q')],
        &[Mode::Picker, Mode::Help, Mode::Popup],
        Action::Back,
    ),
    Binding::new(&[ch('?')], &[Mode::Help, Mode::Popup], Action::Back),
    Binding::new(&[ch('y'), ch('Y')], &[Mode::Confirm], Action::Confirm(true))
        .hint("y", &[(&[Mode::Confirm], "yes")]),
    Binding::new(
        &[ch('n'), ch('N'), ch('q')],
        &[Mode::Confirm],
        Action::Confirm(false),
    )
    .hint("n", &[(&[Mode::Confirm], "cancel")]),
];

/// The action a key stands for in `mode`, if any: its row in [`BINDINGS`], else in a text
/// field the character itself.
pub fn action_for(mode: Mode, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let pressed = Key::of(&key);
    let bound = BINDINGS
        .iter()
        .find(|b| b.modes.contains(&mode) && b.keys.contains(&pressed));
    match (bound, pressed) {
        (Some(b), _) => Some(b.action.clone()),
        (None, Key::Code(KeyCode::Char(c))) if TYPING.contains(&mode) => Some(Action::Input(c)),
        (None, _) => None,
    }
}

/// The help page: every row with a help line, in table order. The filter's line names what
/// the filter matches, read off the filter itself.
pub fn help_lines() -> Vec<(&'static str, String)> {
    BINDINGS
        .iter()
        .filter_map(|b| {
            let (keys, text) = b.help?;
            Some(match b.action {
                Action::StartFilter => (keys, format!("{text} {}", filter_help())),
                _ => (keys, text.to_string()),
            })
        })
        .collect()
}

/// The key-hint bar for `mode`, in table order.
pub fn hints(mode: Mode) -> Vec<(&'static str, &'static str)> {
    BINDINGS.iter().filter_map(|b| b.hint_in(mode)).collect()
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
        for mode in [Mode::Text, Mode::Filter] {
            assert!(matches!(
                action_for(mode, key(KeyCode::Char(' '))),
                Some(Action::Input(' '))
            ));
        }
        assert!(matches!(
            action_for(Mode::Normal, key(KeyCode::Char(' '))),
            Some(Action::ToggleMark)
        ));
        assert!(matches!(
            action_for(Mode::Normal, key(KeyCode::Char('z'))),
            Some(Action::Undo)
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
        for mode in Mode::ALL {
            let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
            assert!(
                matches!(action_for(*mode, k), Some(Action::Quit)),
                "{mode:?}"
            );
        }
    }

    /// The table is unambiguous: no key does two things in one mode.
    #[test]
    fn no_key_is_bound_twice_in_a_mode() {
        for mode in Mode::ALL {
            let mut seen: Vec<Key> = Vec::new();
            for b in BINDINGS.iter().filter(|b| b.modes.contains(mode)) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{} twice in {mode:?}", k.name());
                    seen.push(*k);
                }
            }
        }
    }

    /// Whatever the hint bar and the help page say agrees with what the keys do: a help line
    /// names every key of its row, every key outside dialogs is on the help page, and a hint
    /// names a key of its row in a mode where that row's keys work.
    #[test]
    fn hints_and_help_agree() {
        // "↑↓ j k" names ↑, ↓, j and k
        let named = |label: &str, k: &Key| {
            let name = k.name();
            label
                .split_whitespace()
                .any(|w| w == name || (!w.is_ascii() && w.chars().any(|c| c.to_string() == name)))
        };
        let help = help_lines();
        for b in BINDINGS {
            if let Some((label, what)) = b.help {
                for k in b.keys {
                    assert!(
                        named(label, k),
                        "`{label}` ({what}) does not name {}",
                        k.name()
                    );
                }
            }
            if let Some((label, says)) = b.hint {
                // hints are short: "1-4", "↑↓"
                assert!(
                    b.keys.iter().any(|k| label.starts_with(&k.name())),
                    "hint `{label}` names none of its keys"
                );
                for (modes, what) in says {
                    for m in *modes {
                        assert!(b.modes.contains(m), "hint `{label} {what}` in {m:?}");
                    }
                }
            }
            if b.modes.iter().any(|m| BROWSE.contains(m)) {
                for k in b.keys {
                    assert!(
                        help.iter().any(|(label, _)| named(label, k)),
                        "{} ({:?}) is not on the help page",
                        k.name(),
                        b.action
                    );
                }
            }
        }
        // every mode has a way out, and the hint bar says so outside the main screens
        for mode in Mode::ALL {
            assert!(
                matches!(action_for(*mode, key(KeyCode::Esc)), Some(Action::Back)),
                "{mode:?}"
            );
            assert!(!hints(*mode).is_empty(), "{mode:?} has no hints");
        }
        assert!(matches!(
            action_for(Mode::Events, key(KeyCode::Enter)),
            Some(Action::OpenDetail)
        ));
        assert!(matches!(
            action_for(Mode::Popup, key(KeyCode::Char('j'))),
            Some(Action::Down)
        ));
    }

    /// The help page's filter line lists exactly the fields the filter looks in.
    #[test]
    fn filter_help_names_what_the_filter_matches() {
        let slash = help_lines().into_iter().find(|(k, _)| *k == "/").unwrap();
        assert_eq!(
            slash.1,
            "filter: id, MAC, IP, hostname, serial, rack, notes, profile or state"
        );
    }

    /// The hint bar reads as before the table: these are what operators know.
    #[test]
    fn hint_bars_per_mode() {
        let keys = |m| {
            hints(m)
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(keys(Mode::Normal), "? q Space a z u r c e o / s Tab 1-4");
        assert_eq!(keys(Mode::Events), "? q ↑↓ Enter f Tab 1-4");
        assert_eq!(keys(Mode::Text), "Enter Tab Esc");
        // the filter line is not a form: no "save", no "next field"
        assert_eq!(
            hints(Mode::Filter),
            vec![("↑↓", "rows"), ("Enter", "keep filter"), ("Esc", "clear")]
        );
        assert_eq!(keys(Mode::Picker), "↑↓ Enter Esc");
        assert_eq!(keys(Mode::Confirm), "y n");
        assert_eq!(keys(Mode::Help), "↑↓ Esc");
        assert_eq!(keys(Mode::Popup), "↑↓ Esc");
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
