//! Machine text is data: control characters, line breaks, NULs, escape sequences, overlong
//! strings and broken percent-encodings, fed through every input a machine or an operator has
//! (iPXE registration, /facts, PATCH, Mayu's routes), never cause a 5xx, never reach the git
//! audit, `mayuctl`'s output or the dnsmasq hosts file raw, and never make an accepted change
//! go missing from the audit.
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod api_fixture;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use api_fixture::{start, Fixture};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mayu::boot::BootState;
use mayu::machine::{Machine, Phases, Rack};
use mayu::templates::Templates;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(30);

/// Pieces the generator strings together: hostile ones and ordinary ones, so some changes are
/// accepted and the audit has something to prove.
const PIECES: &[&str] = &[
    "\n",
    "\r\n",
    "\r",
    "\0",
    "\t",
    "\x1b[2J",
    "\x1b]0;owned\x07",
    "\x1b[31m",
    "\x07",
    "\x7f",
    "\u{9b}2J",
    "\u{85}",
    "\u{8d}",
    "sn-a1: retired",
    "\nsn-a2: retired (by admin)",
    ",",
    ";",
    "\\n",
    "%",
    "ü",
    "✓",
    "rack-7",
    "i-0abc",
    "node",
    "x",
];

/// Valid values per field kind, mixed in so accepted changes happen.
const GOOD_IPS: &[&str] = &["10.0.0.9", "fd00::1", "fd00:0:0::0002", "192.168.7.20"];
const GOOD_HOSTS: &[&str] = &["node-7", "n1.lab", "web-01"];

struct Gen(StdRng);

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen(StdRng::seed_from_u64(seed))
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.0.random_range(0..from.len())]
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.0.random_range(0..100) < percent
    }

    /// A string of pieces; now and then overlong (past the 256-byte and 4 KiB limits).
    fn text(&mut self) -> String {
        match self.0.random_range(0..10) {
            0 => "y".repeat(257),
            1 => "z".repeat(5000),
            2 => self
                .pick(&["plain", "rack-4", "i-0123", "SN 77"])
                .to_string(),
            _ => {
                let n = self.0.random_range(1..5);
                (0..n).map(|_| self.pick(PIECES)).collect()
            }
        }
    }

    fn ip(&mut self) -> String {
        if self.chance(40) {
            self.pick(GOOD_IPS).to_string()
        } else {
            match self.0.random_range(0..4) {
                0 => "10.0.0.9:623".into(),
                1 => "bmc.lab".into(),
                2 => format!("10.0.0.9{}", self.pick(PIECES)),
                _ => self.text(),
            }
        }
    }

    fn hostname(&mut self) -> String {
        if self.chance(40) {
            self.pick(GOOD_HOSTS).to_string()
        } else {
            self.text()
        }
    }

    /// A query-string value: the text percent-encoded, or (sometimes) raw percent-escapes
    /// that decode to control bytes or to no UTF-8 at all.
    fn query_value(&mut self) -> String {
        if self.chance(30) {
            let n = self.0.random_range(1..4);
            (0..n)
                .map(|_| {
                    self.pick(&[
                        "%0a", "%0d%0a", "%00", "%1b%5b2J", "%7f", "%c2%9b", "%ff%fe", "%c0%80",
                        "%e2%82", "%", "%zz", "abc", "SN-9",
                    ])
                })
                .collect()
        } else {
            encode(&self.text())
        }
    }
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn boot_state(f: &Fixture) -> BootState {
    // The API fixture's worker template is a stub; the boot port validates what it renders.
    std::fs::write(
        f.dir.path().join("templates/worker.yaml"),
        "ignition:\n  version: 3.4.0\n",
    )
    .unwrap();
    BootState {
        engine: f.engine.clone(),
        templates: Arc::new(Templates::load(f.engine.config()).unwrap()),
        boot_addr: "127.0.0.1:4081".parse().unwrap(),
    }
}

/// One request through a router without a socket; the answer's status and body text.
async fn send(router: axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = tokio::time::timeout(WAIT, router.oneshot(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The machines with what the audit does not record (phase times) left out.
fn records(f: &Fixture) -> Vec<Machine> {
    f.engine
        .list()
        .into_iter()
        .map(|mut m| {
            m.phases = Phases::default();
            m
        })
        .collect()
}

fn commit_messages(f: &Fixture) -> Vec<String> {
    f.engine.flush().unwrap();
    let repo = git2::Repository::open(&f.engine.config().inventory).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .unwrap();
    walk.map(|oid| {
        let c = repo.find_commit(oid.unwrap()).unwrap();
        // Raw bytes: a message that is not UTF-8 must fail here, not be papered over.
        String::from_utf8(c.message_bytes().to_vec()).expect("commit message is UTF-8")
    })
    .collect()
}

/// The machine ids a commit message's record lines name (`<id>: <what>`), skipping the
/// structure around them: a group's `N changes by …` heading, blank lines, trailers.
fn record_ids(message: &str) -> Vec<String> {
    message
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| !l.contains(" changes by "))
        .filter(|l| !l.starts_with("Mayu-"))
        .map(|l| {
            l.split_once(": ")
                .map(|(id, _)| id.to_string())
                .unwrap_or_else(|| panic!("not a record line: {l:?} in {message:?}"))
        })
        .collect()
}

fn assert_no_control(what: &str, text: &str, allow_newline: bool) {
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && !(allow_newline && c == '\n'))
    {
        panic!("raw control character {c:?} in {what}: {text:?}");
    }
}

/// What a request did, for the audit bookkeeping.
struct Ledger {
    /// commits before the request.
    commits: usize,
    before: Vec<Machine>,
    accepted: usize,
    refused: usize,
    /// accepted requests that changed the inventory.
    changes: usize,
}

impl Ledger {
    fn new(f: &Fixture) -> Ledger {
        Ledger {
            commits: commit_messages(f).len(),
            before: records(f),
            accepted: 0,
            refused: 0,
            changes: 0,
        }
    }

    /// Checks one answer against what happened to the inventory and its audit.
    #[track_caller]
    fn settle(&mut self, f: &Fixture, what: &str, status: StatusCode, body: &str) {
        assert!(
            status.is_success() || status.is_client_error(),
            "{what}: {status} {body}"
        );
        let messages = commit_messages(f);
        let new = &messages[self.commits..];
        let after = records(f);
        if status.is_client_error() {
            self.refused += 1;
            let v: Value = serde_json::from_str(body)
                .unwrap_or_else(|_| panic!("{what}: {status} without a JSON reason: {body:?}"));
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty())
                    && v["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{what}: {status} without error and detail: {v}"
            );
            assert!(new.is_empty(), "{what}: refused, yet committed {new:?}");
            assert_eq!(
                after, self.before,
                "{what}: refused, yet changed the inventory"
            );
        } else {
            self.accepted += 1;
            let changed: BTreeSet<String> = after
                .iter()
                .filter(|m| !self.before.contains(m))
                .map(|m| m.id.to_string())
                .collect();
            let named: BTreeSet<String> = new.iter().flat_map(|m| record_ids(m)).collect();
            // Every changed machine is in the audit, and the audit names no other machine:
            // a forged `other-id: …` line would show up here.
            assert_eq!(named, changed, "{what}: audit {new:?}");
            if !changed.is_empty() {
                self.changes += 1;
            }
        }
        for m in new {
            assert_no_control(&format!("commit message after {what}"), m, true);
        }
        self.commits = messages.len();
        self.before = after;
    }
}

/// A machine record as an old inventory file or an import could hold it, from before the
/// checks: every text field hostile. Output paths must still escape it.
fn legacy(f: &Fixture) {
    let mut m = Machine::new(
        "legacy-1".parse().unwrap(),
        "tok".into(),
        time::OffsetDateTime::now_utc(),
    );
    m.macs = vec!["52:54:00:00:00:99".parse().unwrap()];
    m.serial = Some("SN\n\x1b[2Jforged-row  waiting".into());
    m.uuid = Some("\x1b]0;owned\x07".into());
    m.arch = Some("x86\r64\0".into());
    m.hostname = Some("evil\nhost,10.77.0.5".into());
    m.ipmi_addr = Some("10.0.0.1\nsn-a1: retired".into());
    m.provider_id = Some("\u{9b}31mred".into());
    m.rack = Some(Rack {
        rack: "r\x7f1".into(),
        unit: Some(3),
    });
    m.notes = "line one\n\tline two\x1b[5m".into();
    m.overrides
        .insert("key\nforged".into(), json!("value\n\u{85}\x1b"));
    f.engine
        .import(m, "legacy-import", "imported\nlegacy-2: retired")
        .unwrap();
    f.engine.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_refused_or_escaped_everywhere() {
    let f = start(false).await;
    let boot = boot_state(&f);
    let admin = f.admin.clone();
    let mut g = Gen::new(0x6d61_7975);
    let mut ledger = Ledger::new(&f);

    // iPXE registration: serial, uuid and arch straight from the query string.
    for i in 0..80u32 {
        let mac = format!("52:54:00:10:{:02x}:{:02x}", i / 256, i % 256);
        let uri = format!(
            "/ipxe?mac={}&uuid={}&serial={}&arch={}&platform=pcbios",
            encode(&mac),
            g.query_value(),
            g.query_value(),
            g.query_value()
        );
        let req = Request::get(&uri).body(Body::empty()).unwrap();
        let (st, body) = send(mayu::boot::router(boot.clone()), req).await;
        ledger.settle(&f, &format!("GET {uri}"), st, &body);
    }
    // A plain registration is still accepted (the checks refuse text, not machines).
    let (st, body) = send(
        mayu::boot::router(boot.clone()),
        Request::get("/ipxe?mac=52%3A54%3A00%3A20%3A00%3A01&serial=SN-PLAIN&uuid=&arch=x86_64")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    ledger.settle(&f, "plain registration", st, &body);

    // /facts with hostile strings in every text fact, and in the BMC address parameter.
    let ids: Vec<String> = f.engine.list().iter().map(|m| m.id.to_string()).collect();
    for i in 0..80usize {
        let m = f.engine.find(&ids[i % ids.len()]).unwrap();
        let mut facts = json!({
            "cpus": 4,
            "cpu_model": g.text(),
            "vendor": g.text(),
            "product": g.text(),
            "disks": [{ "name": g.text(), "size_bytes": 1, "model": g.text() }],
            "nics": [{ "name": g.text(), "link": true }],
        });
        if g.chance(50) {
            // ordinary facts, so the BMC address alone decides
            facts = json!({ "cpus": 4, "vendor": "QEMU", "product": format!("pc-{i}") });
        }
        if g.chance(5) {
            let many: Vec<Value> = (0..300)
                .map(|n| json!({"name": format!("sd{n}"), "size_bytes": 1}))
                .collect();
            facts["disks"] = Value::Array(many);
        }
        let ipmi = if g.chance(60) {
            format!("&ipmi={}", encode(&g.ip()))
        } else {
            String::new()
        };
        let uri = format!("/facts?id={}&token={}{ipmi}", m.id, m.token);
        let req = Request::post(&uri)
            .header("content-type", "application/json")
            .body(Body::from(facts.to_string()))
            .unwrap();
        let (st, body) = send(mayu::boot::router(boot.clone()), req).await;
        ledger.settle(&f, &format!("POST {uri} {facts}"), st, &body);
    }

    // PATCH /api/v1/machines/{id}: every text field, one or several at a time.
    for i in 0..120usize {
        let id = &ids[i % ids.len()];
        let mut patch = serde_json::Map::new();
        for _ in 0..g.0.random_range(1..3) {
            let (k, v) = match g.0.random_range(0..7) {
                0 => ("hostname", json!(g.hostname())),
                1 => ("ipmi_addr", json!(g.ip())),
                2 => ("provider_id", json!(g.text())),
                3 => ("rack", json!({ "rack": g.text(), "unit": 2 })),
                4 => ("notes", json!(g.text())),
                5 => ("overrides", json!({ g.text(): g.text() })),
                _ => ("profile", json!(g.text())),
            };
            patch.insert(k.into(), v);
        }
        let raw = g.chance(5);
        let body = if raw {
            // not UTF-8 at all
            b"{\"notes\": \"\xff\xfe\x1b\"}".to_vec()
        } else {
            Value::Object(patch.clone()).to_string().into_bytes()
        };
        let req = Request::patch(format!("/api/v1/machines/{id}"))
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let (st, resp) = send(mayu::api::router(f.state.clone()), req).await;
        ledger.settle(&f, &format!("PATCH {id} {patch:?}"), st, &resp);
    }

    // Mayu's routes: the serial in the path, and each route's one field.
    for i in 0..80usize {
        let serial = if g.chance(25) {
            g.query_value()
        } else {
            let m = f.engine.find(&ids[i % ids.len()]).unwrap();
            encode(m.serial.as_deref().unwrap_or(m.id.as_str()))
        };
        let (route, body) = match g.0.random_range(0..4) {
            0 => ("set_provider_id", json!({ "ProviderId": g.text() })),
            1 => ("set_ipmi_addr", json!({ "IPMIAddr": g.ip() })),
            2 => ("set_state", json!({ "State": g.text() })),
            _ => ("override", json!({ "Overrides": { g.text(): g.text() } })),
        };
        let uri = format!("/admin/host/{serial}/{route}");
        let req = Request::put(&uri)
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (st, resp) = send(mayu::api::router(f.state.clone()), req).await;
        ledger.settle(&f, &format!("PUT {uri} {body}"), st, &resp);
    }

    // The fuzz exercised both sides: hostile input refused, ordinary input recorded.
    assert!(ledger.refused >= 100, "refused only {}", ledger.refused);
    assert!(
        ledger.changes >= 20,
        "only {} accepted changes",
        ledger.changes
    );

    // What is stored obeys the rules: single lines everywhere, notes with `\n`/`\t` only.
    for m in f.engine.list() {
        mayu::text::check_machine(&m).unwrap_or_else(|e| panic!("{}: {e}", m.id));
    }

    // A record from before the checks: output paths must cope with it on their own.
    legacy(&f);
    ledger.settle(&f, "legacy import", StatusCode::OK, "");

    // The whole audit: no raw control character in any message, every line a record.
    let messages = commit_messages(&f);
    for m in &messages {
        assert_no_control("commit message", m, true);
    }

    // mayuctl, the real binary against the real API.
    let machines = f.engine.list();
    let all_fields = "id,macs,ip,serial,uuid,arch,hostname,profile,state,phase,pinned,ipmiaddr,\
                      providerid,rack,lastboot,notes";
    for args in [
        vec!["list"],
        vec!["list", "--fields", all_fields],
        vec!["list", "--fields", "notes,serial,uuid,arch,providerid,rack"],
    ] {
        let text = ctl(&f, &args).await;
        assert_no_control(&format!("mayuctl {args:?}"), &text, true);
        assert_eq!(
            text.lines().count(),
            machines.len() + 1,
            "mayuctl {args:?}: one row per machine plus the header:\n{text}"
        );
    }
    let text = ctl(&f, &["list", "--json"]).await;
    assert_no_control("mayuctl list --json", &text, true);
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), machines.len());
    let legacy_json = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "legacy-1")
        .unwrap();
    // escaped for the terminal, yet the same JSON value
    assert_eq!(legacy_json["provider_id"], "\u{9b}31mred");

    for m in &machines {
        let text = ctl(&f, &["show", m.id.as_str()]).await;
        assert_no_control(&format!("mayuctl show {}", m.id), &text, true);
        let v: Value =
            serde_json::from_str(&ctl(&f, &["show", m.id.as_str(), "--json"]).await).unwrap();
        // 17 fields, `assigned by`, `reinstall`, one line per override and per phase reached.
        let phases = v["phases"]
            .as_object()
            .map(|p| {
                [
                    "first_seen",
                    "dhcp",
                    "ipxe",
                    "kernel",
                    "initrd",
                    "config",
                    "boot_complete",
                ]
                .iter()
                .filter(|n| p.get(**n).is_some_and(Value::is_string))
                .count()
            })
            .unwrap_or(0);
        let overrides = v["overrides"].as_object().map_or(0, |o| o.len());
        assert_eq!(
            text.lines().count(),
            21 + overrides + phases,
            "mayuctl show {}:\n{text}",
            m.id
        );
    }
    let text = ctl(&f, &["show", "legacy-1"]).await;
    assert!(text.contains(r"SN\n\x1b[2Jforged-row"), "{text}");
    assert!(text.contains(r"line one\n\tline two\x1b[5m"), "{text}");
    assert!(text.contains(r"override key\nforged:"), "{text}");

    // The dnsmasq hosts file: one header line, then exactly one line per machine with a MAC,
    // each of MACs, an address and a hostname only.
    let hosts = mayu::dnsmasq::hosts::render_hosts(&machines, &f.engine.config().network);
    assert_no_control("hosts file", &hosts, true);
    let with_macs = machines.iter().filter(|m| !m.macs.is_empty()).count();
    assert_eq!(hosts.lines().count(), 1 + with_macs, "{hosts}");
    for line in hosts.lines().skip(1) {
        for field in line.split(',') {
            let ok = field.parse::<mayu::machine::Mac>().is_ok()
                || field.parse::<std::net::Ipv4Addr>().is_ok()
                || mayu::machine::valid_hostname(field);
            assert!(ok, "hosts line {line:?} has field {field:?}");
        }
    }
    f.stop().await;
}

/// The refusal names the field and does not echo the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_field() {
    let f = start(false).await;
    let admin = f.admin.clone();
    let cases = [
        (json!({"provider_id": "i-1\nsn-a2: retired"}), "provider_id"),
        (json!({"rack": {"rack": "r\x1b[2J"}}), "rack.rack"),
        (json!({"notes": "ok\r"}), "notes"),
        (json!({"notes": "n".repeat(4097)}), "notes"),
        (json!({"ipmi_addr": "10.0.0.1:623"}), "ipmi_addr"),
        (json!({"hostname": "a\nb"}), "hostname"),
        (json!({"overrides": {"k\u{0}": 1}}), "overrides"),
    ];
    for (body, field) in cases {
        let req = Request::patch("/api/v1/machines/sn-a1")
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (st, text) = send(mayu::api::router(f.state.clone()), req).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("`{field}")), "{body}: {detail}");
        assert_no_control("detail", detail, false);
    }
    // The canonical address is what is stored.
    let req = Request::patch("/api/v1/machines/sn-a1")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"ipmi_addr": "fd00:0::0001"}).to_string()))
        .unwrap();
    let (st, text) = send(mayu::api::router(f.state.clone()), req).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert_eq!(
        f.engine.find("sn-a1").unwrap().ipmi_addr.as_deref(),
        Some("fd00::1")
    );
    f.stop().await;
}

async fn ctl(f: &Fixture, args: &[&str]) -> String {
    let o = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
            .env_remove("MAYU_SERVER")
            .env_remove("MAYU_TOKEN")
            .env_remove("MAYU_TOKEN_FILE")
            .arg("--server")
            .arg(f.url(""))
            .arg("--token")
            .arg(&f.admin)
            .args(args)
            .output(),
    )
    .await
    .expect("mayuctl finishes")
    .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "mayuctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Raw bytes to text without repair: a stray byte must be seen, not replaced.
    String::from_utf8(o.stdout).expect("mayuctl writes UTF-8")
}

/// A Mayu cluster folder is held to the same rules: a host file with hostile text is skipped
/// with the field named, its neighbours are imported, and huge leftover notes are cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_follow_the_same_rules() {
    let f = start(false).await;
    let dir = f.dir.path().join("mayu-cluster");
    let host = |serial: &str, body: &Value| {
        std::fs::create_dir_all(dir.join(serial)).unwrap();
        std::fs::write(dir.join(serial).join("conf.json"), body.to_string()).unwrap();
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cluster.json"), "{}").unwrap();
    host(
        "H1",
        &json!({"Serial": "H1", "MacAddresses": ["00:16:3e:00:00:21"], "ProviderId": "i-1\nsn-a1: retired"}),
    );
    host(
        "H2",
        &json!({"Serial": "H2", "MacAddresses": ["00:16:3e:00:00:22"], "IPMIAddr": "10.1.0.5\u{1b}[2J"}),
    );
    host(
        "H3",
        &json!({"Serial": "H3", "MacAddresses": ["00:16:3e:00:00:23"], "IPMIAddr": "10.1.0.6",
                "Unknown": "u".repeat(10_000)}),
    );
    let report = mayu::import::import_dir(&f.engine, &dir).unwrap();
    let imported: Vec<String> = report.imported.iter().map(|i| i.to_string()).collect();
    assert_eq!(imported, ["h3"], "{:?}", report.skipped);
    let reasons: Vec<&str> = report.skipped.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("`provider_id` "), "{reasons:?}");
    assert!(reasons[1].starts_with("`ipmi_addr` "), "{reasons:?}");
    let h3 = f.engine.find("h3").unwrap();
    assert!(
        h3.notes.len() <= mayu::text::MAX_NOTES,
        "{}",
        h3.notes.len()
    );
    assert!(h3.notes.ends_with('…'));
    f.stop().await;
}
