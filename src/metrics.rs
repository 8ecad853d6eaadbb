//! Prometheus metrics, kept and written by the `prometheus-client` crate: counters fed from
//! the event bus (boot steps by phase and profile, asset bytes, dnsmasq restarts, template
//! reloads, stalls, power), request latency histograms recorded by an axum middleware per
//! matched route, connection counters kept by the listeners, and machines by state, stalls,
//! profile fill and audit health read from the engine at scrape time.
//!
//! Nothing here takes a process-wide lock on the request path: each series is an atomic (a
//! histogram a lock of its own), found through its family's read-mostly map by a label set
//! built on the stack from `&'static str`s and the matched route's shared string.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventKind};
use crate::machine::{MachineId, State as MachineState};
use crate::power::PowerState;
use crate::Engine;

/// What `/metrics` answers with: the classic Prometheus text format, version 0.0.4, which
/// `promtool check metrics` lints and every scraper accepts. The crate's encoder writes
/// OpenMetrics, which differs from it only for counters (the family named without `_total`,
/// the samples with it) and the closing `# EOF`; [`MayuCounter`] writes counters the classic
/// way, under the names dashboards already use, and the `# EOF` is left out.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds in seconds: from sub-millisecond script renders to multi-second asset streams.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Power states the `mayu_machines_power` gauge always shows (one pre-made child each).
const POWER_STATES: [PowerState; 4] = [
    PowerState::On,
    PowerState::Off,
    PowerState::Unreachable,
    PowerState::Error,
];

/// Writes `v` as a label value, escaped as the text format requires (the crate writes `&str`
/// values as they are, so anything that comes from config or requests goes through here).
fn escaped(enc: &mut LabelValueEncoder, v: &str) -> fmt::Result {
    let mut rest = v;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        let (plain, from) = rest.split_at(i);
        enc.write_str(plain)?;
        let mut chars = from.chars();
        enc.write_str(match chars.next() {
            Some('\\') => "\\\\",
            Some('"') => "\\\"",
            _ => "\\n",
        })?;
        rest = chars.as_str();
    }
    enc.write_str(rest)
}

/// A profile name as a label value (`none` for a machine without one).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Profile(Option<String>);

impl EncodeLabelValue for Profile {
    fn encode(&self, enc: &mut LabelValueEncoder) -> fmt::Result {
        escaped(enc, self.0.as_deref().unwrap_or("none"))
    }
}

/// The matched route template (never the raw path: ids in paths would make one series per
/// machine); cloning it shares axum's string, so building a label set allocates nothing.
#[derive(Debug, Clone)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", |p| p.as_str())
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, enc: &mut LabelValueEncoder) -> fmt::Result {
        escaped(enc, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseProfile {
    phase: &'static str,
    profile: Profile,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionState {
    action: &'static str,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: &'static str,
    method: &'static str,
    route: Route,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    listener: &'static str,
    method: &'static str,
    route: Route,
    status: u16,
}

/// The method as a label without allocating: the standard ones by name, any other `other`
/// (no route answers them, and a client must not be able to mint series).
fn method_label(m: &Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// A counter whose family and samples share one name ending in `_total`, as in the classic
/// text format and as dashboards know them. The crate's own counter appends `_total` to the
/// samples only, and promtool (which reads the classic format) then finds samples without
/// help or type; this one declares itself a counter and writes its sample under the
/// registered name.
#[derive(Debug, Clone, Default)]
pub struct MayuCounter(Counter);

impl MayuCounter {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }

    /// Raises the counter to `n` if it is below (a running total reported by someone else).
    pub fn raise_to(&self, n: u64) {
        self.0.inner().fetch_max(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for MayuCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for MayuCounter {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        encode_sample(encoder, self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Writes one counter or gauge sample under its family's name, with no suffix: the way every
/// series of `/metrics` is written (see [`MayuCounter`]).
pub(crate) fn encode_sample(mut encoder: MetricEncoder, v: u64) -> fmt::Result {
    encoder.encode_gauge(&v)
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

struct Inner {
    /// every series below (clones share their values) and the listeners' counters.
    registry: Registry,
    boot_steps: Family<PhaseProfile, MayuCounter>,
    asset_bytes: Family<PhaseLabel, MayuCounter>,
    dnsmasq_restarts: MayuCounter,
    template_reloads_ok: MayuCounter,
    template_reload_failures: MayuCounter,
    stalls: Family<PhaseProfile, MayuCounter>,
    /// one pre-made child a state of `mayu_machines_power`, in [`POWER_STATES`] order.
    power_gauges: [Gauge; 4],
    power_actions: Family<ActionState, MayuCounter>,
    events_missed: MayuCounter,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    responses: Family<ResponseLabels, MayuCounter>,
    /// machine → its last power state, so a change moves it between gauges. Only the bus
    /// feed touches it (never a request or a scrape).
    power: Mutex<HashMap<MachineId, PowerState>>,
}

/// The metrics registry; cheap to clone, all clones share one set of series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
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

/// Registers `metric` under `name` with `help`; the crate appends a full stop to every help
/// text, so ours lose theirs first and read as before.
fn register(reg: &mut Registry, name: &str, help: &str, metric: impl Metric) {
    reg.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

impl Metrics {
    pub fn new() -> Metrics {
        let (tx, _) = watch::channel(0);
        let http = crate::listen::HttpStats::default();
        let mut registry = Registry::default();
        let boot_steps = Family::<PhaseProfile, MayuCounter>::default();
        register(
            &mut registry,
            "mayu_boot_steps_total",
            "Boot steps served, by phase and the machine's profile.",
            boot_steps.clone(),
        );
        let asset_bytes = Family::<PhaseLabel, MayuCounter>::default();
        register(
            &mut registry,
            "mayu_asset_bytes_total",
            "Bytes of kernels, initrds and configs streamed to machines, by phase.",
            asset_bytes.clone(),
        );
        let dnsmasq_restarts = MayuCounter::default();
        register(
            &mut registry,
            "mayu_dnsmasq_restarts_total",
            "Times the dnsmasq child was restarted.",
            dnsmasq_restarts.clone(),
        );
        let template_reload_failures = MayuCounter::default();
        register(
            &mut registry,
            "mayu_template_reload_failures_total",
            "Template reloads refused (the last good set kept serving).",
            template_reload_failures.clone(),
        );
        let template_reloads_ok = MayuCounter::default();
        register(
            &mut registry,
            "mayu_template_reloads_total",
            "Template reloads that succeeded.",
            template_reloads_ok.clone(),
        );
        let stalls = Family::<PhaseProfile, MayuCounter>::default();
        register(
            &mut registry,
            "mayu_machine_stalls_total",
            "Machines that stayed in one boot phase longer than their profile's stall_after, by that phase and profile.",
            stalls.clone(),
        );
        let machines_power = Family::<StateLabel, Gauge>::default();
        let power_gauges = POWER_STATES.map(|s| {
            machines_power
                .get_or_create(&StateLabel { state: s.as_str() })
                .clone()
        });
        register(
            &mut registry,
            "mayu_machines_power",
            "Machines with a BMC by the power state it last reported (on, off, unreachable, error).",
            machines_power,
        );
        let power_actions = Family::<ActionState, MayuCounter>::default();
        register(
            &mut registry,
            "mayu_power_actions_total",
            "Power actions operators asked for, by action and the state the BMC then reported.",
            power_actions.clone(),
        );
        let events_missed = MayuCounter::default();
        register(
            &mut registry,
            "mayu_events_missed_total",
            "Bus events the metrics feed missed because it fell behind.",
            events_missed.clone(),
        );
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        register(
            &mut registry,
            "mayu_http_request_duration_seconds",
            "Time to answer a request, by listener, method and matched route.",
            latency.clone(),
        );
        let responses = Family::<ResponseLabels, MayuCounter>::default();
        register(
            &mut registry,
            "mayu_http_responses_total",
            "Responses sent, by listener, method, matched route and status.",
            responses.clone(),
        );
        registry.register_collector(Box::new(http.clone()));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                boot_steps,
                asset_bytes,
                dnsmasq_restarts,
                template_reloads_ok,
                template_reload_failures,
                stalls,
                power_gauges,
                power_actions,
                events_missed,
                latency,
                responses,
                power: Mutex::new(HashMap::new()),
            }),
            seen: Arc::new(tx),
            http,
        }
    }

    fn power_gauge(&self, state: PowerState) -> &Gauge {
        let i = POWER_STATES.iter().position(|s| *s == state).unwrap_or(0);
        &self.inner.power_gauges[i]
    }

    /// Moves machine `id` to power state `now` (or out of the gauges when None).
    fn set_power(&self, id: &MachineId, now: Option<PowerState>) {
        let mut map = self.inner.power.lock().unwrap_or_else(|p| p.into_inner());
        let before = match now {
            Some(s) => map.insert(id.clone(), s),
            None => map.remove(id),
        };
        drop(map);
        if before == now {
            return;
        }
        if let Some(s) = before {
            self.power_gauge(s).dec();
        }
        if let Some(s) = now {
            self.power_gauge(s).inc();
        }
    }

    /// Counts one bus event (boot steps carry their machine's profile).
    pub fn record(&self, ev: &Event) {
        let m = &self.inner;
        match &ev.kind {
            EventKind::BootStep {
                phase,
                bytes,
                profile,
                ..
            } => {
                m.boot_steps
                    .get_or_create(&PhaseProfile {
                        phase: phase.key(),
                        profile: Profile(profile.clone()),
                    })
                    .inc();
                if let Some(b) = bytes {
                    m.asset_bytes
                        .get_or_create(&PhaseLabel { phase: phase.key() })
                        .inc_by(*b);
                }
            }
            EventKind::Stalled { stall, profile, .. } => {
                m.stalls
                    .get_or_create(&PhaseProfile {
                        phase: stall.phase.key(),
                        profile: Profile(profile.clone()),
                    })
                    .inc();
            }
            EventKind::Service { name, restarts, .. } if name == "dnsmasq" => {
                // The supervisor reports its running total; keep the highest so a counter
                // never goes backwards.
                m.dnsmasq_restarts.raise_to(u64::from(*restarts));
            }
            EventKind::Power {
                id, power, action, ..
            } => {
                self.set_power(id, Some(power.state));
                if let Some(a) = action {
                    m.power_actions
                        .get_or_create(&ActionState {
                            action: a.as_str(),
                            state: power.state.as_str(),
                        })
                        .inc();
                }
            }
            EventKind::MachineRetired { id, .. } => self.set_power(id, None),
            EventKind::TemplatesReloaded { ok, .. } => {
                if *ok {
                    m.template_reloads_ok.inc();
                } else {
                    m.template_reload_failures.inc();
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
                            metrics.inner.events_missed.inc_by(n);
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

    /// Records one answered request. `route` is the matched route (None: no route matched).
    pub fn observe_request(
        &self,
        listener: &'static str,
        method: &Method,
        route: Option<MatchedPath>,
        status: u16,
        took: Duration,
    ) {
        self.observe(listener, method_label(method), route, status, took);
    }

    fn observe(
        &self,
        listener: &'static str,
        method: &'static str,
        route: Option<MatchedPath>,
        status: u16,
        took: Duration,
    ) {
        let labels = RouteLabels {
            listener,
            method,
            route: Route(route),
        };
        self.inner
            .latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let RouteLabels {
            listener,
            method,
            route,
        } = labels;
        self.inner
            .responses
            .get_or_create(&ResponseLabels {
                listener,
                method,
                route,
                status,
            })
            .inc();
    }

    /// The text exposition of every metric (serve it as [`CONTENT_TYPE`]).
    pub fn render(&self, engine: &Engine) -> String {
        let mut out = String::new();
        let mut at_scrape = Registry::default();
        at_scrape.register_collector(Box::new(EngineCollector {
            engine: engine.clone(),
        }));
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        let written =
            prometheus_client::encoding::text::encode_registry(&mut out, &self.inner.registry)
                .and_then(|()| {
                    prometheus_client::encoding::text::encode_registry(&mut out, &at_scrape)
                });
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Writes a series without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: u64,
) -> fmt::Result {
    encode_sample(encoder.encode_descriptor(name, help, None, kind)?, v)
}

/// Writes a family with one label, `key`, whose values are known only now.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    key: &str,
    series: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (value, v) in series {
        let labels = [(key, EscapedStr(value))];
        encode_sample(family.encode_family(&labels)?, v)?;
    }
    Ok(())
}

/// A borrowed label value, escaped.
struct EscapedStr<'a>(&'a str);

impl EncodeLabelValue for EscapedStr<'_> {
    fn encode(&self, enc: &mut LabelValueEncoder) -> fmt::Result {
        escaped(enc, self.0)
    }
}

/// What the engine knows at scrape time: machines by state, stalls, profile fill, audit.
struct EngineCollector {
    engine: Engine,
}

impl fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EngineCollector")
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let engine = &self.engine;
        if let Some(audit) = engine.audit_health() {
            let h = audit.borrow().clone();
            single(
                &mut encoder,
                "mayu_audit_pending",
                "Changes journalled but not yet committed to the git audit.",
                MetricType::Gauge,
                count(h.pending),
            )?;
            single(
                &mut encoder,
                "mayu_audit_commit_failures_total",
                "Git audit commits that failed (each is retried; no change is dropped).",
                MetricType::Counter,
                h.failures,
            )?;
            single(
                &mut encoder,
                "mayu_audit_committed_total",
                "Changes committed to the git audit since start.",
                MetricType::Counter,
                h.committed,
            )?;
        }

        let machines = engine.list();
        family(
            &mut encoder,
            (
                "mayu_machines",
                "Machines in the inventory, by state.",
                MetricType::Gauge,
            ),
            "state",
            MachineState::ALL.map(|st| {
                let n = machines.iter().filter(|m| m.state == st).count();
                (st.as_str(), count(n))
            }),
        )?;

        let profiles = engine.profiles();
        let stalled = engine.stalled_by_profile();
        let names = profiles
            .iter()
            .map(|p| Some(p.name.clone()))
            .chain([None])
            .collect::<Vec<_>>();
        family(
            &mut encoder,
            (
                "mayu_machines_stalled",
                "Machines stalled now (in one boot phase longer than their profile's stall_after), by profile.",
                MetricType::Gauge,
            ),
            "profile",
            names.iter().map(|name| {
                let n = stalled.get(name).copied().unwrap_or(0);
                (name.as_deref().unwrap_or("none"), count(n))
            }),
        )?;
        family(
            &mut encoder,
            (
                "mayu_profile_assigned",
                "Machines assigned to each profile.",
                MetricType::Gauge,
            ),
            "profile",
            profiles
                .iter()
                .map(|p| (p.name.as_str(), u64::from(p.assigned))),
        )?;
        family(
            &mut encoder,
            (
                "mayu_profile_quantity",
                "Machines each profile takes (profiles without a limit are left out).",
                MetricType::Gauge,
            ),
            "profile",
            profiles
                .iter()
                .filter_map(|p| Some((p.name.as_str(), u64::from(p.quantity?)))),
        )?;
        Ok(())
    }
}

#[derive(Clone)]
struct Tracked {
    metrics: Metrics,
    listener: &'static str,
}

async fn track(State(t): State<Tracked>, req: Request, next: Next) -> Response {
    // Nothing is allocated or formatted: the route is axum's shared string, the method a
    // static name.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    t.metrics.observe(
        t.listener,
        method,
        route,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        let mut reg = Registry::default();
        let fam = Family::<PhaseProfile, MayuCounter>::default();
        fam.get_or_create(&PhaseProfile {
            phase: "ipxe",
            profile: Profile(Some("a\\b\"c\nd".into())),
        })
        .inc();
        reg.register("t_total", "T", fam);
        prometheus_client::encoding::text::encode_registry(&mut out, &reg).unwrap();
        assert!(
            out.contains("t_total{phase=\"ipxe\",profile=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn counters_keep_their_names_help_and_type() {
        let m = Metrics::new();
        m.inner.dnsmasq_restarts.raise_to(2);
        m.inner.dnsmasq_restarts.raise_to(1);
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &m.inner.registry).unwrap();
        assert!(
            out.contains(
                "# HELP mayu_dnsmasq_restarts_total Times the dnsmasq child was restarted.\n\
                 # TYPE mayu_dnsmasq_restarts_total counter\n\
                 mayu_dnsmasq_restarts_total 2\n"
            ),
            "{out}"
        );
        assert!(out.contains("mayu_machines_power{state=\"unreachable\"} 0\n"));
        assert!(out.contains("mayu_http_connections_open{listener=\"boot\"} 0\n"));
        assert!(!out.contains(".."), "{out}");
        assert!(!out.contains("_total_total"), "{out}");
    }

    #[test]
    fn a_machine_moves_between_power_gauges_and_leaves_when_retired() {
        let m = Metrics::new();
        let id = MachineId::derive(Some("sn-1"), None, None).unwrap();
        let now = |s: PowerState| m.power_gauge(s).get();
        m.set_power(&id, Some(PowerState::On));
        m.set_power(&id, Some(PowerState::On));
        assert_eq!((now(PowerState::On), now(PowerState::Off)), (1, 0));
        m.set_power(&id, Some(PowerState::Off));
        assert_eq!((now(PowerState::On), now(PowerState::Off)), (0, 1));
        m.set_power(&id, None);
        assert_eq!((now(PowerState::On), now(PowerState::Off)), (0, 0));
    }
}
