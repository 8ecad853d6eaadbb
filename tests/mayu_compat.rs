//! Legacy mode (`compat.mayu`): the requests giantswarm/mayu's own clients send, replayed byte
//! for byte as Go's `net/http` writes them, against a real mayu on loopback.
//!
//! The bodies are what Go's `json.Marshal(hostmgr.Host{...})` produces for each call in Mayu's
//! `client/client.go` (giantswarm/mayu, the version before `20f9bcb` for `set_metadata`,
//! `set_cabinet` and `mark_fresh`, HEAD for the rest): every field is `omitempty` except
//! `State` (always sent, `"unknown"` when unset) and `LastBoot` (a `time.Time`, which
//! `omitempty` never drops), in the struct's field order. `mayuctl boot-complete
//! --update-versions` (giantswarm/mayuctl) sends the versions it read from `/etc/mayu-env`.

#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;

use support::{Lab, Running};

const ZERO: &str = r#""LastBoot":"0001-01-01T00:00:00Z""#;
const ALLOW_LOOPBACK: &str = "compat:\n  mayu:\n    allow_from: [127.0.0.0/8]\n";

/// One request as Go's `http.Client` writes it; the status and body of the answer.
fn go_request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\n");
    if let Some(b) = body {
        req += &format!(
            "Content-Length: {}\r\nContent-Type: application/json\r\n",
            b.len()
        );
    }
    req += "Accept-Encoding: gzip\r\n\r\n";
    req += body.unwrap_or("");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
            assert!(
                !(k.eq_ignore_ascii_case("transfer-encoding")),
                "answers here carry a length: {line}"
            );
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (code, String::from_utf8(body).unwrap())
}

fn put(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    go_request(addr, "PUT", path, Some(body))
}

fn compat_lab(compat: &str) -> Lab {
    let lab = Lab::new(&[("templates_env:", &format!("{compat}templates_env:"))]);
    lab.write(
        "images/flatcar/flatcar_production_pxe.vmlinuz",
        "flatcar kernel",
    );
    lab.write(
        "images/flatcar/flatcar_production_pxe_image.cpio.gz",
        "flatcar initrd",
    );
    lab.write("images/flatcar/flatcar_production_pxe.vmlinuz.sig", "sig");
    lab.write("images/discovery/vmlinuz", "discovery kernel");
    lab.write("images/discovery/initrd.img", "discovery initrd");
    lab
}

/// Registers a machine as iPXE would and assigns it to `worker` with the admin token.
async fn worker(r: &Running, serial: &str, mac: &str) -> String {
    let client = reqwest::Client::new();
    let resp = client
        .get(r.url(&format!("/ipxe?mac={mac}&serial={serial}&arch=x86_64")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let m = r.engine.find_host(serial).unwrap();
    let resp = client
        .patch(format!("http://{}/api/v1/machines/{}", r.api, m.id))
        .bearer_auth(r.token())
        .json(&serde_json::json!({"profile": "worker"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    m.id.to_string()
}

/// Authors and messages of the inventory's commits, newest first (a burst from one author is
/// one commit listing each change).
fn authors(lab: &Lab) -> Vec<(String, String)> {
    let repo = git2::Repository::open(lab.path().join("inventory")).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    walk.map(|oid| {
        let c = repo.find_commit(oid.unwrap()).unwrap();
        let author = c.author().name().unwrap_or("").to_string();
        let message = c.message().unwrap_or("").to_string();
        (author, message)
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mayus_clients_are_answered_as_mayu_answered_them() {
    let lab = compat_lab(ALLOW_LOOPBACK);
    let r = Running::start(&lab).await;
    let id = worker(&r, "SN-LEGACY1", "52:54:00:aa:00:01").await;
    let api = r.api;
    let host = "/admin/host/SN-LEGACY1";

    // Every PUT Mayu's client sends, with no token (Mayu's clients have none): 202 each.
    let replay: Vec<(String, String)> = vec![
        (
            "set_provider_id".into(),
            format!(r#"{{"ProviderId":"rack-7-srv-3",{ZERO},"State":"unknown"}}"#),
        ),
        (
            "set_ipmi_addr".into(),
            format!(r#"{{"IPMIAddr":"10.1.0.23",{ZERO},"State":"unknown"}}"#),
        ),
        (
            "set_cabinet".into(),
            format!(r#"{{"Cabinet":3,{ZERO},"State":"unknown"}}"#),
        ),
        (
            "set_metadata".into(),
            format!(r#"{{"FleetMetadata":["role=worker","zone=b"],{ZERO},"State":"unknown"}}"#),
        ),
        (
            "set_etcd_cluster_token".into(),
            format!(r#"{{{ZERO},"EtcdClusterToken":"tok-5f2a","State":"unknown"}}"#),
        ),
        (
            "override".into(),
            format!(
                r#"{{{ZERO},"Overrides":{{"docker_args":"--log-level=warn"}},"State":"unknown"}}"#
            ),
        ),
        (
            "boot_complete".into(),
            format!(
                r#"{{{ZERO},"State":"unknown","CoreOSVersion":"3815.2.5","MayuVersion":"1.3.0","DockerVersion":"24.0.9"}}"#
            ),
        ),
    ];
    for (route, body) in &replay {
        let (code, text) = put(api, &format!("{host}/{route}"), body);
        assert_eq!(code, 202, "{route}: {text}");
    }
    r.engine.flush().unwrap();
    let m = r.engine.find_host("SN-LEGACY1").unwrap();
    assert_eq!(m.provider_id.as_deref(), Some("rack-7-srv-3"));
    assert_eq!(m.ipmi_addr.as_deref(), Some("10.1.0.23"));
    assert_eq!(m.rack.as_ref().map(|r| r.rack.as_str()), Some("3"));
    assert_eq!(m.metadata, ["role=worker", "zone=b"]);
    assert_eq!(m.etcd_token.as_deref(), Some("tok-5f2a"));
    assert_eq!(m.overrides["docker_args"], "--log-level=warn");
    assert_eq!(m.state, mayu::machine::State::Running);
    assert_eq!(m.versions["os"], "3815.2.5");
    assert_eq!(m.versions["docker"], "24.0.9");

    // `GET /admin/hosts` answers with Mayu's field names, as `mayuctl list/status` read them.
    let (code, text) = go_request(api, "GET", "/admin/hosts", None);
    assert_eq!(code, 200, "{text}");
    let hosts: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let h = hosts.iter().find(|h| h["Serial"] == "SN-LEGACY1").unwrap();
    assert_eq!(h["Cabinet"], 3, "{h}");
    assert_eq!(
        h["FleetMetadata"],
        serde_json::json!(["role=worker", "zone=b"])
    );
    assert_eq!(h["EtcdClusterToken"], "tok-5f2a");
    assert_eq!(h["IPMIAddr"], "10.1.0.23");
    assert_eq!(h["CoreOSVersion"], "3815.2.5");
    assert_eq!(h["State"], "running");
    assert_eq!(h["Profile"], "worker");
    assert!(
        h["LastBoot"].as_str().is_some_and(|t| t.starts_with("20")),
        "{h}"
    );

    // Mayu's own refusals: 400 for an unknown host and for a body that is not JSON.
    let (code, text) = put(
        api,
        "/admin/host/nosuch/set_cabinet",
        &format!(r#"{{"Cabinet":1,{ZERO},"State":"unknown"}}"#),
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("doesn't exist"), "{text}");
    let (code, text) = put(api, &format!("{host}/set_metadata"), "{not json");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("unable to parse json data in set_metadata request"));
    let (code, _) = put(
        api,
        &format!("{host}/set_state"),
        &format!(r#"{{{ZERO},"State":"flying"}}"#),
    );
    assert_eq!(code, 400);

    // mark_fresh: install again from scratch on the next boot.
    let (code, text) = put(api, &format!("{host}/mark_fresh"), "");
    assert_eq!(code, 202, "{text}");
    r.engine.flush().unwrap();
    let m = r.engine.find_host("SN-LEGACY1").unwrap();
    assert!(
        m.reinstall && m.state == mayu::machine::State::Configured,
        "{m:?}"
    );

    // `mayuctl config get`.
    let (code, text) = go_request(api, "GET", "/admin/mayu_config", None);
    assert_eq!(code, 200);
    assert!(text.contains("allow_from: [127.0.0.0/8]"), "{text}");

    // Each token-less change is audited with the client's address as its author.
    let log = authors(&lab);
    let assigned = log
        .iter()
        .position(|(a, _)| a == "admin")
        .expect("the assignment commit");
    assert!(
        log[..assigned].iter().all(|(a, _)| a == "127.0.0.1"),
        "every later change is by the client's address: {log:?}"
    );
    let legacy: String = log[..assigned].iter().map(|(_, m)| m.as_str()).collect();
    for needle in [
        "provider id rack-7-srv-3",
        "ipmi address 10.1.0.23",
        "rack 3",
        "metadata role=worker,zone=b",
        "etcd token",
        "override docker_args",
        "boot complete (docker 24.0.9, mayu 1.3.0, os 3815.2.5)",
        "reinstall requested",
    ] {
        assert!(legacy.contains(needle), "no change `{needle}` in {log:?}");
    }
    assert!(
        !log.iter().any(|(_, s)| s.contains("tok-5f2a")),
        "the etcd token never enters the audit message"
    );

    // The boot port: Mayu's iPXE script, images by serial and by default, and the
    // Ignition its kernel command line asks for.
    let boot = r.boot;
    let (code, text) = go_request(boot, "GET", "/ipxebootscript", None);
    assert_eq!(code, 200);
    assert!(
        text.starts_with("#!ipxe") && text.contains("/ipxe?mac="),
        "{text}"
    );
    let (code, text) = go_request(boot, "GET", "/images/SN-LEGACY1/vmlinuz", None);
    assert_eq!((code, text.as_str()), (200, "flatcar kernel"));
    let (code, text) = go_request(boot, "GET", "/images/sn-legacy1/initrd.cpio.gz", None);
    assert_eq!((code, text.as_str()), (200, "flatcar initrd"));
    let (code, text) = go_request(boot, "GET", "/images/vmlinuz", None);
    assert_eq!((code, text.as_str()), (200, "discovery kernel"));
    let (code, text) = go_request(boot, "GET", "/images/initrd.cpio.gz", None);
    assert_eq!((code, text.as_str()), (200, "discovery initrd"));
    let (code, text) = go_request(
        boot,
        "GET",
        "/images/SN-LEGACY1/install_image.bin.bz2",
        None,
    );
    assert_eq!(code, 404, "{text}");
    assert!(
        text.contains("vmlinuz"),
        "the refusal says what is served: {text}"
    );
    let (code, text) = go_request(
        boot,
        "GET",
        "/ignition?uuid=&serial=SN-LEGACY1&asset=&mac=52:54:00:aa:00:01",
        None,
    );
    assert_eq!(code, 200, "{text}");
    let ign: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(ign["ignition"]["version"].is_string(), "{ign}");
    let (code, _) = go_request(boot, "GET", "/ignition?uuid=&serial=NOSUCH", None);
    assert_eq!(code, 404);
    assert_eq!(id, m.id.to_string());
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_from_mayus_requests_need_a_token() {
    // Legacy mode on, but this client's address is not listed.
    let lab = compat_lab("compat:\n  mayu:\n    allow_from: [10.77.0.0/24]\n");
    let r = Running::start(&lab).await;
    worker(&r, "SN-LEGACY2", "52:54:00:aa:00:02").await;
    r.engine.flush().unwrap();
    let commits = lab.commits();
    let (code, text) = put(
        r.api,
        "/admin/host/SN-LEGACY2/set_cabinet",
        &format!(r#"{{"Cabinet":4,{ZERO},"State":"unknown"}}"#),
    );
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("allow_from"), "{text}");
    let (code, _) = go_request(r.api, "GET", "/admin/hosts", None);
    assert_eq!(code, 401);
    let (code, text) = go_request(r.boot, "GET", "/ipxebootscript", None);
    assert_eq!(code, 403, "{text}");
    let (code, _) = go_request(r.boot, "GET", "/images/vmlinuz", None);
    assert_eq!(code, 403);
    let (code, _) = go_request(r.boot, "GET", "/ignition?uuid=&serial=SN-LEGACY2", None);
    assert_eq!(code, 403);
    r.engine.flush().unwrap();
    assert_eq!(lab.commits(), commits, "refusals change nothing");

    // With a token the same request works from anywhere, authored by the token.
    let resp = reqwest::Client::new()
        .put(format!(
            "http://{}/admin/host/SN-LEGACY2/set_cabinet",
            r.api
        ))
        .bearer_auth(r.token())
        .body(format!(r#"{{"Cabinet":4,{ZERO},"State":"unknown"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    r.engine.flush().unwrap();
    assert_eq!(
        r.engine
            .find_host("SN-LEGACY2")
            .and_then(|m| m.rack)
            .map(|r| r.rack),
        Some("4".into())
    );
    r.stop().await;

    // Legacy mode off: the boot port has no Mayu routes at all.
    let lab = compat_lab("");
    let r = Running::start(&lab).await;
    let (code, _) = go_request(r.boot, "GET", "/ipxebootscript", None);
    assert_eq!(code, 404);
    let (code, _) = go_request(r.boot, "GET", "/ignition?uuid=&serial=SN-LEGACY2", None);
    assert_eq!(code, 403);
    r.stop().await;
}

#[test]
fn a_bad_allow_from_entry_is_located() {
    let lab = Lab::new(&[(
        "templates_env:",
        "compat:\n  mayu:\n    allow_from: [10.0.0.0/8, not-a-net]\ntemplates_env:",
    )]);
    let path = lab.path().join("config.yaml");
    let err = mayu::Config::load(&path).unwrap_err().to_string();
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().position(|l| l.contains("not-a-net")).unwrap() + 1;
    assert!(err.contains(&format!("config.yaml:{line}:")), "{err}");
    assert!(err.contains("not-a-net") && err.contains("CIDR"), "{err}");
}
