//! How long one frame takes with 10,000 machines: rebuilding the sorted rows after a change,
//! then drawing an 80×24 and a 200×60 screen. `cargo bench -p mayu-console --bench render`.

use std::hint::black_box;
use std::time::Instant;

use mayu::events::{Event, EventKind};
use mayu::machine::{MachineId, Phase};
use mayu_console::action::Action;
use mayu_console::app::update;
use mayu_console::fixtures::{self, NOW};
use mayu_console::screenshots::render;

fn main() {
    let mut app = fixtures::crowd(10_000).unwrap_or_else(|_| unreachable!());
    for (w, h) in [(80, 24), (200, 60)] {
        let rounds = 200u32;
        let start = Instant::now();
        for i in 0..rounds {
            // one boot step dirties the rows, as a live burst does
            let id: MachineId = format!("m{:05}", i * 37 % 10_000)
                .parse()
                .unwrap_or_else(|_| unreachable!());
            let ev = Event {
                seq: u64::from(i) + 1,
                at: NOW,
                kind: EventKind::BootStep {
                    id: Some(id),
                    phase: Phase::Kernel,
                    detail: "kernel".into(),
                    bytes: None,
                    duration_ms: None,
                    profile: None,
                },
            };
            let _ = update(&mut app, Action::Bus(std::sync::Arc::new(ev)));
            app.prepare();
            black_box(render(&app, w, h, NOW));
        }
        let per = start.elapsed() / rounds;
        println!("10,000 machines, {w}x{h}: {per:?} per changed frame");
    }
}
