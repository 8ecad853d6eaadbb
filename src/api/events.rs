//! The event stream: bus events as Server-Sent Events, numbered by their sequence so a client
//! resumes with `Last-Event-ID` (or `?after=N`) and loses nothing the bus still keeps.
//!
//! Each subscriber has a bounded queue filled by its own task straight off the bus, whether or
//! not the client reads. A client that lets [`CLIENT_BUFFER`] events pile up has fallen behind:
//! its stream ends and its connection closes after it (a client that still reads sees a clean
//! end and resumes with `Last-Event-ID`); if the connection has not ended within [`DROP_GRACE`]
//! the client is not reading and the connection is dropped, so it holds no memory for long.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Extension;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::auth::ReadAccess;
use super::{ApiError, ApiQuery, ApiState};
use crate::events::Event;
use crate::listen::{ConnectionHandle, HttpStats, SubscriberGuard};

/// Events a subscriber may have waiting before it counts as fallen behind. Less than the bus's
/// replay buffer, so a dropped client that reconnects at once resumes without a gap.
pub const CLIENT_BUFFER: usize = 1024;
/// How often an idle stream sends a comment, so proxies and the server's own idle timeout see
/// it alive (more often when the listener's idle timeout is shorter).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a subscriber that fell behind has to take the end of its stream before its
/// connection is dropped.
pub const DROP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// resume after this sequence number (for clients that cannot set `Last-Event-ID`).
    pub after: Option<u64>,
}

/// The event as sent: its JSON plus a one-line `summary`, with no machine token in it.
pub fn event_json(ev: &Event) -> Value {
    let mut v = match serde_json::to_value(ev) {
        Ok(v) => v,
        // Said, not dropped: the client learns an event went missing and which.
        Err(e) => {
            tracing::error!(seq = ev.seq, error = %e, "an event could not be serialised");
            json!({
                "seq": ev.seq,
                "type": "error",
                "detail": format!("event {} could not be serialised: {e}", ev.seq),
            })
        }
    };
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
    conn: Option<Extension<ConnectionHandle>>,
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
    // The replay is serialised as it is sent, not all at once per client.
    let replay = stream::iter(gap).chain(stream::iter(past).map(|e| to_sse(&e)));
    let (tx, queue) = mpsc::channel(CLIENT_BUFFER);
    let behind = CancellationToken::new();
    let stats = st.metrics.http.clone();
    let keep_alive = conn.as_ref().map_or(KEEP_ALIVE, |Extension(c)| {
        KEEP_ALIVE.min(c.idle_timeout() / 2)
    });
    tokio::spawn(forward(Forward {
        bus: rx,
        tx,
        behind: behind.clone(),
        conn: conn.map(|Extension(c)| c),
        shutdown: st.shutdown.clone(),
        _subscriber: stats.sse_subscriber(),
        stats,
    }));
    let live = ReceiverStream::new(queue).map(|e| to_sse(&e));
    let s = replay
        .chain(live)
        .map(Ok)
        .take_until(behind.cancelled_owned())
        .take_until(st.shutdown.clone().cancelled_owned());
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(keep_alive)))
}

/// One subscriber's feed from the bus into its queue.
struct Forward {
    bus: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Arc<Event>>,
    /// cancelled when the subscriber fell behind: ends its stream.
    behind: CancellationToken,
    /// the subscriber's connection (absent when the router runs without a listener).
    conn: Option<ConnectionHandle>,
    shutdown: CancellationToken,
    stats: HttpStats,
    /// counts the subscriber until this task ends.
    _subscriber: SubscriberGuard,
}

async fn forward(mut f: Forward) {
    loop {
        let ev = tokio::select! {
            // The response (and its queue) is gone: the client left.
            _ = f.tx.closed() => return,
            _ = f.shutdown.cancelled() => return,
            r = f.bus.recv() => match r {
                Ok(ev) => ev,
                // This task reads the bus at once, so lag means the runtime starved it; the
                // client's stream has a hole either way.
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        match f.tx.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => break,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
    // Fell behind: stop holding bus events for it and end its stream.
    let Forward {
        bus,
        tx,
        behind,
        conn,
        stats,
        ..
    } = f;
    drop(bus);
    behind.cancel();
    stats.sse_dropped();
    tracing::debug!("event-stream client fell behind; ending its stream");
    if let Some(conn) = conn {
        // A client that reads takes the end, and the connection closes after it; one that does
        // not read cannot be told anything, and what was queued for it would wait in the
        // server's buffers, so its connection goes.
        conn.finish();
        tokio::select! {
            _ = conn.ended() => {}
            _ = tokio::time::sleep(DROP_GRACE) => conn.close(),
        }
    }
    drop(tx);
}
