//! `/metrics` over loopback as scrapers and dashboards see it, now that `prometheus-client`
//! writes it: the content type, every family with the name, type and help it had before the
//! move (counters keep `_total` on both the family and its samples), every sample belonging
//! to a declared family, `promtool check metrics`, and exact counts when many requests are
//! answered at once.
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod api_fixture;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use api_fixture::{register, start};
use mayu::events::EventKind;
use mayu::machine::{Phase, Stall};
use mayu::power::{PowerAction, PowerState, PowerStatus};
use support::promtool_accepts;

const WAIT: Duration = Duration::from_secs(10);

/// Every family `/metrics` wrote before it moved to prometheus-client: (name, type, help).
#[rustfmt::skip]
const FAMILIES: &[(&str, &str, &str)] = &[
    ("mayu_boot_steps_total", "counter", "Boot steps served, by phase and the machine's profile."),
    ("mayu_asset_bytes_total", "counter", "Bytes of kernels, initrds and configs streamed to machines, by phase."),
    ("mayu_dnsmasq_restarts_total", "counter", "Times the dnsmasq child was restarted."),
    ("mayu_template_reload_failures_total", "counter", "Template reloads refused (the last good set kept serving)."),
    ("mayu_template_reloads_total", "counter", "Template reloads that succeeded."),
    ("mayu_machine_stalls_total", "counter", "Machines that stayed in one boot phase longer than their profile's stall_after, by that phase and profile."),
    ("mayu_machines_power", "gauge", "Machines with a BMC by the power state it last reported (on, off, unreachable, error)."),
    ("mayu_power_actions_total", "counter", "Power actions operators asked for, by action and the state the BMC then reported."),
    ("mayu_events_missed_total", "counter", "Bus events the metrics feed missed because it fell behind."),
    ("mayu_http_connections_open", "gauge", "Connections open now, by listener."),
    ("mayu_http_connection_limit", "gauge", "Most connections a listener keeps open at once."),
    ("mayu_http_connections_accepted_total", "counter", "Connections accepted, by listener."),
    ("mayu_http_connection_limit_reached_total", "counter", "Times a listener stopped accepting because its connection limit was reached."),
    ("mayu_http_header_timeouts_total", "counter", "Connections closed for not sending request headers (or a TLS handshake) in time, idle keep-alive connections included."),
    ("mayu_http_connections_stalled_total", "counter", "Connections dropped after moving no byte for twice the idle timeout."),
    ("mayu_http_connections_dropped_total", "counter", "Connections closed by the server, such as event-stream clients that fell behind."),
    ("mayu_sse_subscribers", "gauge", "Clients connected to the event stream now."),
    ("mayu_sse_dropped_total", "counter", "Event-stream clients disconnected for falling behind."),
    ("mayu_http_request_duration_seconds", "histogram", "Time to answer a request, by listener, method and matched route."),
    ("mayu_http_responses_total", "counter", "Responses sent, by listener, method, matched route and status."),
    ("mayu_audit_pending", "gauge", "Changes journalled but not yet committed to the git audit."),
    ("mayu_audit_commit_failures_total", "counter", "Git audit commits that failed (each is retried; no change is dropped)."),
    ("mayu_audit_committed_total", "counter", "Changes committed to the git audit since start."),
    ("mayu_machines", "gauge", "Machines in the inventory, by state."),
    ("mayu_machines_stalled", "gauge", "Machines stalled now (in one boot phase longer than their profile's stall_after), by profile."),
    ("mayu_profile_assigned", "gauge", "Machines assigned to each profile."),
    ("mayu_profile_quantity", "gauge", "Machines each profile takes (profiles without a limit are left out)."),
];

/// Scrapes `/metrics`: (content type, body).
async fn scrape(url: &str) -> (String, String) {
    let resp = tokio::time::timeout(WAIT, reqwest::get(url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    (ct, resp.text().await.unwrap())
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_keeps_its_name_type_and_help_and_promtool_accepts_it() {
    let f = start(false).await;
    // Something in every family, so none is left out for having no series yet.
    let m = register(&f.engine, "52:54:00:00:00:01", Some("SN-A1"));
    support::worker_served_a_kernel(&f.engine, &m);
    f.engine.set_service(
        "dnsmasq",
        mayu::lease::ServiceStatus::Running,
        3,
        "restarted",
    );
    // A lower running total (a report out of order) never takes the counter back.
    f.engine.set_service(
        "dnsmasq",
        mayu::lease::ServiceStatus::Running,
        1,
        "restarted",
    );
    let bus = f.engine.bus();
    bus.publish(EventKind::TemplatesReloaded {
        ok: true,
        errors: vec![],
    });
    bus.publish(EventKind::Stalled {
        id: m.id.clone(),
        stall: Stall {
            phase: Phase::Ipxe,
            since: time::OffsetDateTime::now_utc(),
            after_secs: 60,
        },
        profile: Some("worker".into()),
    });
    let power = |state| PowerStatus {
        state,
        checked_at: time::OffsetDateTime::now_utc(),
        error: None,
    };
    bus.publish(EventKind::Power {
        id: m.id.clone(),
        power: power(PowerState::On),
        action: None,
        actor: None,
    });
    let last = bus.publish(EventKind::Power {
        id: m.id.clone(),
        power: power(PowerState::Off),
        action: Some(PowerAction::Off),
        actor: Some("operator".into()),
    });
    tokio::time::timeout(WAIT, f.metrics.counted(last.seq))
        .await
        .expect("the metrics feed counts the events");
    let health = reqwest::get(f.url("/api/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200);

    let (ct, text) = scrape(&f.url("/metrics")).await;
    assert_eq!(ct, mayu::metrics::CONTENT_TYPE);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");

    // Families as written: name → (type, help).
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(types.insert(name, kind).is_none(), "{name} typed twice");
        } else if let Some(rest) = l.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(helps.insert(name, help).is_none(), "{name} helped twice");
        } else {
            assert!(!l.starts_with('#'), "unexpected comment line `{l}`");
        }
    }
    for (name, kind, help) in FAMILIES {
        assert_eq!(types.get(name), Some(kind), "type of {name} in:\n{text}");
        assert_eq!(helps.get(name), Some(help), "help of {name}");
    }
    assert_eq!(
        types.len(),
        FAMILIES.len(),
        "families nobody listed: {types:?}"
    );

    // Every sample belongs to a family declared above it, under that family's own name
    // (histograms add `_bucket`, `_sum` and `_count`): the classic format promtool reads.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| types.get(base) == Some(&"histogram"))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample `{l}` has no family");
    }
    assert!(!text.contains("_total_total"), "{text}");

    for (series, want) in [
        (
            "mayu_boot_steps_total{phase=\"kernel\",profile=\"worker\"}",
            1.0,
        ),
        ("mayu_asset_bytes_total{phase=\"kernel\"}", 4096.0),
        ("mayu_dnsmasq_restarts_total", 3.0),
        ("mayu_template_reloads_total", 1.0),
        ("mayu_template_reload_failures_total", 0.0),
        (
            "mayu_machine_stalls_total{phase=\"ipxe\",profile=\"worker\"}",
            1.0,
        ),
        ("mayu_machines_power{state=\"on\"}", 0.0),
        ("mayu_machines_power{state=\"off\"}", 1.0),
        ("mayu_machines_power{state=\"error\"}", 0.0),
        ("mayu_power_actions_total{action=\"off\",state=\"off\"}", 1.0),
        ("mayu_machines{state=\"configured\"}", 1.0),
        ("mayu_profile_assigned{profile=\"worker\"}", 1.0),
        ("mayu_profile_quantity{profile=\"worker\"}", 1.0),
        ("mayu_machines_stalled{profile=\"none\"}", 0.0),
        (
            "mayu_http_responses_total{listener=\"api\",method=\"GET\",route=\"/api/v1/health\",status=\"200\"}",
            1.0,
        ),
        ("mayu_events_missed_total", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    }
    promtool_accepts(&text);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_answered_at_once_are_each_counted_once() {
    const CLIENTS: usize = 64;
    let f = start(false).await;
    let client = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let (client, url) = (client.clone(), f.url("/api/v1/machines/sn-a1"));
        let token = if i % 2 == 0 {
            f.reader.clone()
        } else {
            "mayu_wrong".into()
        };
        tasks.spawn(async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            r.status().as_u16()
        });
    }
    let mut by_status = BTreeMap::new();
    while let Some(s) = tasks.join_next().await {
        *by_status.entry(s.unwrap()).or_insert(0usize) += 1;
    }
    assert_eq!(by_status.values().sum::<usize>(), CLIENTS);

    let (_, text) = scrape(&f.url("/metrics")).await;
    let route = "listener=\"api\",method=\"GET\",route=\"/api/v1/machines/{id}\"";
    for (status, n) in &by_status {
        assert_eq!(
            sample(
                &text,
                &format!("mayu_http_responses_total{{{route},status=\"{status}\"}}")
            ),
            Some(*n as f64),
            "{text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            &format!("mayu_http_request_duration_seconds_count{{{route}}}")
        ),
        Some(CLIENTS as f64)
    );
    assert_eq!(
        sample(
            &text,
            &format!("mayu_http_request_duration_seconds_bucket{{le=\"+Inf\",{route}}}")
        ),
        Some(CLIENTS as f64)
    );
    // A path no route matches is one series, whatever the path.
    for p in ["/nothing/1", "/nothing/2"] {
        let r = reqwest::get(f.url(p)).await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let (_, text) = scrape(&f.url("/metrics")).await;
    assert_eq!(
        sample(
            &text,
            "mayu_http_responses_total{listener=\"api\",method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(2.0),
        "{text}"
    );
    promtool_accepts(&text);
    f.stop().await;
}
