//! The dnsmasq child: its preconditions checked and its config self-tested before each start,
//! run in the foreground with its output parsed into events, restarted with capped
//! exponential backoff, told to re-read its hostsfile (SIGHUP) when the inventory changes,
//! and stopped with TERM then KILL.
//!
//! A precondition that does not hold (no boot interface, no privileges, no binary, no TFTP
//! root) is the service's status with a [`ServiceProblem`] saying what to do; it is re-checked
//! quietly every [`Options::recheck`] and announced again only when the reason changes, so a
//! fresh clone shows one clear line instead of a restart every few seconds.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::conf::{self, BootPrograms, RuntimeFiles};
use super::hosts_sync;
use super::leases;
use super::logparse::{LogItem, LogParser};
use crate::config::{Config, DhcpMode};
use crate::engine::Engine;
use crate::events::EventKind;
use crate::lease::ServiceProblem;
use crate::lease::ServiceStatus;
use crate::machine::Mac;

/// The service name in `engine.services()` and in `Service` events.
pub const SERVICE: &str = "dnsmasq";

/// How the supervisor runs its child; none of this is in `config.yaml`.
#[derive(Debug, Clone)]
pub struct Options {
    /// argv prefix the child (and its self-test) runs under, e.g. `ip netns exec NS` in tests.
    pub wrapper: Vec<OsString>,
    /// the first wait before a restart; doubled after each failure up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// a child that ran this long was stable: the next restart waits `backoff_initial` again.
    pub stable_after: Duration,
    /// how long dnsmasq gets to exit after TERM before it is killed.
    pub stop_timeout: Duration,
    /// how often an unmet precondition (e.g. a missing interface) is checked again; the
    /// checks are a few syscalls, so an interface that appears is picked up within this.
    pub recheck: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wrapper: Vec::new(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(5),
            recheck: Duration::from_secs(1),
        }
    }
}

/// How one run of the child ended.
enum Outcome {
    Cancelled,
    /// it ran and exited; `reason` says why as well as dnsmasq told us.
    Exited {
        reason: String,
        ran: Duration,
    },
    /// it never started (self-test refused, binary missing, ...).
    NotStarted(String),
}

/// Supervises one dnsmasq child for one engine.
pub struct Supervisor {
    engine: Engine,
    opts: Options,
    files: RuntimeFiles,
    pid: watch::Sender<Option<u32>>,
}

impl Supervisor {
    pub fn new(engine: Engine, opts: Options) -> Supervisor {
        // Config paths are absolute and normalised at load (`config::resolve`).
        let files = RuntimeFiles::new(&engine.config().runtime);
        Supervisor {
            engine,
            opts,
            files,
            pid: watch::channel(None).0,
        }
    }

    /// The running child's pid (None while it is not running).
    pub fn pid(&self) -> watch::Receiver<Option<u32>> {
        self.pid.subscribe()
    }

    pub fn files(&self) -> &RuntimeFiles {
        &self.files
    }

    /// Runs until `cancel`: see the module documentation.
    pub async fn run(self, cancel: CancellationToken) {
        let config = self.engine.config().clone();
        let net = &config.network;
        let mode = match net.dhcp.mode {
            DhcpMode::Full => "full",
            DhcpMode::Proxy => "proxy",
            DhcpMode::Off => {
                self.engine.set_service(
                    SERVICE,
                    ServiceStatus::Disabled,
                    0,
                    "network.dhcp.mode is off",
                );
                cancel.cancelled().await;
                return;
            }
        };
        let mut base = format!("{mode} on {}", net.interface);
        if let Err(e) = std::fs::create_dir_all(&self.files.folder) {
            let detail = format!("{base}: cannot create {}: {e}", self.files.folder.display());
            self.engine
                .set_service(SERVICE, ServiceStatus::Failed, 0, &detail);
            cancel.cancelled().await;
            return;
        }
        sweep_stale(&self.files).await;
        let missing = BootPrograms::of(&config).missing(&config.tftproot);
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(f, who)| format!("{f} ({who})"))
                .collect();
            let message = format!(
                "boot programs missing from {}: {}; those clients cannot boot. Fill it with scripts/fill-tftproot.sh",
                config.tftproot.display(),
                list.join(", ")
            );
            self.engine.say(crate::events::LogLevel::Warn, message);
            base = format!("{base}; missing boot programs: {}", list.join(", "));
        }

        // Written before the first start, then kept current by its own task.
        let mut hosts = hosts_sync::start(
            self.engine.clone(),
            self.files.hosts.clone(),
            cancel.child_token(),
        )
        .await;
        let lease_task = tokio::spawn(leases::watch(
            self.engine.clone(),
            self.files.leases.clone(),
            cancel.child_token(),
        ));

        let mut restarts = 0u32;
        let mut backoff = self.opts.backoff_initial;
        // what the status last said while not running, so a retry that finds the same
        // reason stays quiet
        let mut unmet_shown: Option<Vec<Unmet>> = None;
        let mut refusal_shown: Option<String> = None;
        loop {
            let (binary, unmet) = preconditions(&config, &self.opts.wrapper);
            if let Some(first) = unmet.iter().find(|u| u.blocks()) {
                if unmet_shown.as_ref() != Some(&unmet) {
                    let mut detail = format!("{base}: {first}: {}", first.hint());
                    let others: Vec<String> = unmet
                        .iter()
                        .filter(|u| *u != first)
                        .map(|u| u.to_string())
                        .collect();
                    if !others.is_empty() {
                        detail = format!("{detail}; also {}", others.join("; "));
                    }
                    tracing::warn!("dnsmasq {detail}");
                    self.engine.set_service_problem(
                        SERVICE,
                        first.status(),
                        restarts,
                        &detail,
                        Some(first.problem()),
                    );
                    unmet_shown = Some(unmet);
                    refusal_shown = None;
                }
                if idle(self.opts.recheck, &cancel).await {
                    break;
                }
                continue;
            }
            unmet_shown = None;
            // a degradation such as an empty TFTP root: dnsmasq runs, the status says so
            let warning = unmet.iter().find(|u| !u.blocks()).map(Unmet::problem);
            let binary = binary.unwrap_or_else(|| conf::binary(&config));
            let outcome = match self.prepare(&config, &binary).await {
                Ok(()) => {
                    let run = RunSpec {
                        config: &config,
                        binary: &binary,
                        base: &base,
                        warning,
                        restarts,
                    };
                    self.run_child(run, &mut hosts, &cancel).await
                }
                Err(reason) => Outcome::NotStarted(reason),
            };
            let wait = match outcome {
                Outcome::Cancelled => break,
                Outcome::Exited { reason, ran } => {
                    if ran >= self.opts.stable_after {
                        backoff = self.opts.backoff_initial;
                    }
                    restarts += 1;
                    refusal_shown = None;
                    let when = format!("restart {restarts} in {}", secs(backoff));
                    let detail = format!("{base}: {reason}; {when}");
                    tracing::warn!("dnsmasq {detail}");
                    let problem = ServiceProblem {
                        code: "exited".into(),
                        reason,
                        hint: format!("mayu restarts it ({when})"),
                    };
                    self.engine.set_service_problem(
                        SERVICE,
                        ServiceStatus::Restarting,
                        restarts,
                        &detail,
                        Some(problem),
                    );
                    backoff
                }
                Outcome::NotStarted(reason) => {
                    // the same refusal again (a broken config stays broken until it is
                    // edited) is not news
                    if refusal_shown.as_deref() != Some(reason.as_str()) {
                        let detail = format!("{base}: {reason}; retrying with backoff");
                        tracing::error!("dnsmasq {detail}");
                        let problem = ServiceProblem {
                            code: "not_started".into(),
                            reason: reason.clone(),
                            hint: "fix that; mayu retries with backoff".into(),
                        };
                        self.engine.set_service_problem(
                            SERVICE,
                            ServiceStatus::Failed,
                            restarts,
                            &detail,
                            Some(problem),
                        );
                        refusal_shown = Some(reason);
                    }
                    backoff
                }
            };
            if idle(wait, &cancel).await {
                break;
            }
            backoff = (backoff * 2).min(self.opts.backoff_max);
        }
        self.pid.send_replace(None);
        self.engine
            .set_service(SERVICE, ServiceStatus::Stopped, restarts, &base);
        let _ = lease_task.await;
    }

    /// Renders and writes the config (on a blocking thread), then has dnsmasq check it.
    async fn prepare(&self, config: &Config, binary: &Path) -> Result<(), String> {
        let text = conf::render_conf(config).map_err(|e| e.to_string())?;
        let path = self.files.conf.clone();
        let cannot = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
        let target = path.clone();
        tokio::task::spawn_blocking(move || crate::atomic::write(&target, text.as_bytes(), 0o644))
            .await
            .map_err(|e| cannot(&e))?
            .map_err(|e| cannot(&e))?;
        conf::self_test_async(binary, &self.opts.wrapper, &path)
            .await
            .map_err(|e| e.to_string())
    }

    fn command(&self, binary: &Path) -> Command {
        let mut argv: Vec<OsString> = self.opts.wrapper.clone();
        argv.push(binary.as_os_str().to_os_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .arg("--keep-in-foreground")
            .arg("--log-facility=-")
            .arg(format!("--conf-file={}", self.files.conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches mayu, which then stops
            // dnsmasq in order, instead of both racing.
            .process_group(0)
            .kill_on_drop(true);
        let parent = rustix::process::getpid();
        // SAFETY: `pre_exec` is unsafe by its signature (the closure runs between fork and
        // exec); this one only makes two raw system calls through rustix (prctl, getppid),
        // which neither allocate nor take locks, and builds its error without allocating.
        unsafe {
            cmd.pre_exec(move || {
                // A killed mayu (even SIGKILL) takes dnsmasq with it. The signal follows the
                // thread that forked, which is a runtime worker living as long as mayu; it
                // holds because the rendered config keeps dnsmasq's user and group (a
                // credential change would clear it).
                rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
                // mayu may have died between fork and prctl: then the exec is refused and
                // the child exits at once.
                if rustix::process::getppid() != Some(parent) {
                    return Err(rustix::io::Errno::SRCH.into());
                }
                Ok(())
            });
        }
        cmd
    }

    async fn run_child(
        &self,
        spec: RunSpec<'_>,
        hosts: &mut watch::Receiver<hosts_sync::Written>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let RunSpec {
            config,
            binary,
            base,
            warning,
            restarts,
        } = spec;
        let mut child = match self.command(binary).spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Outcome::NotStarted(format!(
                    "dnsmasq binary `{}` not found; install Debian's `dnsmasq-base` or set network.dnsmasq",
                    binary.display()
                ))
            }
            Err(e) => return Outcome::NotStarted(format!("cannot start dnsmasq: {e}")),
        };
        let pid = child.id();
        self.pid.send_replace(pid);
        self.engine.set_service_problem(
            SERVICE,
            ServiceStatus::Starting,
            restarts,
            base,
            warning.clone(),
        );
        let (line_tx, mut lines) = mpsc::channel::<String>(1024);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, line_tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, line_tx));
        }
        let started = Instant::now();
        let mut run = ChildRun {
            engine: &self.engine,
            tftproot: config.tftproot.clone(),
            hosts_file: self.files.hosts.clone(),
            interface: config.network.interface.clone(),
            base: base.to_string(),
            warning,
            restarts,
            pid,
            parser: LogParser::new(),
            up: false,
            hup_pending: false,
            hup_sent: false,
            problem: None,
            hosts_count: hosts.borrow_and_update().count,
            recent_clients: HashMap::new(),
        };
        let mut lines_open = true;
        let status = loop {
            let quiet = run.parser.has_pending();
            tokio::select! {
                _ = cancel.cancelled() => {
                    stop(&mut child, self.opts.stop_timeout).await;
                    self.pid.send_replace(None);
                    return Outcome::Cancelled;
                }
                status = child.wait() => break status,
                line = lines.recv(), if lines_open => match line {
                    Some(l) => run.line(&l),
                    None => lines_open = false,
                },
                // dnsmasq's transaction bursts end without a marker: flush after a quiet spell.
                _ = tokio::time::sleep(Duration::from_millis(100)), if quiet => run.flush(),
                changed = hosts.changed() => {
                    if changed.is_ok() {
                        let count = hosts.borrow_and_update().count;
                        run.hosts_written(count);
                    }
                }
            }
        };
        // What dnsmasq said last (often the reason it stopped) may still be in the pipes.
        while let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(500), lines.recv()).await
        {
            run.line(&l);
        }
        run.flush();
        self.pid.send_replace(None);
        let reason = match (run.problem.take(), status) {
            (Some(p), _) => explain(&p, &run.interface),
            (None, Ok(s)) => describe(s),
            (None, Err(e)) => format!("cannot wait for dnsmasq: {e}"),
        };
        Outcome::Exited {
            reason,
            ran: started.elapsed(),
        }
    }
}

/// What one start of the child runs with.
struct RunSpec<'a> {
    config: &'a Config,
    /// the resolved binary (see [`find_binary`]).
    binary: &'a Path,
    base: &'a str,
    /// a precondition that degrades the service without stopping it.
    warning: Option<ServiceProblem>,
    restarts: u32,
}

/// State of one running child: its parser and what it has told us.
struct ChildRun<'a> {
    engine: &'a Engine,
    tftproot: PathBuf,
    hosts_file: PathBuf,
    interface: String,
    base: String,
    warning: Option<ServiceProblem>,
    restarts: u32,
    pid: Option<u32>,
    parser: LogParser,
    /// dnsmasq said `started`: its signal handlers are set, so SIGHUP re-reads instead of
    /// killing it.
    up: bool,
    hup_pending: bool,
    /// a SIGHUP went out and dnsmasq has not yet said it re-read the hostsfile.
    hup_sent: bool,
    problem: Option<String>,
    /// machines in the hostsfile as last written.
    hosts_count: usize,
    /// the client each address was last offered or acknowledged to: TFTP names only the
    /// address, often before the lease file has it.
    recent_clients: HashMap<Ipv4Addr, Mac>,
}

/// Addresses remembered for TFTP; more than a boot network's range, and bounded.
const RECENT_CLIENTS: usize = 4096;

impl ChildRun<'_> {
    fn remember_client(&mut self, ip: Ipv4Addr, mac: Mac) {
        if self.recent_clients.len() >= RECENT_CLIENTS && !self.recent_clients.contains_key(&ip) {
            self.recent_clients.clear();
        }
        self.recent_clients.insert(ip, mac);
    }

    fn line(&mut self, line: &str) {
        tracing::debug!(target: "dnsmasq", "{line}");
        for item in self.parser.feed(line) {
            self.item(item);
        }
    }

    fn flush(&mut self) {
        if let Some(item) = self.parser.flush() {
            self.item(item);
        }
    }

    fn running(&self, detail: &str) {
        self.engine.set_service_problem(
            SERVICE,
            ServiceStatus::Running,
            self.restarts,
            detail,
            self.warning.clone(),
        );
    }

    fn running_detail(&self, reread: bool) -> String {
        let n = self.hosts_count;
        if reread {
            format!("{}; hostsfile re-read: {n} machines", self.base)
        } else {
            format!("{}; hostsfile: {n} machines", self.base)
        }
    }

    fn item(&mut self, item: LogItem) {
        match item {
            LogItem::Started { version } => {
                self.up = true;
                tracing::info!(version, pid = ?self.pid, "dnsmasq started");
                let detail = self.running_detail(false);
                self.running(&detail);
                if self.hup_pending {
                    self.hup_pending = false;
                    self.hup();
                }
            }
            LogItem::FileRead { file } => {
                if self.hup_sent && Path::new(&file) == self.hosts_file {
                    self.hup_sent = false;
                    let detail = self.running_detail(true);
                    self.running(&detail);
                }
            }
            LogItem::Dhcp(d) => {
                // `known_only`: an unknown MAC is ignored; remembered so it can be enrolled.
                if d.note.as_deref() == Some("ignored") {
                    if let Some(mac) = d.mac {
                        let interface = (!d.interface.is_empty()).then(|| d.interface.clone());
                        self.engine
                            .note_ignored(mac, d.vendor_class.clone(), interface);
                    }
                }
                let detail = d.detail();
                let step = match d.ip {
                    Some(ip) => format!("{ip} {detail}"),
                    None => detail.clone(),
                };
                // A PXE or HTTP boot client (the firmware, or iPXE) says so in option 60; in
                // proxy mode dnsmasq logs its exchange as `PXE`.
                let firmware = d.message == "PXE"
                    || d.vendor_class
                        .as_deref()
                        .is_some_and(|v| v.starts_with("PXEClient") || v.starts_with("HTTPClient"));
                if let (Some(mac), Some(ip)) = (d.mac, d.ip) {
                    if matches!(d.message.as_str(), "DHCPOFFER" | "DHCPACK") {
                        self.remember_client(ip, mac);
                    }
                }
                let (message, mac) = (d.message.clone(), d.mac);
                self.engine.bus().publish(EventKind::Dhcp {
                    message: d.message,
                    mac: d.mac,
                    ip: d.ip.map(|ip| ip.to_string()),
                    hostname: d.hostname,
                    detail,
                });
                // Into the MAC's timeline from the first packet; an ACK to a known machine is
                // also its DHCP phase.
                if let Some(mac) = mac {
                    self.engine.dhcp_step(mac, &message, step, firmware);
                }
            }
            LogItem::Tftp(t) => {
                // dnsmasq logs absolute paths; the operator thinks in tftproot-relative names.
                let file = Path::new(&t.file)
                    .strip_prefix(&self.tftproot)
                    .map(|p| p.display().to_string())
                    .unwrap_or(t.file);
                // TFTP carries no MAC: the address dnsmasq just offered it, or its lease, says
                // which client (and machine) it is.
                let ip = t.client.parse::<std::net::Ipv4Addr>().ok();
                let lease = ip.and_then(|ip| self.engine.leases().into_iter().find(|l| l.ip == ip));
                let mac = ip
                    .and_then(|ip| self.recent_clients.get(&ip).copied())
                    .or(lease.as_ref().map(|l| l.mac));
                let machine = lease
                    .and_then(|l| l.machine)
                    .or_else(|| mac.and_then(|m| self.engine.by_mac(&m)).map(|m| m.id));
                let step = match t.ok {
                    true => format!("{file} sent"),
                    false => format!("{file} failed: {}", t.detail),
                };
                self.engine.tftp_step(machine.as_ref(), mac, step);
                self.engine.bus().publish(EventKind::Tftp {
                    file,
                    machine,
                    client: t.client,
                    ok: t.ok,
                    detail: t.detail,
                });
            }
            LogItem::Fatal(msg) => {
                tracing::error!(target: "dnsmasq", "{msg}");
                self.problem = Some(msg);
            }
            LogItem::Warning(msg) => {
                self.engine
                    .say(crate::events::LogLevel::Warn, format!("dnsmasq: {msg}"));
            }
        }
    }

    /// The hostsfile changed: dnsmasq re-reads it on SIGHUP once its handlers are set.
    fn hosts_written(&mut self, count: usize) {
        self.hosts_count = count;
        if self.up {
            self.hup();
        } else {
            self.hup_pending = true;
        }
    }

    fn hup(&mut self) {
        // Our own child's pid: it has not been reaped (we would have left the run loop), so
        // the pid cannot name another process.
        if let Some(pid) = self.pid.and_then(pid_of) {
            self.hup_sent = true;
            if let Err(e) = kill_process(pid, Signal::HUP) {
                let pid = pid.as_raw_nonzero().get();
                tracing::warn!(pid, error = %std::io::Error::from(e), "cannot signal dnsmasq to re-read its hostsfile");
            }
        }
    }
}

/// Waits `wait` with no child running; true when cancelled.
async fn idle(wait: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

async fn forward_lines<R: AsyncRead + Unpin>(reader: R, tx: mpsc::Sender<String>) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        if tx.send(l).await.is_err() {
            break;
        }
    }
}

/// TERM, then KILL after `timeout`; always reaps the child.
async fn stop(child: &mut Child, timeout: Duration) {
    // Our own unreaped child (tokio forgets the id once it has been reaped).
    if let Some(pid) = child.id().and_then(pid_of) {
        let _ = kill_process(pid, Signal::TERM);
        if tokio::time::timeout(timeout, child.wait()).await.is_ok() {
            return;
        }
        let pid = pid.as_raw_nonzero().get();
        tracing::warn!(pid, "dnsmasq ignored TERM; killing it");
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// A child's id as a signal target (None for 0 or one past `i32`).
fn pid_of(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().and_then(Pid::from_raw)
}

/// A dnsmasq left running by a mayu that could not stop it (e.g. one started from another
/// config) holds port 67; stop it if the pid file names a dnsmasq using *our* config.
async fn sweep_stale(files: &RuntimeFiles) {
    let Ok(text) = std::fs::read_to_string(&files.pid) else {
        return;
    };
    let Ok(raw) = text.trim().parse::<i32>() else {
        return;
    };
    let Some(pid) = Pid::from_raw(raw) else {
        return;
    };
    let ours = std::fs::read(format!("/proc/{raw}/cmdline"))
        .map(|c| {
            let needle = format!("--conf-file={}", files.conf.display());
            c.split(|b| *b == 0).any(|arg| arg == needle.as_bytes())
        })
        .unwrap_or(false);
    if !ours {
        return;
    }
    tracing::warn!(
        pid = raw,
        "stopping a dnsmasq left over from an earlier run"
    );
    // A pid whose command line names our config file.
    let _ = kill_process(pid, Signal::TERM);
    // Not our child, so there is nothing to wait on but /proc.
    for _ in 0..40 {
        if !Path::new(&format!("/proc/{raw}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = kill_process(pid, Signal::KILL);
}

/// A precondition of starting dnsmasq that does not hold, as the operator should read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    #[error("dnsmasq binary `{}` not found", .0.display())]
    Binary(PathBuf),
    #[error("interface {0} does not exist")]
    Interface(String),
    #[error("needs root for DHCP/TFTP ports")]
    Privileges,
    #[error("TFTP root {} does not exist", .0.display())]
    NoTftpRoot(PathBuf),
    #[error("TFTP root {} is empty", .0.display())]
    EmptyTftpRoot(PathBuf),
}

impl Unmet {
    /// A stable name for scripts reading `/api/v1/services`.
    pub fn code(&self) -> &'static str {
        match self {
            Unmet::Binary(_) => "binary_missing",
            Unmet::Interface(_) => "interface_missing",
            Unmet::Privileges => "not_privileged",
            Unmet::NoTftpRoot(_) => "tftproot_missing",
            Unmet::EmptyTftpRoot(_) => "tftproot_empty",
        }
    }

    /// What the operator can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Unmet::Binary(_) => "install Debian's `dnsmasq-base` or set network.dnsmasq",
            Unmet::Interface(_) => "set network.interface, or try sudo scripts/lab.sh up",
            Unmet::Privileges => "run as root or set network.dhcp.mode: off",
            Unmet::NoTftpRoot(_) => "create it with scripts/fill-tftproot.sh, or set tftproot",
            Unmet::EmptyTftpRoot(_) => {
                "firmware PXE clients cannot boot; fill it with scripts/fill-tftproot.sh"
            }
        }
    }

    /// dnsmasq cannot start (or would exit at once) while this holds. An empty TFTP root only
    /// degrades it: clients that already run iPXE (QEMU's firmware, for one) boot over DHCP
    /// and HTTP alone.
    pub fn blocks(&self) -> bool {
        !matches!(self, Unmet::EmptyTftpRoot(_))
    }

    /// The service status it shows as: an interface may still appear (a bridge being set up,
    /// a lab starting) and is watched for; the rest wait for the operator.
    pub fn status(&self) -> ServiceStatus {
        match self {
            Unmet::Interface(_) => ServiceStatus::Waiting,
            _ => ServiceStatus::Failed,
        }
    }

    pub fn problem(&self) -> ServiceProblem {
        ServiceProblem {
            code: self.code().into(),
            reason: self.to_string(),
            hint: self.hint().into(),
        }
    }
}

/// Checks what dnsmasq needs before it is started, in the order an operator fixes them:
/// the binary, the boot interface, the privileges for ports 67 and 69, the TFTP root. Returns
/// the binary's full path when found, and every precondition that does not hold. `wrapper`
/// (e.g. `ip netns exec NS`) is where the interface must exist.
pub fn preconditions(config: &Config, wrapper: &[OsString]) -> (Option<PathBuf>, Vec<Unmet>) {
    let mut unmet = Vec::new();
    let named = conf::binary(config);
    let binary = find_binary(&named, std::env::var_os("PATH").as_deref());
    if binary.is_none() {
        unmet.push(Unmet::Binary(named));
    }
    let interface = &config.network.interface;
    if !interface_exists(interface, wrapper) {
        unmet.push(Unmet::Interface(interface.clone()));
    }
    if !privileged() {
        unmet.push(Unmet::Privileges);
    }
    let root = config.tftproot.clone();
    if !root.is_dir() {
        unmet.push(Unmet::NoTftpRoot(root));
    } else if std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_none()) {
        unmet.push(Unmet::EmptyTftpRoot(root));
    }
    (binary, unmet)
}

/// `name` as a path if it has a slash, else the first executable of that name on `path`, then
/// in the sbin folders (Debian leaves them off an ordinary user's PATH, and dnsmasq lives
/// in /usr/sbin).
pub fn find_binary(name: &Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.components().count() > 1 || name.is_absolute() {
        return executable(name).then(|| name.to_path_buf());
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Whether the network interface `name` exists, in our network namespace or, under a
/// wrapper, in the wrapper's (`ip netns exec` mounts that namespace's /sys).
pub fn interface_exists(name: &str, wrapper: &[OsString]) -> bool {
    // an interface name is one path component of at most 15 bytes (IFNAMSIZ - 1)
    let valid = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0']);
    if !valid {
        return false;
    }
    let sys = Path::new("/sys/class/net").join(name);
    match wrapper.split_first() {
        None => sys.exists(),
        Some((program, args)) => std::process::Command::new(program)
            .args(args)
            .arg("test")
            .arg("-e")
            .arg(&sys)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// CAP_NET_BIND_SERVICE (ports 67 and 69) and CAP_NET_ADMIN (DHCP's ARP entries).
const NEEDED_CAPS: u64 = (1 << 10) | (1 << 12);

/// Whether this process may run dnsmasq's DHCP and TFTP: root, or the capabilities it needs.
fn privileged() -> bool {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => caps_allow(&status).unwrap_or(false),
        Err(_) => rustix::process::geteuid().is_root(),
    }
}

/// Reads the effective capabilities from `/proc/self/status` text; None when absent.
fn caps_allow(status: &str) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & NEEDED_CAPS == NEEDED_CAPS)
}

/// dnsmasq's reason, made into advice where the cause is known.
fn explain(problem: &str, interface: &str) -> String {
    if problem.contains("unknown interface") {
        format!("interface {interface} does not exist (yet); mayu retries until it appears")
    } else if problem.contains("Permission denied") || problem.contains("Operation not permitted") {
        format!("{problem}; dnsmasq needs root (port 67, raw sockets): run mayu as root")
    } else if problem.contains("Address already in use") {
        format!("{problem}; another DHCP server or an old dnsmasq holds the port")
    } else {
        problem.to_string()
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "exited".into(),
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f32())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, interface: &str, extra: &str) -> Config {
        let file = dir.join("config.yaml");
        std::fs::write(
            &file,
            format!(
                "network:\n  interface: {interface}\n  address: 10.77.0.1\n  dhcp:\n    mode: full\n    range: [10.77.0.100, 10.77.0.200]\n{extra}assignment: manual\naudit: {{ git: false }}\ntftproot: tftp\n"
            ),
        )
        .unwrap();
        Config::load(&file).unwrap()
    }

    #[test]
    fn a_missing_interface_is_the_interface_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tftp")).unwrap();
        std::fs::write(dir.path().join("tftp/undionly.kpxe"), "x").unwrap();
        let c = config(
            dir.path(),
            "mayu-nonesuch",
            "  dnsmasq: /bin/sh
",
        );
        let (binary, unmet) = preconditions(&c, &[]);
        assert_eq!(binary.as_deref(), Some(Path::new("/bin/sh")));
        let first = unmet.iter().find(|u| u.blocks()).unwrap();
        assert_eq!(*first, Unmet::Interface("mayu-nonesuch".into()));
        assert_eq!(first.status(), ServiceStatus::Waiting);
        let p = first.problem();
        assert_eq!(p.code, "interface_missing");
        assert_eq!(
            p.line(),
            "interface mayu-nonesuch does not exist: set network.interface, or try sudo scripts/lab.sh up"
        );
        // loopback always exists: no interface reason for it
        let c = config(
            dir.path(),
            "lo",
            "  dnsmasq: /bin/sh
",
        );
        let (_, unmet) = preconditions(&c, &[]);
        assert!(
            !unmet.iter().any(|u| matches!(u, Unmet::Interface(_))),
            "{unmet:?}"
        );
    }

    #[test]
    fn odd_interface_names_do_not_exist() {
        for name in ["", ".", "..", "../lo", "lo/x", "a-name-longer-than-15"] {
            assert!(!interface_exists(name, &[]), "{name:?}");
        }
        assert!(interface_exists("lo", &[]));
    }

    #[test]
    fn a_missing_binary_comes_first_and_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            dir.path(),
            "lo",
            "  dnsmasq: /nonexistent/dnsmasq
",
        );
        let (binary, unmet) = preconditions(&c, &[]);
        assert_eq!(binary, None);
        assert_eq!(unmet[0], Unmet::Binary("/nonexistent/dnsmasq".into()));
        assert!(unmet[0].problem().line().contains("dnsmasq-base"));
        // the TFTP root does not exist either
        assert!(unmet
            .iter()
            .any(|u| matches!(u, Unmet::NoTftpRoot(p) if p.ends_with("tftp"))));
    }

    #[test]
    fn an_empty_tftp_root_degrades_but_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tftp")).unwrap();
        let c = config(
            dir.path(),
            "lo",
            "  dnsmasq: /bin/sh
",
        );
        let (_, unmet) = preconditions(&c, &[]);
        let empty = unmet
            .iter()
            .find(|u| matches!(u, Unmet::EmptyTftpRoot(_)))
            .unwrap();
        assert!(!empty.blocks());
        assert!(empty.hint().contains("fill-tftproot.sh"));
    }

    #[test]
    fn binaries_are_found_on_the_path_and_in_sbin() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mytool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        assert_eq!(
            find_binary(Path::new("mytool"), Some(dir.path().as_os_str())),
            None,
            "not executable"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_binary(Path::new("mytool"), Some(dir.path().as_os_str())),
            Some(tool)
        );
        assert_eq!(find_binary(Path::new("no-such-tool-here"), None), None);
    }

    #[test]
    fn privileges_are_read_from_the_effective_capabilities() {
        let root = "Name:\tmayu\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(caps_allow(root), Some(true));
        let user = "Name:\tmayu\nCapEff:\t0000000000000000\n";
        assert_eq!(caps_allow(user), Some(false));
        // NET_BIND_SERVICE alone is not enough for DHCP
        let bind_only = "CapEff:\t0000000000000400\n";
        assert_eq!(caps_allow(bind_only), Some(false));
        let both = "CapEff:\t0000000000001400\n";
        assert_eq!(caps_allow(both), Some(true));
        assert_eq!(caps_allow("Name:\tmayu\n"), None);
        assert_eq!(
            Unmet::Privileges.problem().line(),
            "needs root for DHCP/TFTP ports: run as root or set network.dhcp.mode: off"
        );
    }
}
