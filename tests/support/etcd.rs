//! A real etcd cluster for the cluster tests: three members of Debian's `etcd` (v3.4) on
//! loopback, on ports the OS picked, data in a temp folder, a cluster token of its own, every
//! process killed when the [`Etcd`] is dropped (also when a test panics).
//!
//! It never uses 2379/2380: Debian's `etcd-server` package may run a system etcd there.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member (or the whole cluster) gets to become healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether `test` cannot run for want of etcd: it fails under `CI=true`, otherwise it says
/// why and the caller returns.
pub fn missing(test: &str) -> bool {
    let why: Vec<String> = [("etcd", "etcd-server"), ("etcdctl", "etcd-client")]
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(tool, package)| format!("{tool} (Debian {package})"))
        .collect();
    if why.is_empty() {
        return false;
    }
    let reason = format!("missing {}; see scripts/install-deps.sh", why.join(", "));
    if in_ci() {
        panic!("{test} cannot run in CI: {reason}");
    }
    eprintln!("{test}: not run: {reason}");
    true
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// TLS on the members' client URLs (`https://`), clients must present a certificate the
/// CA signed; the peers talk plain HTTP. PEM files.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    /// the members' certificate (for 127.0.0.1) and key; `etcdctl` presents it as a client too.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running etcd cluster; dropped, every member is killed.
pub struct Etcd {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    tls: Option<EtcdTls>,
}

/// `n` free loopback ports, all distinct (held open together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn client_url(tls: &Option<EtcdTls>, port: u16) -> String {
    match tls {
        Some(_) => format!("https://127.0.0.1:{port}"),
        None => url(port),
    }
}

impl Etcd {
    /// A 3-member cluster, healthy when this returns.
    pub fn start() -> Etcd {
        Etcd::start_n(3)
    }

    /// A 3-member cluster serving clients over TLS, healthy when this returns.
    pub fn start_tls(tls: EtcdTls) -> Etcd {
        Etcd::start_with(3, Some(tls))
    }

    /// An `n`-member cluster, healthy when this returns.
    pub fn start_n(n: usize) -> Etcd {
        Etcd::start_with(n, None)
    }

    fn start_with(n: usize, tls: Option<EtcdTls>) -> Etcd {
        // A port the OS handed out can be taken by someone else before etcd binds it: then
        // start again on fresh ports (a few times).
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut etcd = Etcd::prepare(n, tls.clone());
            for i in 0..n {
                etcd.spawn(i);
            }
            match etcd.until_healthy(&(0..n).collect::<Vec<_>>()) {
                Ok(()) => return etcd,
                Err(why) if attempt < 3 && why.contains("address already in use") => {
                    eprintln!("etcd: a port was taken meanwhile; starting again on others");
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    /// The members' ports, folders and token; nothing started.
    fn prepare(n: usize, tls: Option<EtcdTls>) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * n);
        let token = format!(
            "mayu-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: ports[2 * i],
                peer: ports[2 * i + 1],
                data: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        Etcd {
            dir,
            token,
            members,
            tls,
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, url(m.peer)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let m = &self.members[i];
        assert!(m.child.is_none(), "member {i} runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let mut cmd = Command::new("etcd");
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let client = client_url(&self.tls, m.client);
        let child = cmd
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(url(m.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(url(m.peer))
            .arg("--initial-cluster")
            .arg(initial)
            // a restarted member finds its data folder and ignores these, rejoining as it was
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .env_remove("ETCD_NAME")
            .env_remove("ETCD_DATA_DIR")
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        self.members[i].child = Some(child);
    }

    /// Every client URL, member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| client_url(&self.tls, m.client))
            .collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        client_url(&self.tls, self.members[i].client)
    }

    /// Kills member `i` and waits until it is gone.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data folder (it rejoins) and waits until it is healthy.
    pub fn start_member(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(&[i]);
    }

    /// Starts the members `which` again together (a quorum that was all down) and waits until
    /// they are healthy.
    pub fn start_members(&mut self, which: &[usize]) {
        for &i in which {
            self.spawn(i);
        }
        self.wait_healthy(which);
    }

    /// Runs `etcdctl args…` against every member; its stdout (panics on a failure).
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = self
            .etcdctl_at(&(0..self.members.len()).collect::<Vec<_>>())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An `etcdctl` aimed at the members at `which`, with this cluster's TLS.
    fn etcdctl_at(&self, which: &[usize]) -> Command {
        let endpoints: Vec<String> = which.iter().map(|&i| self.endpoint(i)).collect();
        let mut cmd = Command::new("etcdctl");
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.cert)
                .arg("--key")
                .arg(&tls.key);
        }
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoints.join(","))
            .args(["--dial-timeout", "2s", "--command-timeout", "3s"]);
        cmd
    }

    /// Whether `etcdctl endpoint health` says the members at `which` are healthy.
    fn healthy(&self, which: &[usize]) -> bool {
        self.etcdctl_at(which)
            .args(["endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Polls until the members at `which` are healthy; panics with their logs past the
    /// deadline or when one exited.
    fn wait_healthy(&mut self, which: &[usize]) {
        if let Err(why) = self.until_healthy(which) {
            panic!("{why}");
        }
    }

    /// Polls until the members at `which` are healthy; `Err` with their logs past the
    /// deadline or when one exited.
    fn until_healthy(&mut self, which: &[usize]) -> Result<(), String> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            if self.healthy(which) {
                return Ok(());
            }
            for &i in which {
                if let Some(c) = self.members[i].child.as_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        self.members[i].child = None;
                        return Err(format!(
                            "etcd member {i} exited ({status}):\n{}",
                            self.log_tail(i)
                        ));
                    }
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = which.iter().map(|&i| self.log_tail(i)).collect();
                return Err(format!(
                    "etcd members {which:?} not healthy within {HEALTHY_WITHIN:?}:\n{}",
                    logs.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines member `i` logged.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- {} ---\n{}",
            self.members[i].name,
            lines[from..].join("\n")
        )
    }

    /// The temp folder holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
