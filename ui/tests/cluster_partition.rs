//! A boot server cut off etcd (issue 16, "partitions"): server B runs as a real `mayu
//! --headless` in a network namespace this test creates, reaching the three-member etcd
//! through one veth link and its machines (this test) through another. Server A runs in this
//! process on loopback. With B's etcd link down in its namespace:
//! - a machine B already knows still gets its profile's script from B;
//! - a new machine is held in the wait loop, not registered;
//! - B's services and readiness show the outage; A goes on changing machines.
//!
//! With the link up again B catches up by itself: A's change reaches B, the held machine
//! registers on its next ask, and both servers hold every change.
//!
//! Needs root (namespaces) and etcd: under `CI=true` a missing piece fails the test.

#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "../../tests/support/etcd.rs"]
#[allow(dead_code)] // shared with the engine's cluster tests, which use all of it
mod etcd;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd::Etcd;

const WAIT: Duration = Duration::from_secs(90);
/// B's side of the client link, where this test reaches its ports.
const B_ADDR: &str = "10.232.0.2";
/// The root side of B's etcd link, where the forwarders to the etcd members listen.
const ETCD_ADDR: &str = "10.231.0.1";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace and its two links; removed on drop (with everything in it).
struct Net {
    ns: String,
    etcd_link: String,
}

impl Net {
    fn new() -> Net {
        let n = std::process::id() % 100_000;
        let ns = format!("mayu-part-{n}");
        let (e0, e1, c0, c1) = (
            format!("mpe{n}"),
            format!("mpf{n}"),
            format!("mpc{n}"),
            format!("mpd{n}"),
        );
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        sh(&["ip", "netns", "add", &ns]);
        let net = Net {
            ns: ns.clone(),
            etcd_link: e1.clone(),
        };
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        for (root, inner, root_ip, inner_ip) in [
            (&e0, &e1, "10.231.0.1/30", "10.231.0.2/30"),
            (&c0, &c1, "10.232.0.1/30", "10.232.0.2/30"),
        ] {
            sh(&[
                "ip", "link", "add", root, "type", "veth", "peer", "name", inner,
            ]);
            sh(&["ip", "link", "set", inner, "netns", &ns]);
            sh(&["ip", "addr", "add", root_ip, "dev", root]);
            sh(&["ip", "link", "set", root, "up"]);
            sh(&["ip", "-n", &ns, "addr", "add", inner_ip, "dev", inner]);
            sh(&["ip", "-n", &ns, "link", "set", inner, "up"]);
        }
        net
    }

    /// B's etcd link, down or up, inside its namespace.
    fn etcd_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        sh(&["ip", "-n", &self.ns, "link", "set", &self.etcd_link, state]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The root ends of the veths go with their peers.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Forwards `ETCD_ADDR:port` to the member at `127.0.0.1:port`, for each member: B reaches
/// etcd only through its etcd link.
async fn forward(ports: Vec<u16>) {
    for port in ports {
        let listener = tokio::net::TcpListener::bind((ETCD_ADDR, port))
            .await
            .unwrap();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }
}

/// A server's folder: the shipped templates, stand-in images and boot programs, and a
/// config joining the cluster as `name`.
fn folder(dir: &Path, name: &str, endpoints: &[String], http: &str) {
    support::copy_shipped(dir);
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
        for f in files {
            std::fs::write(dir.join("images").join(image).join(f), "stand-in").unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("tftproot")).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi"] {
        std::fs::write(dir.join("tftproot").join(f), "a boot program").unwrap();
    }
    let mut text = std::fs::read_to_string(support::repo().join("config.yaml")).unwrap();
    text = text
        .replace("    mode: full", "    mode: off")
        .replace(
            "  boot: 0.0.0.0:4081          # machine-facing\n  api: 127.0.0.1:4080         # operator-facing\n",
            http,
        )
        .replacen(
            "templates_env:",
            &format!(
                "cluster:\n  etcd: [{}]\n  name: {name}\n  prefix: /mayu-part\ntemplates_env:",
                endpoints.join(", ")
            ),
            1,
        );
    assert!(text.contains(http) && text.contains("cluster:"), "{text}");
    std::fs::write(dir.join("config.yaml"), text).unwrap();
}

/// Server B: `mayu --headless` inside the namespace; killed on drop.
struct ServerB {
    child: Child,
    dir: std::path::PathBuf,
}

impl ServerB {
    fn start(net: &Net, dir: &Path) -> ServerB {
        let log = std::fs::File::create(dir.join("b.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.ns,
                env!("CARGO_BIN_EXE_mayu"),
                "--headless",
            ])
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        ServerB {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("b.log")).unwrap_or_default()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("tokens.json.admin"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for ServerB {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`; fails with `what` (and B's log) after [`WAIT`].
async fn until<T, F, Fut>(what: &str, b: &ServerB, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; B's log:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `url` read as JSON with `token`: `None` while it does not answer so (a future owning its
/// request, for [`until`]'s checks).
fn get_json(
    client: &reqwest::Client,
    url: String,
    token: &str,
) -> impl std::future::Future<Output = Option<serde_json::Value>> {
    let request = client.get(url).bearer_auth(token);
    async move { request.send().await.ok()?.json().await.ok() }
}

fn script_url(mac: &str, serial: &str) -> String {
    format!("http://{B_ADDR}:4081/ipxe?mac={mac}&serial={serial}&arch=x86_64")
}

/// The iPXE script B answers the machine `mac` (serial `serial`) with; B must answer 200.
async fn script(client: &reqwest::Client, mac: &str, serial: &str) -> String {
    let resp = client.get(script_url(mac, serial)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{mac}'s script");
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_cut_off_etcd_serves_what_it_knows_holds_the_new_and_catches_up() {
    const TEST: &str = "a_server_cut_off_etcd_serves_what_it_knows_holds_the_new_and_catches_up";
    if etcd::missing(TEST) {
        return;
    }
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{TEST} cannot run in CI: needs root (network namespaces)"
        );
        eprintln!("{TEST}: not run: needs root (network namespaces)");
        return;
    }
    let etcd = Etcd::start();
    let endpoints = etcd.endpoints();
    let ports: Vec<u16> = endpoints
        .iter()
        .map(|e| e.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let net = Net::new();
    forward(ports.clone()).await;

    // Server A, here, straight to etcd on loopback.
    let dir_a = tempfile::tempdir().unwrap();
    folder(
        dir_a.path(),
        "site-a",
        &endpoints,
        "  boot: 127.0.0.1:0\n  api: 127.0.0.1:0\n",
    );
    let config_a = mayu::Config::load(&dir_a.path().join("config.yaml")).unwrap();
    let engine_a = mayu::Engine::open(config_a).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let services_a = mayu::services::start(engine_a.clone(), cancel.clone())
        .await
        .unwrap();

    // Server B, in the namespace, through the forwarders.
    let dir_b = tempfile::tempdir().unwrap();
    let via_link: Vec<String> = ports
        .iter()
        .map(|p| format!("http://{ETCD_ADDR}:{p}"))
        .collect();
    folder(
        dir_b.path(),
        "site-b",
        &via_link,
        &format!("  boot: 0.0.0.0:4081\n  api: {B_ADDR}:4080\n"),
    );
    // Other tests (the engine's QEMU ones) may rebuild the shared `<target>/debug/mayu` with
    // other features: make sure it is the one with etcd before B runs it.
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "mayu-console",
            "--bin",
            "mayu",
            "--features",
            "etcd",
        ])
        .current_dir(support::repo())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let b = ServerB::start(&net, dir_b.path());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let api_b = format!("http://{B_ADDR}:4080");
    until("B's API", &b, || {
        let c = client.clone();
        let url = format!("{api_b}/api/v1/health");
        async move { c.get(url).send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    let token_b = b.token();

    // A machine B registers while linked: assigned by rule, seen by A too.
    let known = "52:54:00:d0:00:01";
    let first = script(&client, known, "SN-KNOWN").await;
    assert!(first.contains("kernel"), "a profile's script: {first}");
    let known_id = until("A to see B's machine", &b, || {
        let e = engine_a.clone();
        async move { e.find(known).map(|m| m.id) }
    })
    .await;

    // Cut B's link to etcd, inside its namespace.
    net.etcd_link(false);

    // The machine B knows still boots from it.
    let again = script(&client, known, "SN-KNOWN").await;
    assert!(
        again.contains("kernel"),
        "still its profile's script: {again}"
    );

    // A new machine is held, not registered anywhere.
    let new = "52:54:00:d0:00:02";
    let held = script(&client, new, "SN-NEW").await;
    assert!(
        held.contains("inventory is unreachable") && held.contains("sleep"),
        "the hold loop: {held}"
    );
    assert!(
        engine_a.find(new).is_none(),
        "a held machine is not written"
    );

    // B says so: the cluster service is retrying, and B is not ready.
    until("B's cluster service to show the outage", &b, || {
        let services = get_json(&client, format!("{api_b}/api/v1/services"), &token_b);
        async move {
            let s = services.await?;
            s.as_array()?
                .iter()
                .find(|s| s["name"] == "cluster" && s["status"] == "retrying")
                .map(|_| ())
        }
    })
    .await;
    let ready = client
        .get(format!("{api_b}/api/v1/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    // A goes on: an operator moves the known machine meanwhile.
    engine_a
        .assign(known_id.as_str(), "control-plane", "operator-a", false)
        .unwrap();

    // The link returns: B catches up by itself.
    net.etcd_link(true);
    until("B to learn A's assignment", &b, || {
        let machine = get_json(
            &client,
            format!("{api_b}/api/v1/machines/{known_id}"),
            &token_b,
        );
        async move {
            let m = machine.await?;
            (m["profile"] == "control-plane").then_some(())
        }
    })
    .await;
    // The held machine asks again (its script's loop) and now registers.
    let new_id = until("the held machine to register", &b, || {
        let (c, e) = (client.clone(), engine_a.clone());
        async move {
            let resp = c.get(script_url(new, "SN-NEW")).send().await.ok()?;
            let body = resp.text().await.ok()?;
            if body.contains("unreachable") {
                return None;
            }
            e.find(new).map(|m| m.id)
        }
    })
    .await;

    // Nothing lost: both mirrors hold every change, whichever server made it.
    engine_a.flush().unwrap();
    until("B's mirror to hold every change", &b, || {
        let dir = dir_b.path().to_path_buf();
        let (k, n) = (known_id.to_string(), new_id.to_string());
        async move {
            let lines = audit_lines(&dir.join("inventory"));
            (lines
                .iter()
                .any(|l| l.starts_with(&format!("{k}: registered")))
                && lines
                    .iter()
                    .any(|l| l.starts_with(&format!("{k}: assigned to control-plane")))
                && lines
                    .iter()
                    .any(|l| l.starts_with(&format!("{n}: registered"))))
            .then_some(())
        }
    })
    .await;
    let lines_a = audit_lines(&dir_a.path().join("inventory"));
    for want in [
        format!("{known_id}: registered"),
        format!("{known_id}: assigned to control-plane"),
        format!("{new_id}: registered"),
    ] {
        assert!(
            lines_a.iter().any(|l| l.starts_with(&want)),
            "A lacks {want}"
        );
    }

    drop(b);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), services_a.stopped())
        .await
        .unwrap();
    drop(etcd);
}

/// Every line of every commit message in a git repository (`id: what (by author)` lines).
fn audit_lines(repo: &Path) -> Vec<String> {
    let Ok(repo) = git2::Repository::open(repo) else {
        return Vec::new();
    };
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    if walk.push_head().is_err() {
        return Vec::new();
    }
    walk.filter_map(|oid| oid.ok())
        .filter_map(|oid| repo.find_commit(oid).ok())
        .flat_map(|c| {
            c.message()
                .unwrap_or("")
                .lines()
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}
