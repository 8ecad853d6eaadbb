//! Starts the boot services around an engine: boot HTTP, the template reloader,
//! the admin API and the dnsmasq supervisor, all stopped by one cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::boot::{self, BootState};
use crate::lease::ServiceStatus;
use crate::metrics::{self, Metrics};
use crate::templates::{TemplateError, Templates};
use crate::Engine;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("api: {0}")]
    Api(#[from] crate::api::LaunchError),
    #[error("templates are broken:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Templates(Vec<TemplateError>),
    /// `power:` is configured but its secrets file cannot be used (mode, owner, syntax).
    #[error("power: {0}")]
    Power(#[from] crate::power::SecretsError),
}

/// The running services; cancel the token, then await [`Services::stopped`].
pub struct Services {
    pub tasks: Vec<JoinHandle<()>>,
    /// where the listeners actually bound (port 0 in tests).
    pub boot_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub templates: Arc<Templates>,
    /// set at first start: where the new admin token's secret was written.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// power control over IPMI when `power:` is configured (the console's power keys use it).
    pub power: Option<crate::power::Power>,
}

impl Services {
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Spawns the task behind service `name`. If it panics, the panic is not lost with the task:
/// the service turns `failed` with the panic's message (console header, `/api/v1/services`,
/// `mayuctl services`) and the log says so.
pub fn supervised<F>(engine: &Engine, name: &'static str, task: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let inner = tokio::spawn(task);
    let engine = engine.clone();
    tokio::spawn(async move {
        let Err(e) = inner.await else {
            return;
        };
        if !e.is_panic() {
            return;
        }
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        tracing::error!(service = name, panic = %message, "a service task panicked");
        engine.set_service_problem(
            name,
            ServiceStatus::Failed,
            0,
            &format!("panicked: {message}"),
            Some(crate::lease::ServiceProblem {
                code: "panicked".into(),
                reason: format!("{name} stopped: it panicked ({message})"),
                hint: "a bug in mayu: the log file has the details; restart mayu to bring it back"
                    .into(),
            }),
        );
    })
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    crate::listen::bind(addr).map_err(|source| ServiceError::Listen { addr, source })
}

/// Starts every service configured for `engine`.
pub async fn start(engine: Engine, cancel: CancellationToken) -> Result<Services, ServiceError> {
    // From here on every WARN and ERROR record is an event too (the console's log pane).
    crate::logging::bus::forward_to(engine.bus().clone());
    let config = engine.config().clone();
    let for_load = config.clone();
    let loaded = tokio::task::spawn_blocking(move || Templates::load(&for_load))
        .await
        .map_err(|e| {
            ServiceError::Templates(vec![TemplateError {
                file: config.templates.display().to_string(),
                line: None,
                column: None,
                message: format!("loader failed: {e}"),
            }])
        })?;
    let templates = Arc::new(loaded.map_err(ServiceError::Templates)?);
    // Power control over IPMI when configured: a secrets file anyone else could read stops the
    // start (with the file's name) before anything runs.
    let power = match config.power.clone() {
        Some(settings) => Some((
            crate::power::Power::open(engine.clone(), settings.clone())?,
            settings,
        )),
        None => None,
    };
    // Images a profile or a pinned machine would boot but cannot: `mayu check` refuses these,
    // the running services only warn (other profiles keep booting).
    for message in crate::images::startup_warnings(&config, &engine.list()) {
        engine.say(crate::events::LogLevel::Warn, message);
    }
    let mut tasks = Vec::new();

    // The connection caps are shares of the open-file limit; the usual soft limit (1024) is far
    // below what the hard limit allows, so take all of it first.
    match crate::listen::raise_fd_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(before, after, "raised the open-file limit");
        }
        Ok((_, limit)) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }

    let boot_listener = listen(config.http.boot).await?;
    let boot_addr = boot_listener
        .local_addr()
        .map_err(|source| ServiceError::Listen {
            addr: config.http.boot,
            source,
        })?;
    // One registry for both listeners; its bus feed subscribes before anything publishes.
    let metrics = Metrics::new();
    tasks.push(metrics.spawn_feed(engine.clone(), cancel.clone()));
    let app = metrics::instrument(
        boot::router(BootState {
            engine: engine.clone(),
            templates: templates.clone(),
            boot_addr,
        }),
        &metrics,
        "boot",
    );
    let c = cancel.clone();
    let e = engine.clone();
    let how = crate::listen::Serve {
        port: crate::listen::Port::Boot,
        limits: crate::listen::Limits::boot(&config.http),
        stats: metrics.http.clone(),
        tls: None,
    };
    let max_boot = how.limits.max_connections;
    tasks.push(supervised(&engine, "boot-http", async move {
        e.set_service(
            "boot-http",
            ServiceStatus::Running,
            0,
            &boot_addr.to_string(),
        );
        let served = crate::listen::serve(boot_listener, app, how, c).await;
        match served {
            Ok(()) => e.set_service("boot-http", ServiceStatus::Stopped, 0, ""),
            Err(err) => e.set_service("boot-http", ServiceStatus::Failed, 0, &err.to_string()),
        }
    }));
    tracing::info!(%boot_addr, max_connections = max_boot, "boot HTTP listening");

    let (t, b, c, e) = (
        templates.clone(),
        engine.bus().clone(),
        cancel.clone(),
        engine.clone(),
    );
    tasks.push(supervised(&engine, "templates", async move {
        e.set_service(
            "templates",
            ServiceStatus::Watching,
            0,
            &e.config().templates.display().to_string(),
        );
        if let Err(err) = crate::templates::watch(t, b, c).await {
            tracing::error!(error = %err, "template watcher failed; hot reload is off");
            e.set_service("templates", ServiceStatus::Failed, 0, &err.to_string());
        }
    }));

    tasks.push(supervised(
        &engine,
        crate::dnsmasq::SERVICE,
        crate::dnsmasq::run(engine.clone(), cancel.clone()),
    ));
    if let Some(health) = engine.audit_health() {
        tasks.push(supervised(
            &engine,
            "audit",
            crate::inventory::audit::report(engine.clone(), health, cancel.clone()),
        ));
    }

    // A shared inventory (cluster:): its link to etcd is a service of its own.
    if let Some(mut link) = engine.store_link() {
        let (e, c) = (engine.clone(), cancel.clone());
        tasks.push(supervised(&engine, "cluster", async move {
            loop {
                let now = link.borrow_and_update().clone();
                let status = if now.up {
                    ServiceStatus::Running
                } else {
                    ServiceStatus::Retrying
                };
                e.set_service("cluster", status, 0, &now.detail);
                tokio::select! {
                    _ = c.cancelled() => break,
                    changed = link.changed() => if changed.is_err() { break },
                }
            }
        }));
    }

    let (e, c) = (engine.clone(), cancel.clone());
    tasks.push(supervised(&engine, "stalls", async move {
        let mut every = tokio::time::interval(crate::engine::stalls::SCAN_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = c.cancelled() => break,
                _ = every.tick() => e.scan_stalls(time::OffsetDateTime::now_utc()),
            }
        }
    }));

    // The power poller, when power control is configured.
    let power = match power {
        Some((p, settings)) => {
            if settings.poll.is_zero() {
                engine.set_service(
                    "power",
                    ServiceStatus::Running,
                    0,
                    "on request only (poll: 0s)",
                );
            } else {
                let (e, c, poller) = (engine.clone(), cancel.clone(), p.clone());
                tasks.push(supervised(&engine, "power", async move {
                    let detail = format!(
                        "polling every {} s, {} BMCs at a time",
                        settings.poll.as_secs(),
                        settings.concurrency
                    );
                    e.set_service("power", ServiceStatus::Running, 0, &detail);
                    poller.run_poller(c).await;
                    e.set_service("power", ServiceStatus::Stopped, 0, "");
                }));
            }
            Some(p)
        }
        None => None,
    };

    let renderer: Arc<dyn api::Renderer> = Arc::new(api::render::TemplateRenderer {
        templates: templates.clone(),
        boot_addr,
    });
    let launched = api::launch_with_power(
        engine.clone(),
        metrics,
        Some(renderer),
        power.clone(),
        cancel.clone(),
    )
    .await?;
    tasks.push(launched.task);
    tracing::info!(api_addr = %launched.addr, tls = launched.tls, "admin API listening");

    Ok(Services {
        tasks,
        boot_addr,
        api_addr: launched.addr,
        templates,
        admin_token_file: launched.created.map(|c| c.secret_file),
        power,
    })
}
