//! `mayu::client`'s event-stream reader against a real HTTP server on loopback whose handler
//! writes the body in pieces the test chooses: a character split between two reads arrives
//! whole, every event of a stream cut into many small chunks arrives exactly once, and the
//! resume point goes out as `Last-Event-ID`.
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use mayu::client::{Client, EventStream, SseMessage};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;

/// Longest any single step may take before the test gives up (a hang, never a measurement).
const WAIT: Duration = Duration::from_secs(30);

type Chunks = mpsc::UnboundedSender<Result<Bytes, Infallible>>;

/// What the server hands the test for each request: the request's `Last-Event-ID` and the
/// sender of its body's chunks (each sent chunk is one write, flushed while the body waits for
/// the next).
struct Request {
    last_event_id: Option<String>,
    body: Chunks,
}

#[derive(Clone)]
struct Served(mpsc::UnboundedSender<Request>);

async fn events(State(served): State<Served>, headers: HeaderMap) -> Response {
    let (tx, rx) = mpsc::unbounded_channel();
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_string());
    served
        .0
        .send(Request {
            last_event_id,
            body: tx,
        })
        .unwrap();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(UnboundedReceiverStream::new(rx)))
        .unwrap()
}

struct Server {
    url: String,
    requests: mpsc::UnboundedReceiver<Request>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve() -> Server {
    let (tx, requests) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/api/v1/events", get(events))
        .with_state(Served(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Server {
        url,
        requests,
        stop,
        task,
    }
}

impl Server {
    /// Opens the client's stream (resuming after `after`) and the server's side of it.
    async fn open(&mut self, after: Option<u64>) -> (EventStream, Request) {
        let client = Client::new(&self.url, Some("t".into()), None).unwrap();
        let (stream, req) = tokio::join!(client.events(after), async {
            tokio::time::timeout(WAIT, self.requests.recv())
                .await
                .unwrap()
        });
        (stream.unwrap(), req.unwrap())
    }

    async fn stop(self) {
        drop(self.requests);
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn next(s: &mut EventStream) -> Option<SseMessage> {
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("the next message arrives")
        .unwrap()
}

fn send(body: &Chunks, bytes: &[u8]) {
    body.send(Ok(Bytes::copy_from_slice(bytes))).unwrap();
}

fn event(id: u64, summary: &str) -> String {
    let data = serde_json::json!({"at": "2026-12-02T10:00:00Z", "summary": summary});
    format!("id: {id}\nevent: log\ndata: {data}\n\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_split_between_two_reads_arrives_whole() {
    let mut server = serve().await;
    let (mut stream, req) = server.open(None).await;
    assert_eq!(req.last_event_id, None);

    let first = event(1, "ready");
    let second = event(2, "café → rack 4");
    // The second event's bytes up to the middle of `é` (two bytes: C3 A9) go out with the
    // first event; the rest only once the client has read the first.
    let cut = second.find('é').unwrap() + 1;
    assert!(!second.is_char_boundary(cut));
    let mut piece = first.into_bytes();
    piece.extend_from_slice(&second.as_bytes()[..cut]);
    send(&req.body, &piece);

    let m = next(&mut stream).await.unwrap();
    assert_eq!((m.id, m.event.as_str()), (Some(1), "log"));
    assert_eq!(m.line().summary, "ready");
    // The client has read the first write (it delivered the first event from it), and the
    // rest of `é` has not been sent yet: the next read starts in the middle of the character.
    send(&req.body, &second.as_bytes()[cut..]);
    let m = next(&mut stream).await.unwrap();
    assert_eq!(m.id, Some(2));
    assert_eq!(m.line().summary, "café → rack 4");
    assert!(!m.data.contains('\u{fffd}'), "{}", m.data);

    drop(req.body);
    assert_eq!(
        next(&mut stream).await,
        None,
        "the server closed the stream"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_chunks_deliver_each_event_once() {
    let mut server = serve().await;
    let (mut stream, req) = server.open(Some(41)).await;
    assert_eq!(req.last_event_id.as_deref(), Some("41"));

    const EVENTS: u64 = 300;
    let mut body = Vec::new();
    for id in 42..42 + EVENTS {
        if id % 50 == 0 {
            // a keep-alive between events, as the server sends when idle
            body.extend_from_slice(b": keep-alive\n\n");
        }
        // CRLF line ends for some, as a proxy may write them
        let e = event(id, &format!("machine ü{id} → phase «ipxe»"));
        let e = if id % 3 == 0 {
            e.replace('\n', "\r\n")
        } else {
            e
        };
        body.extend_from_slice(e.as_bytes());
    }
    // 7-byte writes: cuts fall inside characters, field names, CRLFs and blank lines alike.
    let writes = body.chunks(7).count();
    assert!(writes > 1000, "{writes}");
    for piece in body.chunks(7) {
        send(&req.body, piece);
    }
    drop(req.body);

    let mut seen = Vec::new();
    while let Some(m) = next(&mut stream).await {
        let id = m.id.unwrap();
        assert_eq!(m.line().summary, format!("machine ü{id} → phase «ipxe»"));
        seen.push(id);
    }
    let expected: Vec<u64> = (42..42 + EVENTS).collect();
    assert_eq!(seen, expected, "each event once, in order");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_one_at_a_time_arrive_one_at_a_time() {
    let mut server = serve().await;
    let (mut stream, req) = server.open(None).await;
    // In lock step: each event is sent in three writes only after the previous one arrived,
    // so every event is assembled from reads of its own.
    for id in 1..=50u64 {
        let e = event(id, &format!("→ step {id} ✓"));
        let bytes = e.as_bytes();
        let a = e.find('→').unwrap() + 1;
        let b = e.find('✓').unwrap() + 2;
        send(&req.body, &bytes[..a]);
        send(&req.body, &bytes[a..b]);
        send(&req.body, &bytes[b..]);
        let m = next(&mut stream).await.unwrap();
        assert_eq!(m.id, Some(id));
        assert_eq!(m.line().summary, format!("→ step {id} ✓"));
    }
    drop(req.body);
    assert_eq!(next(&mut stream).await, None);
    server.stop().await;
}
