//! Memory under event-stream clients that never read: the process's RSS before, while N such
//! clients are subscribed and events are published until every one has fallen behind and been
//! dropped, and after they leave. A scripted check, not a pass/fail test: the numbers depend on
//! the allocator and the machine.
//!
//! Run: `cargo bench --bench connections` (MAYU_BENCH_SSE_CLIENTS overrides the 300 clients,
//! MAYU_BENCH_EVENT_BYTES the 2,048-byte event message).

use std::time::{Duration, Instant};

use mayu::events::EventKind;
use mayu::{Config, Engine};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Resident set size in MiB, from /proc/self/status.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

async fn metric(api: std::net::SocketAddr, series: &str) -> u64 {
    let text = reqwest::get(format!("http://{api}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .expect("series")
}

#[tokio::main]
async fn main() {
    let clients = env("MAYU_BENCH_SSE_CLIENTS", 300) as u64;
    let event_bytes = env("MAYU_BENCH_EVENT_BYTES", 2048);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("images/x")).expect("images");
    std::fs::create_dir_all(dir.path().join("templates")).expect("templates");
    std::fs::write(dir.path().join("templates/x.ipxe"), "#!ipxe\n").expect("template");
    std::fs::write(
        dir.path().join("config.yaml"),
        "network: { address: 10.77.0.1, dhcp: { mode: off } }\n\
         http: { boot: \"127.0.0.1:0\", api: \"127.0.0.1:0\", max_api_connections: 100000 }\n\
         audit: { git: false }\n\
         assignment: auto\n\
         profiles:\n\
         - { name: worker, image: x, templates: { ipxe: x.ipxe } }\n",
    )
    .expect("config");
    let config = Config::load(&dir.path().join("config.yaml")).expect("config");
    let engine = Engine::open(config).expect("engine");
    let cancel = CancellationToken::new();
    let services = mayu::services::start(engine.clone(), cancel.clone())
        .await
        .expect("services");
    let api = services.api_addr;
    let token = std::fs::read_to_string(services.admin_token_file.as_ref().expect("token"))
        .expect("token file")
        .trim()
        .to_string();
    let message = "x".repeat(event_bytes);
    let publish = |n: usize| {
        for _ in 0..n {
            engine.bus().publish(EventKind::Log {
                level: mayu::events::LogLevel::Info,
                message: message.clone(),
            });
        }
    };
    // Fill the bus's replay ring first, so what follows is per-client memory only.
    publish(4096);
    let before = rss_mib();

    let mut stuck = Vec::new();
    for _ in 0..clients {
        let mut s = TcpStream::connect(api).await.expect("connect");
        let req = format!(
            "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("request");
        stuck.push(s);
    }
    while metric(api, "mayu_sse_subscribers").await < clients {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    let mut peak = rss_mib();
    let mut published = 0;
    while metric(api, "mayu_sse_dropped_total").await < clients {
        publish(64);
        published += 64;
        peak = peak.max(rss_mib());
    }
    let fell_behind = t.elapsed();
    while metric(api, "mayu_sse_subscribers").await > 0 {
        peak = peak.max(rss_mib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dropped = rss_mib();
    drop(stuck);
    // Let the server see the sockets close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_mib();
    // What the allocator keeps of freed memory, as against memory still in use.
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe { libc::malloc_trim(0) };
    let trimmed = rss_mib();

    println!(
        "sse/{clients} clients that never read, {event_bytes}-byte events, {published} published"
    );
    println!("  rss before subscribing:       {before:8.1} MiB");
    println!("  rss peak while subscribed:    {peak:8.1} MiB");
    println!("  rss after all were dropped:   {dropped:8.1} MiB");
    println!("  rss after the clients closed: {after:8.1} MiB");
    println!(
        "  rss after malloc_trim(0):     {trimmed:8.1} MiB (the rest was free but kept by glibc)"
    );
    println!("  all fell behind after {fell_behind:?}; dropped 5 s later (DROP_GRACE)");
    cancel.cancel();
    services.stopped().await;
}
