//! The runtime wiring: start the engine and services, then either drive the console (an event
//! task over keys, the bus, finished commands and a coalescing redraw timer) or, headless,
//! wait for a signal. Engine calls may fsync, so they run on the blocking pool.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt;
use mayu::engine::EngineError;
use mayu::events::{Event, EventKind};
use mayu::machine::MachineId;
use mayu::services::Services;
use mayu::{Config, Engine};
use time::OffsetDateTime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::action::{Action, Command, Outcome, Undo};
use crate::app::{operator_name, update, App, Setup};
use crate::keys;
use crate::terminal::{install_panic_hook, TerminalGuard};
use crate::view::AppView;

/// Bursts of bus events within this window become one frame.
const COALESCE: Duration = Duration::from_millis(12);
/// Phase timers count seconds, so the screen refreshes once a second even when idle.
const TICK: Duration = Duration::from_secs(1);
/// How many past events seed the event log.
const SEED: usize = 500;

pub fn setup_for(config: &Config, services: &Services) -> Setup {
    Setup {
        operator: operator_name(
            config.operator.as_deref(),
            |k| std::env::var(k).ok(),
            uid_name,
        ),
        // As machines reach it (a wildcard listen address means nothing to an operator).
        boot_addr: format!("{}:{}", config.network.address, services.boot_addr.port()),
        api_addr: services.api_addr.to_string(),
        dhcp_mode: format!("{:?}", config.network.dhcp.mode).to_lowercase(),
        interface: config.network.interface.clone(),
        templates_dir: config
            .templates
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| config.templates.display().to_string()),
    }
}

/// The name of this process's uid as the system's user database has it (`getent`, so LDAP and
/// friends count): for when neither `$USER` nor `$LOGNAME` is set (cron, systemd units, some
/// containers).
fn uid_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let out = std::process::Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout);
    line.split(':').next().map(str::to_string)
}

async fn start(config: Config) -> anyhow::Result<(Engine, CancellationToken, Services)> {
    let engine = Engine::open(config).context("opening the inventory")?;
    let cancel = CancellationToken::new();
    let services = mayu::services::start(engine.clone(), cancel.clone())
        .await
        .context("starting the boot services")?;
    tracing::info!(addr = %services.boot_addr, "console: boot http on {}", services.boot_addr);
    tracing::info!(addr = %services.api_addr, "console: api on {}", services.api_addr);
    if let Some(f) = &services.admin_token_file {
        tracing::info!(file = %f.display(), "the first API admin token's secret is in {}", f.display());
    }
    Ok((engine, cancel, services))
}

/// How long a stop waits for the git audit to catch up.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

async fn stop(engine: Engine, cancel: CancellationToken, services: Services) {
    cancel.cancel();
    services.stopped().await;
    // Bounded: whatever git has not taken by then is safe in the audit journal and is
    // committed at the next start; the error says how much.
    let flushed = tokio::task::spawn_blocking(move || engine.flush_within(SHUTDOWN_FLUSH)).await;
    if let Ok(Err(e)) = flushed {
        tracing::error!(error = %e, "audit flush at shutdown incomplete");
        say(&format!("mayu: audit: {e}"));
    }
}

/// TERM, INT and HUP, taken over before anything starts: one arriving during start-up still
/// stops mayu gracefully (audit flushed, dnsmasq stopped) instead of killing it. HUP is a
/// closed terminal or a lost ssh session: the operator has gone, the services stop in order.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns when one arrives; logs which.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = self.int.recv() => tracing::info!("interrupt: stopping"),
            _ = self.hup.recv() => tracing::info!("SIGHUP (terminal closed): stopping"),
        }
    }
}

/// Says something on stderr if there still is one (after a hangup there is not, and
/// `eprintln!` would panic).
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// `mayu --headless`: the services alone, logging to stdout and the log file.
pub async fn headless(config: Config) -> anyhow::Result<()> {
    let _log = mayu::logging::init(&config.logs, true).context("opening the log folder")?;
    let mut signals = StopSignals::install()?;
    let (engine, cancel, services) = start(config).await?;
    // Bus events are what the console would show; headless, they go to the log.
    let mut rx = engine.bus().subscribe();
    let echo = cancel.clone();
    let echo_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = echo.cancelled() => break,
                r = rx.recv() => match r {
                    // Log events are in the log already (`Engine::say`, `logging::bus`).
                    Ok(ev) if matches!(&ev.kind, EventKind::Log { .. }) => {}
                    // One line per request would cost more than serving it: boot steps are
                    // debug (`MAYU_LOG=info,mayu::events=debug`); the console, the event
                    // stream and /metrics have every one.
                    Ok(ev) if matches!(&ev.kind, EventKind::BootStep { .. }) => {
                        tracing::debug!(target: "mayu::events", "{}", ev.summary());
                    }
                    Ok(ev) => tracing::info!(target: "mayu::events", "{}", ev.summary()),
                    Err(RecvError::Lagged(n)) => tracing::warn!("event log skipped {n} events"),
                    Err(RecvError::Closed) => break,
                },
            }
        }
    });
    tracing::info!("running headless; Ctrl-C or SIGTERM stops");
    signals.next().await;
    stop(engine, cancel, services).await;
    let _ = echo_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// `mayu`: the console with the engine and services in-process.
pub async fn console(config: Config) -> anyhow::Result<()> {
    let _log = mayu::logging::init(&config.logs, false).context("opening the log folder")?;
    let mut signals = StopSignals::install()?;
    let log_dir = config.logs.clone();
    let (engine, cancel, services) = start(config.clone()).await?;
    let setup = setup_for(&config, &services);
    let operator = setup.operator.clone();
    let (snapshot, rx) = engine.subscribe();
    let mut app = App::new(setup, snapshot);
    app.now = OffsetDateTime::now_utc();
    app.set_services(engine.services());
    app.set_leases(engine.leases());
    app.seed_log(&engine.bus().recent(SEED));
    if let Some(f) = &services.admin_token_file {
        app.note(
            OffsetDateTime::now_utc(),
            crate::app::Level::Warn,
            format!(
                "API admin token created; its secret is in {} (store it, then delete the file)",
                f.display()
            ),
        );
    }
    for p in engine.load_problems() {
        app.note(
            OffsetDateTime::now_utc(),
            crate::app::Level::Warn,
            format!("skipped {}: {}", p.file.display(), p.error),
        );
    }

    let ui_stop = CancellationToken::new();
    install_panic_hook(ui_stop.clone());
    let result = match TerminalGuard::enter() {
        Ok(mut guard) => {
            let r = event_loop(
                &mut guard,
                &mut app,
                Backends {
                    engine: &engine,
                    power: services.power.clone(),
                },
                rx,
                &operator,
                &ui_stop,
                &mut signals,
            )
            .await;
            drop(guard);
            r
        }
        Err(e) => Err(anyhow::Error::new(e).context("setting up the terminal")),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "console stopped");
    }
    say(&format!(
        "mayu: stopping the boot services (log in {})",
        log_dir.display()
    ));
    stop(engine, cancel, services).await;
    tracing::info!("stopped");
    result
}

/// Runs one history load at a time; a newer request replaces a queued one, so scrolling
/// through many machines does not queue a git walk per row.
#[derive(Default)]
struct HistoryLoader {
    running: bool,
    queued: Option<MachineId>,
}

impl HistoryLoader {
    fn request(&mut self, id: MachineId, engine: &Engine, tx: &mpsc::UnboundedSender<Action>) {
        if self.running {
            self.queued = Some(id);
            return;
        }
        self.running = true;
        let engine = engine.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = engine.history(id.as_str()).map_err(|e| e.to_string());
            let _ = tx.send(Action::HistoryLoaded { id, result });
        });
    }

    fn finished(&mut self, engine: &Engine, tx: &mpsc::UnboundedSender<Action>) {
        self.running = false;
        if let Some(id) = self.queued.take() {
            self.request(id, engine, tx);
        }
    }
}

fn outcome(r: Result<mayu::machine::Machine, EngineError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(EngineError::ProfileFull { name, quantity }) => {
            Outcome::Failed(format!("profile {name} is full ({quantity} of {quantity})"))
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// An engine call to run on the blocking pool with the operator's name.
type Job = Box<dyn FnOnce(&Engine, &str) -> Outcome + Send>;

/// What an edit does, for the status line: an override names its key.
fn edit_what(id: &MachineId, edit: &mayu::engine::Edit) -> String {
    let only_overrides = edit.hostname.is_none()
        && edit.rack.is_none()
        && edit.notes.is_none()
        && edit.state.is_none()
        && !edit.overrides.is_empty();
    if only_overrides {
        let keys: Vec<&str> = edit.overrides.keys().map(String::as_str).collect();
        format!("override {} on {id}", keys.join(", "))
    } else {
        format!("edit {id}")
    }
}

/// An engine command as a job and its name; `None` for what is not an engine call.
fn job(cmd: Command) -> Option<(String, Job)> {
    Some(match cmd {
        Command::Quit
        | Command::LoadLeases
        | Command::LoadHistory { .. }
        | Command::Power { .. }
        | Command::Batch { .. } => return None,
        Command::Enrol { mac, profile } => (
            match &profile {
                Some(p) => format!("enrol {mac} into {p}"),
                None => format!("enrol {mac}"),
            },
            Box::new(move |e, op| {
                let enrolment = mayu::engine::Enrolment {
                    mac: Some(mac),
                    profile,
                    ..Default::default()
                };
                outcome(e.enrol(enrolment, op))
            }),
        ),
        Command::Assign {
            id, profile, force, ..
        } => (
            format!("assign {id} to {profile}"),
            Box::new(
                move |e, op| match e.assign(id.as_str(), &profile, op, force) {
                    Err(EngineError::ProfileFull { name, quantity }) => Outcome::Full {
                        id,
                        profile: name,
                        quantity,
                    },
                    r => outcome(r),
                },
            ),
        ),
        Command::Unassign { id } => (
            format!("unassign {id}"),
            Box::new(move |e, op| outcome(e.unassign(id.as_str(), op))),
        ),
        Command::Reinstall { id } => (
            format!("reinstall {id}"),
            Box::new(move |e, op| outcome(e.request_reinstall(id.as_str(), op))),
        ),
        Command::Retire { id } => (
            format!("retire {id}"),
            Box::new(move |e, op| match e.retire(id.as_str(), op) {
                Ok(_) => Outcome::Ok,
                Err(err) => Outcome::Failed(err.to_string()),
            }),
        ),
        Command::BootComplete { id } => (
            format!("boot complete {id}"),
            Box::new(move |e, op| outcome(e.boot_complete(id.as_str(), op))),
        ),
        Command::Edit { id, edit } => (
            edit_what(&id, &edit),
            Box::new(move |e, op| outcome(e.edit(id.as_str(), op, edit))),
        ),
    })
}

/// `r1-u04` or `3 machines`.
fn ids_named(ids: &[MachineId]) -> String {
    match ids {
        [one] => one.to_string(),
        many => format!("{} machines", many.len()),
    }
}

/// One power action per machine, in order; what failed (by machine) and any BMC notes.
async fn power_each(
    engine: &Engine,
    power: &mayu::power::Power,
    ids: &[MachineId],
    action: mayu::power::PowerAction,
    operator: &str,
) -> Outcome {
    let mut problems = Vec::new();
    for id in ids {
        let Some(m) = engine.get(id) else {
            problems.push(format!("{id}: no longer in the inventory"));
            continue;
        };
        match power.act(&m, action, operator).await {
            Ok(done) => {
                if let Some(note) = done.note {
                    problems.push(format!("{id}: {note}"));
                } else if let Some(e) = done.power.error {
                    problems.push(format!("{id}: {e}"));
                }
            }
            Err(e) => problems.push(format!("{id}: {e}")),
        }
    }
    if problems.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed(problems.join("; "))
    }
}

/// The machine an engine command is for.
fn target(cmd: &Command) -> Option<&MachineId> {
    match cmd {
        Command::Assign { id, .. }
        | Command::Unassign { id }
        | Command::Reinstall { id }
        | Command::Retire { id }
        | Command::BootComplete { id }
        | Command::Edit { id, .. } => Some(id),
        Command::Batch { .. }
        | Command::LoadHistory { .. }
        | Command::LoadLeases
        | Command::Enrol { .. }
        | Command::Power { .. }
        | Command::Quit => None,
    }
}

/// Runs a batch's commands in order, one after the other: one outcome for all (what failed,
/// by machine), and the undo for the machines whose command landed.
fn run_batch(
    engine: &Engine,
    operator: &str,
    commands: Vec<Command>,
    undo: Option<Undo>,
) -> (Outcome, Option<Undo>) {
    let total = commands.len();
    let mut failed = Vec::new();
    let mut landed = Vec::new();
    for cmd in commands {
        let id = target(&cmd).cloned();
        let Some((_, job)) = job(cmd) else { continue };
        match (job(engine, operator), id) {
            (Outcome::Ok, Some(id)) => landed.push(id),
            (Outcome::Ok, None) => {}
            (Outcome::Full { id, profile, .. }, _) => {
                failed.push(format!("{id}: profile {profile} is full"))
            }
            (Outcome::Failed(e), Some(id)) => failed.push(format!("{id}: {e}")),
            (Outcome::Failed(e), None) => failed.push(e),
        }
    }
    let undo = undo
        .map(|u| Undo {
            before: u
                .before
                .into_iter()
                .filter(|(id, _)| landed.contains(id))
                .collect(),
            ..u
        })
        .filter(|u| !u.before.is_empty());
    let outcome = if failed.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed(format!(
            "{} of {total} failed: {}",
            failed.len(),
            failed.join("; ")
        ))
    };
    (outcome, undo)
}

/// Carries out a command off the UI task; its result comes back as an action.
fn execute(
    cmd: Command,
    engine: &Engine,
    power: Option<&mayu::power::Power>,
    operator: &str,
    tx: &mpsc::UnboundedSender<Action>,
    history: &mut HistoryLoader,
) {
    let engine = engine.clone();
    let operator = operator.to_string();
    let done = tx.clone();
    match cmd {
        Command::Quit => {}
        Command::Power { ids, action } => {
            let what = format!("power {} {}", action.as_str(), ids_named(&ids));
            let Some(power) = power.cloned() else {
                let _ = done.send(Action::Done {
                    what,
                    outcome: Outcome::Failed(
                        "power control is not configured (`power:` in the config)".into(),
                    ),
                    undo: None,
                });
                return;
            };
            tokio::spawn(async move {
                let outcome = power_each(&engine, &power, &ids, action, &operator).await;
                let _ = done.send(Action::Done {
                    what,
                    outcome,
                    undo: None,
                });
            });
        }
        Command::LoadLeases => {
            // a clone under a mutex: cheap enough for the UI task
            let _ = tx.send(Action::LeasesLoaded(engine.leases()));
        }
        Command::LoadHistory { id } => history.request(id, &engine, tx),
        Command::Batch {
            what,
            commands,
            undo,
        } => {
            tokio::task::spawn_blocking(move || {
                let (outcome, undo) = run_batch(&engine, &operator, commands, undo);
                let _ = done.send(Action::Done {
                    what,
                    outcome,
                    undo,
                });
            });
        }
        single => {
            let undo = match &single {
                Command::Assign { undo, .. } => undo.clone(),
                _ => None,
            };
            let Some((what, job)) = job(single) else {
                return;
            };
            tokio::task::spawn_blocking(move || {
                let outcome = job(&engine, &operator);
                // a refused assignment takes its undo to the force question
                let undo = undo.filter(|_| matches!(outcome, Outcome::Ok | Outcome::Full { .. }));
                let _ = done.send(Action::Done {
                    what,
                    outcome,
                    undo,
                });
            });
        }
    }
}

/// What the console's commands act on: the engine, and the BMCs when power is configured.
struct Backends<'a> {
    engine: &'a Engine,
    power: Option<mayu::power::Power>,
}

async fn event_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    backends: Backends<'_>,
    mut rx: broadcast::Receiver<Arc<Event>>,
    operator: &str,
    ui_stop: &CancellationToken,
    signals: &mut StopSignals,
) -> anyhow::Result<()> {
    let Backends { engine, power } = backends;
    let mut term_events = EventStream::new();
    let (tx, mut done) = mpsc::unbounded_channel::<Action>();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut history = HistoryLoader::default();
    let mut redraw: Option<Instant> = Some(Instant::now());
    // the first frame wants the selected machine's history
    if let Some(id) = app.selected_id.clone() {
        history.request(id, engine, &tx);
    }
    loop {
        let deadline = redraw;
        let action = tokio::select! {
            _ = ui_stop.cancelled() => break,
            _ = signals.next() => break,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                redraw = None;
                if !guard.usable() {
                    break;
                }
                app.prepare();
                let now = OffsetDateTime::now_utc();
                let view = AppView { app, now };
                guard
                    .terminal
                    .draw(|f| f.render_widget(&view, f.area()))
                    .context("drawing")?;
                continue;
            }
            ev = term_events.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => keys::action_for(keys::mode(app), k),
                Some(Ok(TermEvent::Resize(..))) => None,
                Some(Ok(_)) => continue,
                // The terminal went away (closed, ssh lost): nobody to tell but the log; the
                // services stop in order as for SIGHUP, which usually arrives with it.
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the terminal went away: stopping");
                    break;
                }
                None => break,
            },
            r = rx.recv() => match r {
                Ok(ev) => Some(Action::Bus(ev)),
                Err(RecvError::Lagged(lost)) => {
                    let (snapshot, fresh) = engine.subscribe();
                    rx = fresh;
                    Some(Action::Resync {
                        snapshot,
                        leases: engine.leases(),
                        services: engine.services(),
                        lost,
                    })
                }
                Err(RecvError::Closed) => break,
            },
            Some(a) = done.recv() => {
                if matches!(a, Action::HistoryLoaded { .. }) {
                    history.finished(engine, &tx);
                }
                Some(a)
            }
            _ = tick.tick() => Some(Action::Tick(OffsetDateTime::now_utc())),
        };
        if let Some(action) = action {
            if let Some(cmd) = update(app, action) {
                execute(cmd, engine, power.as_ref(), operator, &tx, &mut history);
            }
        }
        if app.quit {
            break;
        }
        redraw.get_or_insert_with(|| Instant::now() + COALESCE);
    }
    Ok(())
}
