//! Prometheus metrics: counters fed from the event bus (boot steps by phase and profile, asset
//! bytes, dnsmasq restarts, template reload failures), request latency histograms recorded by
//! an axum middleware per matched route, and machines by state read from the engine at scrape
//! time. The text format is written here; it is small enough not to need a metrics crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventKind};
use crate::machine::State as MachineState;
use crate::Engine;

/// Upper bounds in seconds: from sub-millisecond script renders to multi-second asset streams.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// per bucket (not cumulative; summed when written).
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// (listener, method, route)
type RouteKey = (String, String, String);

#[derive(Debug, Default)]
struct Counters {
    /// (phase, profile) → steps
    boot_steps: BTreeMap<(String, String), u64>,
    /// phase → bytes streamed
    asset_bytes: BTreeMap<String, u64>,
    dnsmasq_restarts: u64,
    template_reloads_ok: u64,
    template_reload_failures: u64,
    latency: BTreeMap<RouteKey, Histogram>,
    /// (listener, method, route, status) → responses
    responses: BTreeMap<(String, String, String, u16), u64>,
    /// events the feed missed because it fell behind the bus.
    events_missed: u64,
    /// (phase, profile) → stalls begun
    stalls: BTreeMap<(String, String), u64>,
    /// machine → its last power state (from `power` events; forgotten when retired)
    power: BTreeMap<crate::machine::MachineId, crate::power::PowerState>,
    /// (action, resulting state) → operator power actions
    power_actions: BTreeMap<(String, String), u64>,
}

/// The metrics registry; cheap to clone, all clones share one set of counters.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Counters>>,
    /// the sequence number of the last bus event counted, so tests can wait for the feed.
    seen: Arc<watch::Sender<u64>>,
    /// connection and event-stream counters, kept by the listeners themselves.
    pub http: crate::listen::HttpStats,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Metrics {
        let (tx, _) = watch::channel(0);
        Metrics {
            inner: Arc::new(Mutex::new(Counters::default())),
            seen: Arc::new(tx),
            http: crate::listen::HttpStats::default(),
        }
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one bus event (boot steps carry their machine's profile).
    pub fn record(&self, ev: &Event) {
        match &ev.kind {
            EventKind::BootStep {
                phase,
                bytes,
                profile,
                ..
            } => {
                let profile = profile.clone().unwrap_or_else(|| "none".into());
                let mut c = self.counters();
                *c.boot_steps
                    .entry((phase.key().to_string(), profile))
                    .or_default() += 1;
                if let Some(b) = bytes {
                    *c.asset_bytes.entry(phase.key().to_string()).or_default() += b;
                }
            }
            EventKind::Stalled { stall, profile, .. } => {
                let profile = profile.clone().unwrap_or_else(|| "none".into());
                *self
                    .counters()
                    .stalls
                    .entry((stall.phase.key().to_string(), profile))
                    .or_default() += 1;
            }
            EventKind::Service { name, restarts, .. } if name == "dnsmasq" => {
                // The supervisor reports its running total; keep the highest so a counter
                // never goes backwards.
                let mut c = self.counters();
                c.dnsmasq_restarts = c.dnsmasq_restarts.max(u64::from(*restarts));
            }
            EventKind::Power {
                id, power, action, ..
            } => {
                let mut c = self.counters();
                c.power.insert(id.clone(), power.state);
                if let Some(a) = action {
                    *c.power_actions
                        .entry((a.as_str().to_string(), power.state.as_str().to_string()))
                        .or_default() += 1;
                }
            }
            EventKind::MachineRetired { id, .. } => {
                self.counters().power.remove(id);
            }
            EventKind::TemplatesReloaded { ok, .. } => {
                let mut c = self.counters();
                if *ok {
                    c.template_reloads_ok += 1;
                } else {
                    c.template_reload_failures += 1;
                }
            }
            _ => {}
        }
        self.seen.send_replace(ev.seq);
    }

    /// Subscribes to the engine's bus now (so nothing published after this call is missed) and
    /// counts its events on a task until `cancel`.
    pub fn spawn_feed(&self, engine: Engine, cancel: CancellationToken) -> JoinHandle<()> {
        let mut rx = engine.bus().subscribe();
        let metrics = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = rx.recv() => match r {
                        Ok(ev) => metrics.record(&ev),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            metrics.counters().events_missed += n;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        })
    }

    /// Waits until the feed has counted the event numbered `seq` (or a later one).
    pub async fn counted(&self, seq: u64) {
        let mut rx = self.seen.subscribe();
        let _ = rx.wait_for(|s| *s >= seq).await;
    }

    /// Records one answered request.
    pub fn observe_request(
        &self,
        listener: &str,
        method: &str,
        route: &str,
        status: u16,
        took: Duration,
    ) {
        let mut c = self.counters();
        c.latency
            .entry((listener.to_string(), method.to_string(), route.to_string()))
            .or_default()
            .observe(took.as_secs_f64());
        *c.responses
            .entry((
                listener.to_string(),
                method.to_string(),
                route.to_string(),
                status,
            ))
            .or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, engine: &Engine) -> String {
        let mut out = String::new();
        let c = self.counters();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };

        head(
            &mut out,
            "mayu_boot_steps_total",
            "counter",
            "Boot steps served, by phase and the machine's profile.",
        );
        for ((phase, profile), n) in &c.boot_steps {
            let _ = writeln!(
                out,
                "mayu_boot_steps_total{{phase=\"{}\",profile=\"{}\"}} {n}",
                escape(phase),
                escape(profile)
            );
        }

        head(
            &mut out,
            "mayu_asset_bytes_total",
            "counter",
            "Bytes of kernels, initrds and configs streamed to machines, by phase.",
        );
        for (phase, n) in &c.asset_bytes {
            let _ = writeln!(
                out,
                "mayu_asset_bytes_total{{phase=\"{}\"}} {n}",
                escape(phase)
            );
        }

        head(
            &mut out,
            "mayu_dnsmasq_restarts_total",
            "counter",
            "Times the dnsmasq child was restarted.",
        );
        let _ = writeln!(out, "mayu_dnsmasq_restarts_total {}", c.dnsmasq_restarts);

        head(
            &mut out,
            "mayu_template_reload_failures_total",
            "counter",
            "Template reloads refused (the last good set kept serving).",
        );
        let _ = writeln!(
            out,
            "mayu_template_reload_failures_total {}",
            c.template_reload_failures
        );
        head(
            &mut out,
            "mayu_template_reloads_total",
            "counter",
            "Template reloads that succeeded.",
        );
        let _ = writeln!(out, "mayu_template_reloads_total {}", c.template_reloads_ok);

        head(
            &mut out,
            "mayu_machine_stalls_total",
            "counter",
            "Machines that stayed in one boot phase longer than their profile's stall_after, by that phase and profile.",
        );
        for ((phase, profile), n) in &c.stalls {
            let _ = writeln!(
                out,
                "mayu_machine_stalls_total{{phase=\"{}\",profile=\"{}\"}} {n}",
                escape(phase),
                escape(profile)
            );
        }

        head(
            &mut out,
            "mayu_machines_power",
            "gauge",
            "Machines with a BMC by the power state it last reported (on, off, unreachable, error).",
        );
        {
            use crate::power::PowerState;
            for state in [
                PowerState::On,
                PowerState::Off,
                PowerState::Unreachable,
                PowerState::Error,
            ] {
                let n = c.power.values().filter(|s| **s == state).count();
                let _ = writeln!(out, "mayu_machines_power{{state=\"{state}\"}} {n}");
            }
        }
        head(
            &mut out,
            "mayu_power_actions_total",
            "counter",
            "Power actions operators asked for, by action and the state the BMC then reported.",
        );
        for ((action, state), n) in &c.power_actions {
            let _ = writeln!(
                out,
                "mayu_power_actions_total{{action=\"{}\",state=\"{}\"}} {n}",
                escape(action),
                escape(state)
            );
        }

        head(
            &mut out,
            "mayu_events_missed_total",
            "counter",
            "Bus events the metrics feed missed because it fell behind.",
        );
        let _ = writeln!(out, "mayu_events_missed_total {}", c.events_missed);

        self.http.render(&mut out);

        head(
            &mut out,
            "mayu_http_request_duration_seconds",
            "histogram",
            "Time to answer a request, by listener, method and matched route.",
        );
        for ((listener, method, route), h) in &c.latency {
            let labels = format!(
                "listener=\"{}\",method=\"{}\",route=\"{}\"",
                escape(listener),
                escape(method),
                escape(route)
            );
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let _ = writeln!(
                    out,
                    "mayu_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "mayu_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "mayu_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "mayu_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }

        head(
            &mut out,
            "mayu_http_responses_total",
            "counter",
            "Responses sent, by listener, method, matched route and status.",
        );
        for ((listener, method, route, status), n) in &c.responses {
            let _ = writeln!(
                out,
                "mayu_http_responses_total{{listener=\"{}\",method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(listener),
                escape(method),
                escape(route)
            );
        }
        drop(c);

        if let Some(audit) = engine.audit_health() {
            let h = audit.borrow().clone();
            head(
                &mut out,
                "mayu_audit_pending",
                "gauge",
                "Changes journalled but not yet committed to the git audit.",
            );
            let _ = writeln!(out, "mayu_audit_pending {}", h.pending);
            head(
                &mut out,
                "mayu_audit_commit_failures_total",
                "counter",
                "Git audit commits that failed (each is retried; no change is dropped).",
            );
            let _ = writeln!(out, "mayu_audit_commit_failures_total {}", h.failures);
            head(
                &mut out,
                "mayu_audit_committed_total",
                "counter",
                "Changes committed to the git audit since start.",
            );
            let _ = writeln!(out, "mayu_audit_committed_total {}", h.committed);
        }

        let machines = engine.list();
        head(
            &mut out,
            "mayu_machines",
            "gauge",
            "Machines in the inventory, by state.",
        );
        for st in MachineState::ALL {
            let n = machines.iter().filter(|m| m.state == st).count();
            let _ = writeln!(out, "mayu_machines{{state=\"{}\"}} {n}", st.as_str());
        }

        let profiles = engine.profiles();
        head(
            &mut out,
            "mayu_machines_stalled",
            "gauge",
            "Machines stalled now (in one boot phase longer than their profile's stall_after), by profile.",
        );
        let stalled = engine.stalled_by_profile();
        let names = profiles.iter().map(|p| Some(p.name.clone())).chain([None]);
        for name in names {
            let n = stalled.get(&name).copied().unwrap_or(0);
            let label = name.as_deref().unwrap_or("none");
            let _ = writeln!(
                out,
                "mayu_machines_stalled{{profile=\"{}\"}} {n}",
                escape(label)
            );
        }
        head(
            &mut out,
            "mayu_profile_assigned",
            "gauge",
            "Machines assigned to each profile.",
        );
        for p in &profiles {
            let _ = writeln!(
                out,
                "mayu_profile_assigned{{profile=\"{}\"}} {}",
                escape(&p.name),
                p.assigned
            );
        }
        head(
            &mut out,
            "mayu_profile_quantity",
            "gauge",
            "Machines each profile takes (profiles without a limit are left out).",
        );
        for p in &profiles {
            if let Some(q) = p.quantity {
                let _ = writeln!(
                    out,
                    "mayu_profile_quantity{{profile=\"{}\"}} {q}",
                    escape(&p.name)
                );
            }
        }
        out
    }
}

#[derive(Clone)]
struct Tracked {
    metrics: Metrics,
    listener: &'static str,
}

async fn track(State(t): State<Tracked>, req: Request, next: Next) -> Response {
    // The matched route template, never the raw path: ids in paths would make one series per
    // machine.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    t.metrics.observe_request(
        t.listener,
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed(),
    );
    resp
}

/// Wraps every route of `router` so its latency and status are recorded under `listener`
/// (`"api"`, `"boot"`). Apply after all routes are added.
pub fn instrument<S>(router: Router<S>, metrics: &Metrics, listener: &'static str) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(axum::middleware::from_fn_with_state(
        Tracked {
            metrics: metrics.clone(),
            listener,
        },
        track,
    ))
}
