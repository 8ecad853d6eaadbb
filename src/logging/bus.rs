//! WARN and ERROR log records as events on the bus, so whatever goes wrong in the background
//! reaches the console's log pane, `mayuctl watch` and the event stream, not only the log
//! file. One layer of the global subscriber; it forwards to every live bus [`forward_to`]
//! named (one per engine; tests run several in a process). Records with target
//! `mayu::events` are already on the bus (`Engine::say`, the headless echo): never twice.

use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::events::{Bus, EventKind, LogLevel, WeakBus};

static BUSES: Mutex<Vec<WeakBus>> = Mutex::new(Vec::new());

/// From now on WARN and ERROR records are also bus events (the first bus named wins). Without
/// a global subscriber yet ([`super::init`] not called: an embedding, a test), one holding
/// only this layer is installed, so the engine behaves the same either way.
pub fn forward_to(bus: Bus) {
    use tracing_subscriber::prelude::*;
    BUSES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(bus.downgrade());
    let _ = tracing_subscriber::registry().with(BusLayer).try_init();
}

/// The layer [`super::init`] installs.
pub struct BusLayer;

impl<S: Subscriber> Layer<S> for BusLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            _ => return,
        };
        if event.metadata().target().starts_with("mayu::events") {
            return;
        }
        let buses: Vec<Bus> = {
            let mut all = BUSES.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|b| b.upgrade().is_some());
            all.iter().filter_map(WeakBus::upgrade).collect()
        };
        if buses.is_empty() {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        // A child's own words (dnsmasq's) say whose they are.
        let target = event.metadata().target();
        let message = if target.starts_with("mayu") {
            text.line()
        } else {
            format!("{target}: {}", text.line())
        };
        for bus in buses {
            bus.publish(EventKind::Log {
                level,
                message: message.clone(),
            });
        }
    }
}

/// The record's message, then its other fields as `key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn line(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else {
            format!("{} ({})", self.message, self.fields)
        }
    }
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push_str(", ");
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            if !self.fields.is_empty() {
                self.fields.push_str(", ");
            }
            let _ = write!(self.fields, "{}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn warnings_and_errors_become_log_events_with_their_fields() {
        let bus = Bus::new();
        let mut rx = bus.subscribe();
        forward_to(bus.clone());
        let subscriber = tracing_subscriber::registry().with(BusLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not forwarded");
            tracing::warn!(file = "/run/mayu/hosts", "cannot write the hostsfile");
            tracing::error!(target: "mayu::events", "the echo is not forwarded");
            tracing::error!("commit failed");
        });
        let mut got = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            if let EventKind::Log { level, message } = &ev.kind {
                got.push((*level, message.clone()));
            }
        }
        assert_eq!(
            got,
            vec![
                (
                    LogLevel::Warn,
                    "cannot write the hostsfile (file=/run/mayu/hosts)".to_string()
                ),
                (LogLevel::Error, "commit failed".to_string()),
            ]
        );
    }
}
