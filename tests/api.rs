//! The operator API over loopback and through `oneshot`: tokens and scopes, bad input that
//! changes nothing, one audit commit per change, the event stream, metrics and Mayu's routes.
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod api_fixture;
mod support;

use std::time::Duration;

use api_fixture::{register, start, Fixture};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use mayu::events::EventKind;
use mayu::machine::Phase;
use reqwest::Method;
use serde_json::{json, Value};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(10);

async fn call(
    f: &Fixture,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut rb = reqwest::Client::new().request(method, f.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = tokio::time::timeout(WAIT, rb.send())
        .await
        .unwrap()
        .unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let text = resp.text().await.unwrap();
    // The audit thread folds a burst from one author into one commit; waiting for it after
    // each request keeps "one change, one commit" countable.
    f.engine.flush().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// [`call`] with the admin token.
async fn admin(
    f: &Fixture,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(f, method, path, Some(&f.admin), body).await
}

/// [`call`]: a GET with the admin token.
async fn admin_get(f: &Fixture, path: &str) -> (StatusCode, Value) {
    admin(f, Method::GET, path, None).await
}

/// [`call`]: a PATCH with the admin token.
async fn patch(f: &Fixture, path: &str, body: Value) -> (StatusCode, Value) {
    admin(f, Method::PATCH, path, Some(body)).await
}

/// [`call`]: a GET with the read-only token.
async fn read(f: &Fixture, path: &str) -> (StatusCode, Value) {
    call(f, Method::GET, path, Some(&f.reader), None).await
}

/// One request through the router without a socket.
async fn oneshot(
    f: &Fixture,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut rb = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    let req = rb.body(body.into()).unwrap();
    let (status, _, bytes) = support::oneshot(mayu::api::router(f.state.clone()), req).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

fn assert_error_body(v: &Value, code: &str) {
    assert_eq!(v["error"], code, "{v}");
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail in {v}"
    );
}

#[tokio::test]
async fn tokens_are_required_and_scoped_and_refusals_change_nothing() {
    let f = start(true).await;
    let before = f.inventory();
    let commits = f.commits();

    let (s, v) = call(&f, Method::GET, "/api/v1/health", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));

    let (s, v) = call(&f, Method::GET, "/api/v1/machines", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error_body(&v, "unauthorized");
    let (s, v) = call(&f, Method::GET, "/api/v1/machines", Some("mayu_nope"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error_body(&v, "unauthorized");
    let (s, v) = read(&f, "/api/v1/machines").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 3);

    let changes: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::PATCH,
            "/api/v1/machines/sn-a1",
            Some(json!({"profile": "worker"})),
        ),
        (Method::POST, "/api/v1/machines/sn-a1/reinstall", None),
        (Method::POST, "/api/v1/machines/sn-a1/boot-complete", None),
        (Method::DELETE, "/api/v1/machines/sn-a1", None),
        (Method::GET, "/api/v1/machines/sn-a1/render/ipxe", None),
        (Method::GET, "/api/v1/tokens", None),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "scope": "admin"})),
        ),
        (Method::DELETE, "/api/v1/tokens/viewer", None),
        (
            Method::PUT,
            "/admin/host/sn-a1/set_provider_id",
            Some(json!({"ProviderId": "x"})),
        ),
        (
            Method::PUT,
            "/admin/host/sn-a1/boot_complete",
            Some(json!({})),
        ),
        (
            Method::PUT,
            "/admin/host/sn-a1/set_state",
            Some(json!({"State": "running"})),
        ),
    ];
    for (method, path, body) in changes {
        let (s, v) = call(&f, method.clone(), path, None, body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}: {v}");
        assert_error_body(&v, "unauthorized");
        let (s, v) = call(&f, method.clone(), path, Some(&f.reader), body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {v}");
        assert_error_body(&v, "forbidden");
        assert!(v["detail"].as_str().unwrap().contains("viewer"), "{v}");
    }
    assert_eq!(
        f.inventory(),
        before,
        "a refused request changed the inventory"
    );
    assert_eq!(f.commits(), commits, "a refused request made a commit");
    assert_eq!(
        f.tokens.names().len(),
        2,
        "a refused request changed the tokens"
    );
    f.stop().await;
}

#[tokio::test]
async fn patch_changes_one_commit_each_authored_by_the_token() {
    let f = start(false).await;
    let c0 = f.commits();

    let (s, m) = patch(&f, "/api/v1/machines/sn-a1", json!({"profile": "worker"})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["profile"], "worker");
    assert_eq!(m["pinned"], true);
    assert_eq!(m["state"], "configured");
    assert!(m.get("token").is_none(), "machine token leaked: {m}");
    assert_eq!(f.commits(), c0 + 1);

    // MACs work as keys too.
    let (s, m) = patch(
        &f,
        "/api/v1/machines/52:54:00:00:00:01",
        json!({
            "hostname": "node-1.lab",
            "ipmi_addr": "10.0.0.11",
            "provider_id": "prov-1",
            "rack": {"rack": "R7", "unit": 12},
            "notes": "left PSU flaky",
            "overrides": {"disk": "/dev/sdb", "vlan": 12},
        }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["hostname"], "node-1.lab");
    assert_eq!(m["overrides"]["vlan"], 12);
    assert_eq!(m["rack"]["unit"], 12);
    assert_eq!(f.commits(), c0 + 2);

    // null removes an override; state set explicitly.
    let (s, m) = patch(
        &f,
        "/api/v1/machines/sn-a1",
        json!({"overrides": {"vlan": null}, "state": "installing"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert!(m["overrides"].get("vlan").is_none());
    assert_eq!(m["state"], "installing");
    assert_eq!(f.commits(), c0 + 3);

    let (s, h) = read(&f, "/api/v1/machines/sn-a1/history").await;
    assert_eq!(s, StatusCode::OK);
    let h = h.as_array().unwrap();
    assert_eq!(h[0]["author"], "admin");
    assert!(h[0]["message"]
        .as_str()
        .unwrap()
        .contains("override vlan removed"));
    assert!(h[1]["fields"]
        .as_array()
        .unwrap()
        .contains(&json!("hostname")));
    assert!(h[2]["fields"]
        .as_array()
        .unwrap()
        .contains(&json!("profile")));
    assert_eq!(h[0]["commit"].as_str().unwrap().len(), 40);
    assert!(h[0]["time"].as_str().is_some());

    // Unassign holds; pin false hands back to the rules (manual mode: stays waiting).
    let (s, m) = patch(&f, "/api/v1/machines/sn-a1", json!({"profile": null})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(
        (m["profile"].clone(), m["pinned"].clone()),
        (Value::Null, json!(true))
    );
    let (s, m) = patch(&f, "/api/v1/machines/sn-a1", json!({"pin": false})).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["pinned"], false);
    f.stop().await;
}

#[tokio::test]
async fn bad_input_is_4xx_with_a_reason_and_changes_nothing() {
    let f = start(false).await;
    let tok = Some(f.admin.as_str());
    let json_ct = Some("application/json");
    // Fill `worker` (quantity 1) so the full-profile case has something to hit.
    let (s, _) = oneshot(
        &f,
        "PATCH",
        "/api/v1/machines/sn-a1",
        tok,
        json_ct,
        r#"{"profile":"worker"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let before = f.inventory();
    let commits = f.commits();

    let big = format!(
        r#"{{"notes":"{}"}}"#,
        "x".repeat(mayu::api::BODY_LIMIT + 10)
    );
    // method, path, content type (`-`: none), status, error code, body (`BIG`: over the limit)
    let cases = [
        r#"PATCH /api/v1/machines/sn-a2 json 400 bad_request {not json"#,
        r#"PATCH /api/v1/machines/sn-a2 json 422 invalid {"colour":"blue"}"#,
        r#"PATCH /api/v1/machines/sn-a2 json 422 invalid {"state":"flying"}"#,
        r#"PATCH /api/v1/machines/sn-a2 json 422 invalid {"profile":"nosuch"}"#,
        r#"PATCH /api/v1/machines/sn-a2 json 409 conflict {"profile":"worker"}"#,
        r#"PATCH /api/v1/machines/sn-a2 json 422 invalid {"profile":"worker","hostname":"bad_name!"}"#,
        r#"PATCH /api/v1/machines/sn-a2 json 422 invalid {}"#,
        r#"PATCH /api/v1/machines/sn-a2 json 413 payload_too_large BIG"#,
        r#"PATCH /api/v1/machines/sn-a2 text/plain 415 unsupported_media_type {"notes":"x"}"#,
        r#"PATCH /api/v1/machines/NOT%20AN%20ID json 400 bad_request {"notes":"x"}"#,
        r#"PATCH /api/v1/machines/zz:54:00:00:00:01 json 400 bad_request {"notes":"x"}"#,
        r#"PATCH /api/v1/machines/sn-a9 json 404 unknown_machine {"notes":"x"}"#,
        r#"DELETE /api/v1/machines/52:54:00:00:00:99 - 404 unknown_machine"#,
        r#"POST /api/v1/machines/sn-a2/reinstall - 422 invalid"#,
        r#"GET /api/v1/machines?state=flying - 400 bad_request"#,
        r#"GET /api/v1/machines?colour=blue - 400 bad_request"#,
        r#"GET /api/v1/nothing-here - 404 not_found"#,
        r#"PUT /api/v1/machines - 405 method_not_allowed"#,
    ];
    for case in cases {
        let mut fields = case.splitn(6, ' ');
        let mut field = || fields.next().unwrap_or("");
        let (method, path, ct, want, code) = (field(), field(), field(), field(), field());
        let ct = match ct {
            "-" => None,
            "json" => json_ct,
            other => Some(other),
        };
        let body = match field() {
            "BIG" => big.clone(),
            body => body.to_string(),
        };
        let (s, v) = oneshot(&f, method, path, tok, ct, body).await;
        assert_eq!(s.as_str(), want, "{method} {path}: {v}");
        assert_error_body(&v, code);
    }
    // Unknown machines come with close ids.
    let (_, v) = oneshot(&f, "GET", "/api/v1/machines/sn-a9", tok, None, "").await;
    assert!(
        v["suggestions"]
            .as_array()
            .unwrap()
            .contains(&json!("sn-a1")),
        "{v}"
    );
    assert!(
        v["detail"].as_str().unwrap().contains("did you mean"),
        "{v}"
    );
    // A bad Last-Event-ID is refused too.
    let resp = mayu::api::router(f.state.clone())
        .oneshot(
            Request::get("/api/v1/events")
                .header("authorization", format!("Bearer {}", f.admin))
                .header("last-event-id", "yesterday")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    assert_eq!(f.inventory(), before, "bad input changed the inventory");
    assert_eq!(f.commits(), commits, "bad input made a commit");

    // With force the full profile takes one more.
    let (s, v) = oneshot(
        &f,
        "PATCH",
        "/api/v1/machines/sn-a2",
        tok,
        json_ct,
        r#"{"profile":"worker","force":true}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(f.commits(), commits + 1);
    f.stop().await;
}

#[tokio::test]
async fn list_filters_and_show() {
    let f = start(false).await;
    f.engine.assign("sn-a2", "discovery", "t", false).unwrap();
    let (_, v) = read(&f, "/api/v1/machines?state=waiting").await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = read(&f, "/api/v1/machines?profile=discovery").await;
    assert_eq!(v[0]["id"], "sn-a2");
    let (_, v) = read(&f, "/api/v1/machines?profile=-").await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = read(&f, "/api/v1/machines?q=00:00:03").await;
    assert_eq!(v[0]["id"], "52-54-00-00-00-03");
    let (_, v) = read(&f, "/api/v1/machines?q=SN-A&state=configured").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (s, v) = read(&f, "/api/v1/machines/SN-A1").await;
    assert_eq!((s, v["id"].as_str()), (StatusCode::OK, Some("sn-a1")));
    let (s, v) = read(&f, "/api/v1/machines/SN-A1/history").await;
    assert_eq!(
        (s, v[0]["author"].as_str()),
        (StatusCode::OK, Some("sn-a1"))
    );
    let (s, v) = read(&f, "/api/v1/machines/52-54-00-00-00-03").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["macs"][0], "52:54:00:00:00:03");
    assert!(v.get("token").is_none());
    f.stop().await;
}

#[tokio::test]
async fn reinstall_boot_complete_retire_and_history_of_retired() {
    let f = start(false).await;
    f.engine.assign("sn-a1", "worker", "t", false).unwrap();
    let c0 = f.commits();
    let (s, m) = admin(
        &f,
        Method::POST,
        "/api/v1/machines/sn-a1/boot-complete",
        None,
    )
    .await;
    assert_eq!((s, m["state"].as_str()), (StatusCode::OK, Some("running")));
    // The audit thread folds a burst from one author into one commit; flushing between
    // requests makes each its own.
    assert_eq!(f.commits(), c0 + 1);
    let (s, m) = admin(&f, Method::POST, "/api/v1/machines/sn-a1/reinstall", None).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(
        (m["reinstall"].as_bool(), m["state"].as_str()),
        (Some(true), Some("configured"))
    );
    assert_eq!(f.commits(), c0 + 2);
    let (s, v) = admin(&f, Method::DELETE, "/api/v1/machines/sn-a1", None).await;
    assert_eq!((s, v["retired"].as_str()), (StatusCode::OK, Some("sn-a1")));
    assert_eq!(f.commits(), c0 + 3);
    let (s, _) = read(&f, "/api/v1/machines/sn-a1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, h) = read(&f, "/api/v1/machines/sn-a1/history").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h[0]["message"].as_str().unwrap().contains("retired"), "{h}");
    assert_eq!(h[0]["author"], "admin");
    f.stop().await;
}

#[tokio::test]
async fn event_stream_delivers_what_a_patch_caused_and_resumes() {
    let f = start(false).await;
    let resp = reqwest::Client::new()
        .get(f.url("/api/v1/events"))
        .bearer_auth(&f.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // The handler subscribed before answering, so the PATCH's event cannot be missed.
    let (s, _) = patch(&f, "/api/v1/machines/sn-a2", json!({"hostname": "n2"})).await;
    assert_eq!(s, StatusCode::OK);

    let mut body = resp.bytes_stream();
    let mut events = mayu_events(&mut body);
    let (id, data) = tokio::time::timeout(WAIT, async {
        loop {
            let (id, event, data) = events.next().await;
            if event == "machine_changed" {
                return (id, data);
            }
        }
    })
    .await
    .expect("the PATCH's event arrives");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["machine"]["id"], "sn-a2");
    assert_eq!(v["actor"], "admin");
    assert!(
        v["summary"].as_str().unwrap().contains("hostname n2"),
        "{v}"
    );
    assert!(v["machine"].get("token").is_none(), "token in event: {v}");

    // Resume from just before it: the same event is replayed first.
    let seq: u64 = id.parse().unwrap();
    let resp = reqwest::Client::new()
        .get(f.url("/api/v1/events"))
        .bearer_auth(&f.reader)
        .header("last-event-id", (seq - 1).to_string())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut events = mayu_events(&mut body);
    let (id2, event2, _) = tokio::time::timeout(WAIT, events.next()).await.unwrap();
    assert_eq!((id2, event2.as_str()), (id, "machine_changed"));

    // Shutdown ends open streams instead of waiting on them.
    drop(events);
    f.stop().await;
}

/// A tiny SSE reader over a reqwest body, enough for tests.
struct SseReader<'a, S> {
    body: &'a mut S,
    buf: String,
}

fn mayu_events<S>(body: &mut S) -> SseReader<'_, S> {
    SseReader {
        body,
        buf: String::new(),
    }
}

impl<S> SseReader<'_, S>
where
    S: futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin,
{
    async fn next(&mut self) -> (String, String, String) {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let m = mayu::client::parse_block(&block);
                if let Some(m) = m {
                    return (
                        m.id.map(|i| i.to_string()).unwrap_or_default(),
                        m.event,
                        m.data,
                    );
                }
                continue;
            }
            let chunk = self.body.next().await.expect("stream open").unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn profiles_leases_services_templates_and_render() {
    let f = start(true).await;
    f.engine.assign("sn-a1", "worker", "t", false).unwrap();
    f.engine.set_leases(vec![mayu::lease::Lease {
        mac: "52:54:00:00:00:01".parse().unwrap(),
        ip: "10.77.0.101".parse().unwrap(),
        hostname: Some("n1".into()),
        expires: None,
        client_id: None,
        machine: None,
    }]);
    f.engine
        .set_service("dnsmasq", mayu::lease::ServiceStatus::Running, 0, "pid 42");

    let (s, p) = read(&f, "/api/v1/profiles").await;
    assert_eq!(s, StatusCode::OK);
    let worker = &p["profiles"][0];
    assert_eq!(
        (
            worker["name"].as_str(),
            worker["quantity"].as_u64(),
            worker["assigned"].as_u64()
        ),
        (Some("worker"), Some(1), Some(1))
    );
    assert_eq!(worker["waiting"], 1);
    assert_eq!(worker["fill"], 1.0);
    assert_eq!(p["unassigned"], 2);

    let (_, l) = read(&f, "/api/v1/leases").await;
    assert_eq!(l[0]["machine"], "sn-a1");
    let (_, sv) = read(&f, "/api/v1/services").await;
    assert_eq!(sv[0]["name"], "dnsmasq");
    let (s, t) = read(&f, "/api/v1/templates").await;
    assert_eq!((s, t["ok"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, _) = call(&f, Method::GET, "/api/v1/ready", None, None).await;
    assert_eq!(s, StatusCode::OK);

    let (s, text) = admin_get(&f, "/api/v1/machines/sn-a1/render/ignition").await;
    assert_eq!(s, StatusCode::OK);
    let token = f.engine.find("sn-a1").unwrap().token;
    assert_eq!(text, json!(format!("ignition for sn-a1 token={token}\n")));
    let (s, v) = admin_get(&f, "/api/v1/machines/sn-a1/render/missing").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_body(&v, "invalid");
    f.stop().await;

    // Without a template service those routes say why they cannot answer.
    let f = start(false).await;
    for path in ["/api/v1/templates", "/api/v1/machines/sn-a1/render/ipxe"] {
        let (s, v) = admin_get(&f, path).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_error_body(&v, "unavailable");
    }
    f.stop().await;
}

#[tokio::test]
async fn metrics_count_boots_restarts_reloads_requests_and_states() {
    let f = start(false).await;
    let m = register(&f.engine, "52:54:00:00:00:01", Some("SN-A1"));
    support::worker_served_a_kernel(&f.engine, &m);
    f.engine.boot_step(
        Some(&m.id),
        Phase::Initrd,
        "initrd".into(),
        Some(1000),
        Some(3),
    );
    f.engine.set_service(
        "dnsmasq",
        mayu::lease::ServiceStatus::Running,
        2,
        "restarted",
    );
    let last = f.engine.bus().publish(EventKind::TemplatesReloaded {
        ok: false,
        errors: vec!["worker.yaml:3: unexpected end".into()],
    });
    tokio::time::timeout(WAIT, f.metrics.counted(last.seq))
        .await
        .expect("the metrics feed counts the events");
    read(&f, "/api/v1/machines/sn-a1").await;
    read(&f, "/api/v1/machines/sn-a2").await;

    let text = reqwest::get(f.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "mayu_boot_steps_total{phase=\"kernel\",profile=\"worker\"} 1",
        "mayu_boot_steps_total{phase=\"initrd\",profile=\"worker\"} 1",
        "mayu_asset_bytes_total{phase=\"kernel\"} 4096",
        "mayu_dnsmasq_restarts_total 2",
        "mayu_template_reload_failures_total 1",
        "mayu_machines{state=\"configured\"} 1",
        "mayu_machines{state=\"waiting\"} 2",
        "mayu_machines{state=\"running\"} 0",
        "# TYPE mayu_http_request_duration_seconds histogram",
        "mayu_http_request_duration_seconds_count{listener=\"api\",method=\"GET\",route=\"/api/v1/machines/{id}\"} 2",
        // prometheus-client writes `le` first; label order has no meaning to Prometheus.
        "mayu_http_request_duration_seconds_bucket{le=\"+Inf\",listener=\"api\",method=\"GET\",route=\"/api/v1/machines/{id}\"} 2",
        "mayu_http_responses_total{listener=\"api\",method=\"GET\",route=\"/api/v1/machines/{id}\",status=\"200\"} 2",
        "mayu_profile_assigned{profile=\"worker\"} 1",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    support::promtool_accepts(&text);
    f.stop().await;
}

#[tokio::test]
async fn mayu_compat_routes_keep_mayus_codes() {
    let f = start(false).await;
    let (s, hosts) = read(&f, "/admin/hosts").await;
    assert_eq!(s, StatusCode::OK);
    let a1 = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["Serial"] == "SN-A1")
        .unwrap()
        .clone();
    assert_eq!(a1["State"], "unknown");
    assert_eq!(a1["MacAddresses"][0], "52:54:00:00:00:01");

    let c0 = f.commits();
    let put = |path: &'static str, body: Value| admin(&f, Method::PUT, path, Some(body));
    for (path, body) in [
        // Looked up by serial as Mayu did (any case).
        (
            "/admin/host/SN-A1/set_provider_id",
            json!({"ProviderId": "p-1"}),
        ),
        (
            "/admin/host/sn-a1/set_ipmi_addr",
            json!({"IPMIAddr": "10.0.0.5"}),
        ),
        (
            "/admin/host/sn-a1/set_state",
            json!({"state": "installing"}),
        ),
        (
            "/admin/host/sn-a1/override",
            json!({"Overrides": {"channel": "beta"}}),
        ),
        (
            "/admin/host/sn-a1/boot_complete",
            json!({"FlatcarVersion": "4081.2.0"}),
        ),
    ] {
        let (s, v) = put(path, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{path}: {v}");
    }
    assert_eq!(f.commits(), c0 + 5);
    let m = f.engine.find("sn-a1").unwrap();
    assert_eq!(m.provider_id.as_deref(), Some("p-1"));
    assert_eq!(m.ipmi_addr.as_deref(), Some("10.0.0.5"));
    assert_eq!(m.overrides["channel"], "beta");
    assert_eq!(m.state, mayu::machine::State::Running);
    let h = f.engine.history("sn-a1").unwrap();
    assert!(h.iter().take(5).all(|e| e.author == "admin"));

    let before = f.inventory();
    for (path, body) in [
        (
            "/admin/host/nosuch/set_provider_id",
            json!({"ProviderId": "p"}),
        ),
        (
            "/admin/host/sn-a1/set_ipmi_addr",
            json!({"IPMIAddr": "not-an-ip"}),
        ),
        ("/admin/host/sn-a1/set_state", json!({"State": "flying"})),
        ("/admin/host/sn-a1/override", json!({"Overrides": {}})),
        ("/admin/host/sn-a1/set_provider_id", json!({})),
    ] {
        let (s, v) = put(path, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_error_body(&v, "bad_request");
    }
    let (s, v) = oneshot(
        &f,
        "PUT",
        "/admin/host/sn-a1/set_state",
        Some(&f.admin),
        Some("application/json"),
        "{broken",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_body(&v, "bad_request");
    assert_eq!(f.inventory(), before);
    assert_eq!(f.commits(), c0 + 5);
    f.stop().await;
}

#[tokio::test]
async fn template_renderer_serves_the_live_set() {
    use mayu::api::render::TemplateRenderer;
    use std::sync::Arc;

    let lab = support::Lab::new(&[]);
    let engine = lab.engine();
    let m = register(&engine, "52:54:00:00:00:21", Some("SN-21"));
    assert_eq!(m.profile.as_deref(), Some("worker"));
    let templates = Arc::new(mayu::templates::Templates::load(engine.config()).unwrap());
    let (tokens, created) =
        mayu::tokens::Tokens::load_or_create(&lab.path().join("tokens.json")).unwrap();
    let admin = created.unwrap().secret;
    let state = mayu::api::ApiState::new(engine, tokens, mayu::metrics::Metrics::new())
        .with_renderer(Arc::new(TemplateRenderer {
            templates,
            boot_addr: "127.0.0.1:4081".parse().unwrap(),
        }));
    let get = |path: String| {
        let (state, admin) = (state.clone(), admin.clone());
        async move {
            let req = Request::get(path)
                .header("authorization", format!("Bearer {admin}"))
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = support::oneshot(mayu::api::router(state), req).await;
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (s, text) = get("/api/v1/machines/sn-21/render/ipxe".into()).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(text.starts_with("#!ipxe"), "{text}");
    assert!(
        text.contains("flatcar_production_pxe.vmlinuz?id=sn-21"),
        "{text}"
    );
    let (s, text) = get("/api/v1/machines/sn-21/render/bogus".into()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("unknown template kind"), "{text}");
    let (s, text) = get("/api/v1/templates".into()).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["last_reload_ok"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(
        v["templates"]
            .as_array()
            .unwrap()
            .contains(&json!("flatcar.ipxe")),
        "{v}"
    );
}

#[tokio::test]
async fn api_over_tls_and_shutdown_with_an_open_stream() {
    let f = api_fixture::start_tls().await;
    assert!(f.url("").starts_with("https://127.0.0.1:"));
    let ca = std::fs::read(f.ca_file.as_ref().unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(f.url("/api/v1/machines"))
        .bearer_auth(&f.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let resp = client
        .patch(f.url("/api/v1/machines/sn-a1"))
        .bearer_auth(&f.reader)
        .json(&json!({"notes": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // An untrusting client does not get an answer.
    let err = reqwest::get(f.url("/api/v1/health")).await.unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );

    // An open event stream does not hold up shutdown.
    let stream = client
        .get(f.url("/api/v1/events"))
        .bearer_auth(&f.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    f.stop().await;
    drop(stream);
}

#[tokio::test]
async fn launch_creates_the_admin_token_once_and_reports_the_service() {
    let lab = support::Lab::new(&[]);
    let engine = lab.engine();
    let cancel = tokio_util::sync::CancellationToken::new();
    let l = mayu::api::launch(
        engine.clone(),
        mayu::metrics::Metrics::new(),
        None,
        cancel.clone(),
    )
    .await
    .unwrap();
    assert!(!l.tls);
    let created = l.created.clone().expect("first start creates a token");
    assert_eq!(created.secret_file, lab.path().join("tokens.json.admin"));
    let secret = std::fs::read_to_string(&created.secret_file).unwrap();
    let services: Value = reqwest::Client::new()
        .get(format!("http://{}/api/v1/services", l.addr))
        .bearer_auth(secret.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "api")
        .unwrap();
    assert_eq!(api["status"], "running");
    assert_eq!(api["detail"], format!("http://{}", l.addr));

    cancel.cancel();
    tokio::time::timeout(WAIT, l.task).await.unwrap().unwrap();
    let api = engine
        .services()
        .into_iter()
        .find(|s| s.name == "api")
        .unwrap();
    assert_eq!(api.status, mayu::lease::ServiceStatus::Stopped);

    let again = mayu::api::launch(
        engine,
        mayu::metrics::Metrics::new(),
        None,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(
        again.created.is_none(),
        "the admin token is created only once"
    );
    assert!(again.tokens.authenticate(secret.trim()).is_some());
}
