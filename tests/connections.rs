//! Bounded connections over real loopback listeners started by `mayu::services::start`:
//! slow and silent clients are disconnected (plain and TLS), a boot port held open by idle
//! connections stays capped while the API keeps answering, and event-stream clients that stop
//! reading are dropped, counted, and resume with `Last-Event-ID` without a gap.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::time::Duration;

use mayu::events::EventKind;
use support::{Lab, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait in these tests is for a condition; this only bounds how long a broken server
/// can keep a test hanging.
const PATIENCE: Duration = Duration::from_secs(60);

impl Running {
    /// The value of one series (`name{labels}` exactly as written) in `/metrics`.
    async fn metric(&self, series: &str) -> u64 {
        let text = reqwest::get(format!("http://{}/metrics", self.api))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .parse()
            .unwrap()
    }

    /// Scrapes `series` until `pred` holds for it; returns the value that did.
    async fn wait_metric(&self, series: &str, pred: impl Fn(u64) -> bool) -> u64 {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let v = self.metric(series).await;
            if pred(v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed at {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reads until the server closes the connection (EOF or reset); returns what arrived.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; got {:?}",
                String::from_utf8_lossy(&got[..got.len().min(200)])
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn http_keys(keys: &str) -> (&'static str, String) {
    ("api: 127.0.0.1:0", format!("api: 127.0.0.1:0\n  {keys}\n "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_disconnected() {
    let (from, to) = http_keys("header_timeout: 1s\n  body_timeout: 1s");
    let lab = Lab::new(&[(from, &to)]);
    let run = Running::start(&lab).await;

    for (port, addr) in [("boot", run.boot), ("api", run.api)] {
        // Slowloris: half a header, then nothing.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            .await
            .unwrap();
        let got = until_closed(&mut s).await;
        assert!(
            !String::from_utf8_lossy(&got).contains("200 OK"),
            "{port}: a partial header was answered"
        );
        // Silent: connects and never sends a byte.
        let mut s = TcpStream::connect(addr).await.unwrap();
        until_closed(&mut s).await;
        // Idle keep-alive: one answered request, then the connection sits unused.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut s).await;
        assert!(
            String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
            "{port}: {:?}",
            String::from_utf8_lossy(&got)
        );
        let timeouts = run
            .metric(&format!(
                "mayu_http_header_timeouts_total{{listener=\"{port}\"}}"
            ))
            .await;
        assert!(timeouts >= 3, "{port}: {timeouts} header timeouts counted");
    }

    // A body sent a few bytes short of its Content-Length is refused, not waited on forever.
    let mut s = TcpStream::connect(run.api).await.unwrap();
    let req = format!(
        "PATCH /api/v1/machines/m1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"notes\": ",
        run.token()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let got = String::from_utf8_lossy(&until_closed(&mut s).await).to_string();
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("did not arrive within 1s"), "{got}");

    // Nothing above stopped either port from serving.
    for addr in [run.boot, run.api] {
        let r = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_cannot_hold_the_tls_handshake() {
    let (from, to) = http_keys("header_timeout: 1s\n  tls: { cert: api.crt, key: api.key }");
    let lab = Lab::new(&[(from, &to)]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    lab.write("api.crt", &cert.pem());
    lab.write("api.key", &key.serialize_pem());
    let run = Running::start(&lab).await;

    let mut s = TcpStream::connect(run.api).await.unwrap();
    until_closed(&mut s).await;
    // Half a ClientHello record header, then nothing.
    let mut s = TcpStream::connect(run.api).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    until_closed(&mut s).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://{}/api/v1/health", run.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let scraped = client
        .get(format!("https://{}/metrics", run.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The two above; an idle keep-alive connection of this client may add one more.
    let timeouts: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("mayu_http_header_timeouts_total{listener=\"api\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(timeouts >= 2, "{scraped}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_over_the_boot_cap_do_not_starve_the_api() {
    const CAP: u64 = 50;
    let (from, to) = http_keys(&format!("max_boot_connections: {CAP}"));
    let lab = Lab::new(&[(from, &to)]);
    let run = Running::start(&lab).await;
    assert_eq!(
        run.metric("mayu_http_connection_limit{listener=\"boot\"}")
            .await,
        CAP
    );

    // Four times the cap, each connected and silent.
    let mut idle = Vec::new();
    for _ in 0..4 * CAP {
        idle.push(TcpStream::connect(run.boot).await.unwrap());
    }
    run.wait_metric("mayu_http_connections_open{listener=\"boot\"}", |n| {
        n == CAP
    })
    .await;
    assert!(
        run.metric("mayu_http_connection_limit_reached_total{listener=\"boot\"}")
            .await
            >= 1
    );

    // The operator API answers while the boot port is full.
    let health = reqwest::get(format!("http://{}/api/v1/health", run.api))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // And the cap held: the rest are waiting in the backlog, not open.
    assert_eq!(
        run.metric("mayu_http_connections_open{listener=\"boot\"}")
            .await,
        CAP
    );

    // Once the idle clients leave, machines are served again.
    drop(idle);
    let client = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let r = client
        .get(format!("http://{}/healthz", run.boot))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    run.stop().await;
}

/// Decodes a chunked HTTP response's body as far as it arrived.
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let text = raw;
    let start = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let mut rest = &text[start..];
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let Ok(len) = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
        else {
            return body;
        };
        rest = &rest[eol + 2..];
        let take = len.min(rest.len());
        body.extend_from_slice(&rest[..take]);
        if take < len || len == 0 {
            return body;
        }
        rest = &rest[(len + 2).min(rest.len())..];
    }
}

/// The complete SSE messages in `body` as (event, id), a trailing partial one left out.
fn messages(body: &[u8]) -> Vec<(String, Option<u64>)> {
    let text = String::from_utf8_lossy(body);
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    blocks.pop(); // whatever follows the last blank line is incomplete
    blocks
        .into_iter()
        .filter_map(|b| {
            let mut event = String::new();
            let mut id = None;
            for line in b.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                }
            }
            (!event.is_empty()).then_some((event, id))
        })
        .collect()
}

async fn subscribe(run: &Running, last_event_id: Option<u64>) -> TcpStream {
    let mut s = TcpStream::connect(run.api).await.unwrap();
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Accept: text/event-stream\r\n{resume}\r\n",
        run.token()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_clients_that_stop_reading_are_dropped_and_resume() {
    const CLIENTS: u64 = 20;
    let lab = Lab::new(&[]);
    let run = Running::start(&lab).await;
    let subscribers = "mayu_sse_subscribers";
    let before = run.metric(subscribers).await;
    assert_eq!(before, 0);

    let mut stuck = Vec::new();
    for _ in 0..CLIENTS {
        stuck.push(subscribe(&run, None).await);
    }
    run.wait_metric(subscribers, |n| n == CLIENTS).await;

    // Publish until every subscriber has fallen behind; then each is let go.
    let message = "x".repeat(2048);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut published = 0u64;
    while run.metric("mayu_sse_dropped_total").await < CLIENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscribers still held after {published} events"
        );
        for _ in 0..32 {
            run.engine.bus().publish(EventKind::Log {
                level: mayu::events::LogLevel::Info,
                message: message.clone(),
            });
            published += 1;
        }
    }
    run.wait_metric(subscribers, |n| n == 0).await;
    assert_eq!(
        run.metric("mayu_http_connections_dropped_total{listener=\"api\"}")
            .await,
        CLIENTS
    );

    // Each stuck client's connection is closed once it has had what it was sent.
    let mut last_ids = Vec::new();
    for s in &mut stuck {
        let raw = until_closed(s).await;
        let got = messages(&dechunk(&raw));
        let ids: Vec<u64> = got.iter().filter_map(|(_, id)| *id).collect();
        assert!(
            got.iter().all(|(e, _)| e != "gap") && ids.windows(2).all(|w| w[1] == w[0] + 1),
            "a hole in what a stuck client was sent: {got:?}"
        );
        last_ids.push(ids.last().copied());
    }
    println!("published {published}; last ids seen by stuck clients: {last_ids:?}");

    // A dropped client resumes where it stopped: the next event is the one after its last.
    let last = last_ids
        .iter()
        .flatten()
        .min()
        .copied()
        .expect("a stuck client received at least one whole event");
    let mut resumed = subscribe(&run, Some(last)).await;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let first = loop {
        let n = tokio::time::timeout(PATIENCE, resumed.read(&mut buf))
            .await
            .expect("the replay arrives")
            .unwrap();
        assert!(n > 0, "the resumed stream closed early");
        raw.extend_from_slice(&buf[..n]);
        if let Some(first) = messages(&dechunk(&raw)).into_iter().next() {
            break first;
        }
    };
    assert_eq!(first, ("log".to_string(), Some(last + 1)));

    // A client that simply leaves is no longer counted either.
    run.wait_metric(subscribers, |n| n == 1).await;
    drop(resumed);
    run.wait_metric(subscribers, |n| n == 0).await;
    run.stop().await;
}

#[test]
fn limits_are_configurable_and_zero_is_refused() {
    let path = support::repo().join("config.yaml");
    let shipped = std::fs::read_to_string(&path).unwrap();
    let c = mayu::Config::parse(&path, &shipped).unwrap();
    assert_eq!(c.http.header_timeout, Duration::from_secs(30));
    assert_eq!(c.http.body_timeout, Duration::from_secs(30));
    assert_eq!(c.http.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.http.max_boot_connections, None);

    let with = |keys: &str| {
        let text = shipped.replacen(
            "  api: 127.0.0.1:4080",
            &format!("  api: 127.0.0.1:4080\n  {keys}\n "),
            1,
        );
        assert_ne!(text, shipped);
        mayu::Config::parse(&path, &text)
    };
    let c = with("max_boot_connections: 50\n  idle_timeout: 2m").unwrap();
    assert_eq!(mayu::listen::Limits::boot(&c.http).max_connections, 50);
    assert_eq!(c.http.idle_timeout, Duration::from_secs(120));

    for (keys, reason) in [
        ("header_timeout: 0s", "too short"),
        ("body_timeout: soon", "not a duration"),
        ("max_boot_connections: 0", "nonzero"),
    ] {
        let err = with(keys).unwrap_err().to_string();
        assert!(err.contains(reason), "{keys}: {err}");
        assert!(err.contains("config.yaml:"), "{keys}: {err}");
    }
}

/// A stop is bounded whatever the clients do: a machine that stops reading in the middle of a
/// large asset holds its response open, and the stop drops it once the grace runs out instead
/// of waiting for the idle timeouts (a minute or two) or forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_a_client_that_stopped_reading() {
    let lab = Lab::new(&[]);
    let dir = lab.path().join("images/discovery");
    std::fs::create_dir_all(&dir).unwrap();
    let big = std::fs::File::create(dir.join("big.img")).unwrap();
    big.set_len(64 << 20).unwrap();
    let run = Running::start(&lab).await;
    let mut s = TcpStream::connect(run.boot).await.unwrap();
    s.write_all(b"GET /assets/discovery/big.img HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    // The client reads nothing more; its socket buffers fill and the server's writes stall.
    run.stop().await;
    drop(s);
}
