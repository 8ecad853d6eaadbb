//! The event stream: bus events as Server-Sent Events, numbered by their sequence so a client
//! resumes with `Last-Event-ID` (or `?after=N`) and loses nothing the bus still keeps.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_stream::wrappers::BroadcastStream;

use super::auth::ReadAccess;
use super::{ApiError, ApiQuery, ApiState};
use crate::events::Event;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// resume after this sequence number (for clients that cannot set `Last-Event-ID`).
    pub after: Option<u64>,
}

/// The event as sent: its JSON plus a one-line `summary`, with no machine token in it.
pub fn event_json(ev: &Event) -> Value {
    let mut v = serde_json::to_value(ev).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        if let Some(m) = o.get_mut("machine").and_then(|m| m.as_object_mut()) {
            m.remove("token");
        }
        o.insert("summary".into(), json!(ev.summary()));
    }
    v
}

fn to_sse(ev: &Event) -> SseEvent {
    let v = event_json(ev);
    let kind = v
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("event")
        .to_string();
    SseEvent::default()
        .id(ev.seq.to_string())
        .event(kind)
        .data(v.to_string())
}

/// `GET /api/v1/events`. Without a resume point only new events are sent. A client that falls
/// too far behind is disconnected; it reconnects with `Last-Event-ID` and gets the replay.
pub async fn stream(
    _: ReadAccess,
    State(st): State<ApiState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let from_header = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Last-Event-ID must be the number of an event this server sent".into(),
                    )
                })?,
        ),
    };
    let after = from_header.or(q.after);
    let (past, rx) = st.engine.bus().subscribe_from(after);
    let past: Vec<Arc<Event>> = if after.is_some() { past } else { Vec::new() };
    // Tell the client when the replay buffer no longer reaches back to where it left off.
    let gap = match (after, past.first()) {
        (Some(a), Some(first)) if first.seq > a + 1 => Some(
            SseEvent::default().event("gap").data(
                json!({"missed_after": a, "resumed_at": first.seq, "summary":
                    format!("events {}–{} are no longer kept", a + 1, first.seq - 1)})
                .to_string(),
            ),
        ),
        _ => None,
    };
    let replay = stream::iter(
        gap.into_iter()
            .chain(past.iter().map(|e| to_sse(e)))
            .collect::<Vec<_>>(),
    );
    let live = BroadcastStream::new(rx)
        .scan((), |_, r| futures_util::future::ready(r.ok()))
        .map(|e| to_sse(&e));
    let s = replay
        .chain(live)
        .map(Ok)
        .take_until(st.shutdown.clone().cancelled_owned());
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}
