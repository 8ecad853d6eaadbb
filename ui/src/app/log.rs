//! The event log pane's data: lines from the bus and the console's own notes, identical
//! neighbours folded into one line with a count, each with its level; scrolling and following.

use std::collections::VecDeque;

use mayu::events::{Event, EventKind};
use mayu::lease::Severity;
use time::OffsetDateTime;

use super::state::App;

/// How many event-log lines the console keeps.
const LOG_CAP: usize = 2000;

/// One level table for the engine's log events and the console's log pane.
pub use mayu::events::LogLevel as Level;

/// One line of the event log; identical consecutive events share one line with a count.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// when it last happened.
    pub at: OffsetDateTime,
    /// when it first happened (equal to `at` while `count` is 1).
    pub first: OffsetDateTime,
    /// how many identical events in a row this line stands for.
    pub count: u32,
    pub level: Level,
    /// what kind of event it is (`service`, `dhcp`, ...; `console` for the console's notes).
    pub source: &'static str,
    pub text: String,
}

impl LogLine {
    pub fn new(at: OffsetDateTime, level: Level, source: &'static str, text: String) -> LogLine {
        LogLine {
            at,
            first: at,
            count: 1,
            level,
            source,
            text,
        }
    }
}

/// Adds `line` to `log`, folding it into the newest line when that says the same thing
/// (same source, level and text): a retry loop then reads as one line `… ×12` with its last
/// time instead of a screenful of copies. Drops the oldest line beyond `cap`. Returns true
/// when a line was added, false when it was folded in.
pub fn append_collapsed(log: &mut VecDeque<LogLine>, line: LogLine, cap: usize) -> bool {
    if let Some(last) = log.back_mut() {
        if last.source == line.source && last.level == line.level && last.text == line.text {
            last.count = last.count.saturating_add(line.count);
            last.first = last.first.min(line.first);
            last.at = last.at.max(line.at);
            return false;
        }
    }
    while log.len() >= cap.max(1) {
        log.pop_front();
    }
    log.push_back(line);
    true
}

/// The event's kind as the event log names its source.
fn source_of(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::MachineAdded { .. } => "machine_added",
        EventKind::MachineChanged { .. } => "machine_changed",
        EventKind::MachineRetired { .. } => "machine_retired",
        EventKind::BootStep { .. } => "boot_step",
        EventKind::Dhcp { .. } => "dhcp",
        EventKind::Tftp { .. } => "tftp",
        EventKind::Leases { .. } => "leases",
        EventKind::TemplatesReloaded { .. } => "templates",
        EventKind::Service { .. } => "service",
        EventKind::Log { .. } => "log",
        EventKind::Stalled { .. } => "stalled",
        EventKind::StallEnded { .. } => "stall_ended",
        EventKind::Ignored { .. } => "ignored",
        EventKind::TimelineStep { .. } => "timeline_step",
        EventKind::TimelineMerged { .. } => "timeline_merged",
        EventKind::Power { .. } => "power",
    }
}

/// How loud an event is in the log.
fn level_of(kind: &EventKind) -> Level {
    match kind {
        EventKind::Log { level, .. } => *level,
        EventKind::TemplatesReloaded { ok: false, .. } => Level::Error,
        EventKind::Service { status, .. } => match status.severity() {
            Severity::Failed => Level::Error,
            Severity::Degraded => Level::Warn,
            Severity::Fine => Level::Info,
        },
        EventKind::Tftp { ok: false, .. } | EventKind::Stalled { .. } => Level::Warn,
        _ => Level::Info,
    }
}

/// The event as the machines table's "last event" column shows it: without the machine id,
/// and without the actor when the machine itself acted.
fn short_summary(ev: &Event) -> String {
    match &ev.kind {
        EventKind::MachineAdded { machine, actor } if *actor == machine.id.as_str() => {
            "registered".into()
        }
        EventKind::MachineAdded { actor, .. } => format!("added ({actor})"),
        EventKind::MachineChanged {
            machine,
            change,
            actor,
        } if *actor == machine.id.as_str() => change.clone(),
        EventKind::MachineChanged { change, actor, .. } => format!("{change} ({actor})"),
        _ => {
            let s = ev.summary();
            match ev.machine_id() {
                Some(id) => {
                    let prefix = format!("{id}: ");
                    s.strip_prefix(&prefix).map(str::to_string).unwrap_or(s)
                }
                None => s,
            }
        }
    }
}

impl App {
    /// Logs a bus event once (the replay and the live feed overlap) and notes it as its
    /// machine's last event.
    pub(super) fn record(&mut self, ev: &Event) {
        if ev.seq != 0 && ev.seq <= self.last_seq {
            return;
        }
        self.last_seq = self.last_seq.max(ev.seq);
        // A timeline step repeats the DHCP, TFTP or boot step already logged.
        if matches!(ev.kind, EventKind::TimelineStep { .. }) {
            return;
        }
        self.push_log(LogLine::new(
            ev.at,
            level_of(&ev.kind),
            source_of(&ev.kind),
            ev.summary(),
        ));
        if let Some(id) = ev.machine_id() {
            self.last_event
                .insert(id.clone(), (ev.at, short_summary(ev)));
        }
    }

    fn push_log(&mut self, line: LogLine) {
        if !append_collapsed(&mut self.log, line, LOG_CAP) {
            // folded into the line already shown: nothing moved
            return;
        }
        if !self.follow {
            // keep the operator's view still while new lines arrive below it
            self.log_scroll = (self.log_scroll + 1).min(self.log.len().saturating_sub(1));
        }
    }

    /// A line in the in-app log from the console itself (not from the bus).
    pub fn note(&mut self, at: OffsetDateTime, level: Level, text: String) {
        self.push_log(LogLine::new(at, level, "console", text));
    }

    /// The selected event-log line: the newest one shown (the bottom of the view, which
    /// scrolling moves).
    pub fn selected_log(&self) -> Option<&LogLine> {
        let i = self.log.len().checked_sub(1 + self.log_scroll)?;
        self.log.get(i)
    }

    pub(super) fn scroll_log(&mut self, delta: isize) {
        let max = self.log.len().saturating_sub(1);
        let next = (self.log_scroll as isize - delta).clamp(0, max as isize) as usize;
        self.log_scroll = next;
        self.follow = next == 0;
    }

    pub(super) fn toggle_follow(&mut self) {
        self.follow = !self.follow;
        if self.follow {
            self.log_scroll = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::NOW;

    fn line(secs: i64, source: &'static str, text: &str) -> LogLine {
        LogLine::new(
            NOW + time::Duration::seconds(secs),
            Level::Warn,
            source,
            text.into(),
        )
    }

    #[test]
    fn identical_events_in_a_row_collapse_with_a_count_and_both_times() {
        let mut log = VecDeque::new();
        assert!(append_collapsed(&mut log, line(0, "service", "retry"), 10));
        for i in 1..12 {
            assert!(!append_collapsed(
                &mut log,
                line(i * 5, "service", "retry"),
                10
            ));
        }
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].count, 12);
        assert_eq!(log[0].first, NOW);
        assert_eq!(log[0].at, NOW + time::Duration::seconds(55));
        // another text, another source or another level is a new line
        assert!(append_collapsed(&mut log, line(60, "service", "other"), 10));
        assert!(append_collapsed(&mut log, line(61, "log", "other"), 10));
        let mut error = line(62, "log", "other");
        error.level = Level::Error;
        assert!(append_collapsed(&mut log, error, 10));
        // only consecutive duplicates fold: "retry" again after others is a new line
        assert!(append_collapsed(&mut log, line(63, "service", "retry"), 10));
        let counts: Vec<u32> = log.iter().map(|l| l.count).collect();
        assert_eq!(counts, vec![12, 1, 1, 1, 1]);
        // the cap drops the oldest line
        assert!(append_collapsed(&mut log, line(64, "log", "x"), 5));
        assert_eq!(log.len(), 5);
        assert_eq!(log[0].text, "other");
    }
}
