//! Several boot servers on etcd at scale (issue 16, item 7): 10,000 machines and three real
//! `mayu --headless` servers on a real three-member etcd on loopback, beside one server with
//! the local inventory measured in the same run as the baseline.
//!
//! Measured: start-up (spawn until the API answers and holds every machine), a storm of 1,000
//! new machines asking for their iPXE script at once (spread over the servers) — until every
//! answer, and until every server holds all of them (the watch keeping up) — and each server's
//! resident memory after it. Prints a Markdown table (BENCHMARKS.md keeps it). No thresholds.
//!
//! `cargo bench -p mayu-console --features etcd --bench cluster` (needs Debian's etcd).

#![allow(clippy::unwrap_used)] // a benchmark stops at the first surprise, as tests do

#[path = "../../tests/support/etcd.rs"]
#[allow(dead_code)]
mod etcd;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MACHINES: u32 = 10_000;
const STORM: u32 = 1_000;
const CONCURRENCY: usize = 64;
const WAIT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.unwrap_or_else(|e| panic!("{e}"));
        if e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// A server's folder: shipped templates, stand-in images and boot programs, DHCP off.
fn folder(dir: &Path, boot: u16, api: u16, cluster: Option<(&str, &[String])>) {
    for sub in ["templates", "templates/snippets"] {
        if repo().join(sub).is_dir() {
            copy_dir(&repo().join(sub), &dir.join(sub));
        }
    }
    for (image, files) in [
        (
            "flatcar",
            &[
                "flatcar_production_pxe.vmlinuz",
                "flatcar_production_pxe_image.cpio.gz",
            ][..],
        ),
        ("discovery", &["vmlinuz", "initrd.img"][..]),
    ] {
        std::fs::create_dir_all(dir.join("images").join(image)).unwrap_or_else(|e| panic!("{e}"));
        for f in files {
            std::fs::write(dir.join("images").join(image).join(f), "stand-in")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    std::fs::create_dir_all(dir.join("tftproot")).unwrap_or_else(|e| panic!("{e}"));
    for f in ["undionly.kpxe", "ipxe.efi"] {
        std::fs::write(dir.join("tftproot").join(f), "a boot program")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut text = std::fs::read_to_string(repo().join("config.yaml")).unwrap_or_default();
    text = text.replace("    mode: full", "    mode: off").replace(
        "  boot: 0.0.0.0:4081          # machine-facing\n  api: 127.0.0.1:4080         # operator-facing\n",
        &format!("  boot: 127.0.0.1:{boot}\n  api: 127.0.0.1:{api}\n"),
    );
    if let Some((name, endpoints)) = cluster {
        text = text.replacen(
            "templates_env:",
            &format!(
                "cluster:\n  etcd: [{}]\n  name: {name}\n  prefix: /mayu-bench\ntemplates_env:",
                endpoints.join(", ")
            ),
            1,
        );
    }
    std::fs::write(dir.join("config.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
}

/// `count` machine files in `dir/inventory`, as a long-running site would have.
fn seed(dir: &Path, count: u32) {
    let inv = dir.join("inventory");
    std::fs::create_dir_all(&inv).unwrap_or_else(|e| panic!("{e}"));
    let now = time::OffsetDateTime::now_utc();
    for i in 0..count {
        let id: mayu::machine::MachineId = format!("sn-s{i:05}")
            .parse()
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut m = mayu::machine::Machine::new(id.clone(), String::new(), now);
        let b = i.to_be_bytes();
        m.macs.push(mayu::machine::Mac::from_octets([
            0x52, 0x54, 0x01, b[1], b[2], b[3],
        ]));
        m.serial = Some(format!("SN-S{i:05}"));
        let bytes = mayu::inventory::files::encode(&m).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(inv.join(format!("{id}.json")), bytes).unwrap_or_else(|e| panic!("{e}"));
    }
}

struct Server {
    name: String,
    child: Child,
    boot: u16,
    api: u16,
}

impl Server {
    fn start(name: &str, dir: &Path, boot: u16, api: u16) -> Server {
        let log = std::fs::File::create(dir.join("mayu.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_mayu"))
            .args(["--headless", "--config"])
            .arg(dir.join("config.yaml"))
            .stdout(Stdio::from(
                log.try_clone().unwrap_or_else(|e| panic!("{e}")),
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("mayu: {e}"));
        Server {
            name: name.into(),
            child,
            boot,
            api,
        }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
            .unwrap_or(0.0)
    }

    /// The machines the server holds (`/api/v1/ready`), once it answers.
    async fn machines(&self, client: &reqwest::Client) -> Option<u64> {
        let v: serde_json::Value = client
            .get(format!("http://127.0.0.1:{}/api/v1/ready", self.api))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["machines"].as_u64()
    }

    async fn wait_for(&self, client: &reqwest::Client, count: u64) -> Duration {
        let started = Instant::now();
        loop {
            if self.machines(client).await.is_some_and(|n| n >= count) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < WAIT,
                "{} never held {count} machines",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `STORM` new machines asking for their script at once, round-robin over `boots`.
async fn storm(client: &reqwest::Client, boots: &[u16], tag: u8) -> Duration {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next, boots) = (client.clone(), next.clone(), boots.to_vec());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= STORM {
                    return;
                }
                let port = boots[i as usize % boots.len()];
                let url = format!(
                    "http://127.0.0.1:{port}/ipxe?mac=52:54:{tag:02x}:00:{:02x}:{:02x}&serial=SN-N{tag}-{i:04}",
                    i >> 8,
                    i & 0xff
                );
                let resp = client.get(url).send().await.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    started.elapsed()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if etcd::missing("cluster bench") {
        return;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // Baseline: one server, the local inventory (files + git) with the same machines.
    let local = work.path().join("local");
    let (boot, api) = (free_port(), free_port());
    folder(&local, boot, api, None);
    seed(&local, MACHINES);
    let spawned = Instant::now();
    let server = Server::start("local", &local, boot, api);
    server.wait_for(&client, u64::from(MACHINES)).await;
    let local_start = spawned.elapsed();
    let local_storm = storm(&client, &[boot], 0x10).await;
    server.wait_for(&client, u64::from(MACHINES + STORM)).await;
    let local_rss = server.rss_mib();
    drop(server);

    // The cluster: the same machines pushed into a real 3-member etcd, three servers.
    let etcd = etcd::Etcd::start();
    let endpoints = etcd.endpoints();
    std::fs::write(
        local.join("push.yaml"),
        std::fs::read_to_string(local.join("config.yaml"))
            .unwrap_or_default()
            .replacen(
                "templates_env:",
                &format!(
                    "cluster:\n  etcd: [{}]\n  name: pusher\n  prefix: /mayu-bench\ntemplates_env:",
                    endpoints.join(", ")
                ),
                1,
            ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pushed = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mayu"))
        .args(["inventory", "push", "--config"])
        .arg(local.join("push.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "push: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let push_time = pushed.elapsed();
    let total = u64::from(MACHINES + STORM);

    let mut servers = Vec::new();
    let mut starts = Vec::new();
    for name in ["site-a", "site-b", "site-c"] {
        let dir = work.path().join(name);
        let (boot, api) = (free_port(), free_port());
        folder(&dir, boot, api, Some((name, &endpoints)));
        let spawned = Instant::now();
        let server = Server::start(name, &dir, boot, api);
        server.wait_for(&client, total).await;
        starts.push(spawned.elapsed());
        servers.push(server);
    }
    let boots: Vec<u16> = servers.iter().map(|s| s.boot).collect();
    let answered = Instant::now();
    let cluster_storm = storm(&client, &boots, 0x20).await;
    let mut lags = Vec::new();
    for s in &servers {
        s.wait_for(&client, total + u64::from(STORM)).await;
        lags.push(answered.elapsed().saturating_sub(cluster_storm));
    }
    // A restart: the mirror is in step, only etcd is read.
    let dir_a = work.path().join("site-a");
    let (boot_a, api_a) = (servers[0].boot, servers[0].api);
    drop(servers.remove(0));
    let spawned = Instant::now();
    let again = Server::start("site-a", &dir_a, boot_a, api_a);
    again.wait_for(&client, total + u64::from(STORM)).await;
    let restart = spawned.elapsed();
    servers.insert(0, again);

    rows.push((
        format!("start-up with {MACHINES} machines"),
        secs(local_start),
        format!(
            "{} (first start, mirror synced) / {} / {}; restart {}",
            secs(starts[0]),
            secs(starts[1]),
            secs(starts[2]),
            secs(restart)
        ),
    ));
    rows.push((
        format!("{STORM} new machines at once ({CONCURRENCY} in flight): all answered"),
        secs(local_storm),
        format!("{} (spread over the three)", secs(cluster_storm)),
    ));
    rows.push((
        "every server holds the storm's machines, after the last answer".into(),
        "—".into(),
        lags.iter()
            .map(|l| secs(*l))
            .collect::<Vec<_>>()
            .join(" / "),
    ));
    rows.push((
        "resident memory after the storm".into(),
        format!("{local_rss:.0} MiB"),
        servers
            .iter()
            .map(|s| format!("{:.0} MiB", s.rss_mib()))
            .collect::<Vec<_>>()
            .join(" / "),
    ));
    rows.push((
        format!("`mayu inventory push` of {MACHINES} machines"),
        "—".into(),
        secs(push_time),
    ));

    println!("| measure | one server, local inventory | three servers on etcd (a / b / c) |");
    println!("|---|---|---|");
    for (what, local, cluster) in rows {
        println!("| {what} | {local} | {cluster} |");
    }
    drop(servers);
    drop(etcd);
}
