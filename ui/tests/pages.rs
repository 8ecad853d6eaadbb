//! Every page and dialog rendered with `TestBackend` at a fixed size and an injected clock,
//! compared against committed insta snapshots (CI runs with `INSTA_UPDATE=no`).

// Test helpers may unwrap: a panic is the failure report (clippy only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

use mayu_console::fixtures;
use mayu_console::view::AppView;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn draw(shot: &fixtures::Shot) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(shot.width, shot.height)).unwrap();
    let view = AppView {
        app: &shot.app,
        now: fixtures::NOW,
    };
    terminal.draw(|f| f.render_widget(&view, f.area())).unwrap();
    terminal.backend().clone()
}

#[test]
fn pages() {
    let shots = fixtures::shots().unwrap();
    for shot in &shots {
        insta::assert_snapshot!(shot.name, draw(shot));
    }
    // the list covers each page, the assign dialog and the empty state
    for name in [
        "machines", "detail", "leases", "events", "assign", "empty", "help",
    ] {
        assert!(shots.iter().any(|s| s.name == name), "no {name} snapshot");
    }
}
