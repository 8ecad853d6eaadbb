//! The boot port: registration through iPXE, hold-and-poll, local-disk boot, configs behind the
//! machine token, assets with Range and without traversal, and hot reload of templates.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use axum::http::StatusCode;
use mayu::boot::BootState;
use mayu::engine::Registration;
use mayu::events::EventKind;
use mayu::machine::{Phase, State};
use support::{wait_for, Lab};

async fn get(s: &BootState, uri: &str) -> (StatusCode, String) {
    support::boot_call(s, "GET", uri, "").await
}

async fn post(s: &BootState, uri: &str, body: &str) -> (StatusCode, String) {
    support::boot_call(s, "POST", uri, body).await
}

#[tokio::test]
async fn chain_script_asks_for_the_machine_script() {
    let lab = Lab::new(&[]);
    let s = lab.boot_state();
    let (st, body) = get(&s, "/boot.ipxe").await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.starts_with("#!ipxe"), "{body}");
    assert!(
        body.contains("http://10.77.0.1:4081/ipxe?mac=${net0/mac}&uuid=${uuid}&serial=${serial}&arch=${buildarch}"),
        "{body}"
    );
}

#[tokio::test]
async fn ipxe_registers_and_renders_the_profile() {
    let lab = Lab::new(&[]);
    let s = lab.boot_state();
    // iPXE percent-encodes what it expands.
    let (st, body) = get(
        &s,
        "/ipxe?mac=52%3A54%3A00%3A00%3A00%3A10&uuid=&serial=SN-0010&arch=x86_64&platform=pcbios",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.starts_with("#!ipxe"), "{body}");
    assert!(
        body.contains("flatcar_production_pxe.vmlinuz?id=sn-0010"),
        "{body}"
    );
    assert!(
        body.contains("ignition.config.url=http://10.77.0.1:4081/ignition?id=sn-0010&token="),
        "{body}"
    );
    let m = s.engine.find("sn-0010").expect("registered");
    assert_eq!(m.macs[0].to_string(), "52:54:00:00:00:10");
    // No facts yet: the control-plane selector (memory) does not match; worker takes it.
    assert_eq!(m.profile.as_deref(), Some("worker"));
    assert_eq!(m.state, State::Installing);
    assert!(m.phases.ipxe.is_some());
    // The same MAC again is the same machine.
    let (st, _) = get(&s, "/ipxe?mac=52-54-00-00-00-10").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.engine.len(), 1);
    // A bad MAC is a 400 with a reason.
    let (st, body) = get(&s, "/ipxe?mac=nonsense").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a MAC address"), "{body}");
}

#[tokio::test]
async fn held_machine_boots_the_profile_on_the_poll_after_assignment() {
    let lab = Lab::new(&[("assignment: auto", "assignment: manual")]);
    let s = lab.boot_state();
    let uri = "/ipxe?mac=52:54:00:00:00:20&serial=HELD1";
    let (st, body) = get(&s, uri).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("waiting for an operator"), "{body}");
    assert!(body.contains("sleep 5"), "{body}");
    assert!(
        body.contains("chain --replace --autofree http://10.77.0.1:4081/ipxe?mac=${net0/mac}"),
        "{body}"
    );
    assert_eq!(s.engine.find("held1").unwrap().state, State::Waiting);

    s.engine
        .assign("held1", "control-plane", "alice", false)
        .unwrap();
    let (st, body) = get(&s, uri).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("profile control-plane"), "{body}");
    assert!(body.contains("flatcar_production_pxe.vmlinuz"), "{body}");
    let m = s.engine.find("held1").unwrap();
    assert_eq!(m.state, State::Installing);
    assert!(m.pinned);
}

#[tokio::test]
async fn installed_machine_boots_from_disk_until_reinstall() {
    let lab = Lab::new(&[]);
    let s = lab.boot_state();
    let uri = "/ipxe?mac=52:54:00:00:00:30&serial=DISK1";
    get(&s, uri).await;
    // control-plane installs to disk (worker boots live every time).
    s.engine
        .assign("disk1", "control-plane", "alice", false)
        .unwrap();
    get(&s, uri).await;
    s.engine.boot_complete("disk1", "disk1").unwrap();
    let (_, body) = get(&s, uri).await;
    assert!(
        body.contains("sanboot --no-describe --drive 0x80 || exit"),
        "{body}"
    );
    assert!(!body.contains("kernel "), "{body}");
    s.engine.request_reinstall("disk1", "bob").unwrap();
    let (_, body) = get(&s, uri).await;
    assert!(body.contains("kernel "), "{body}");
}

#[tokio::test]
async fn configs_need_the_machine_token_and_403_changes_nothing() {
    let lab = Lab::new(&[]);
    let s = lab.boot_state();
    get(&s, "/ipxe?mac=52:54:00:00:00:40&serial=TOK1").await;
    let m = s.engine.find("tok1").unwrap();
    s.engine.flush().unwrap();
    let commits = lab.commits();

    let (st, forbidden) = get(&s, "/ignition?id=tok1").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(!forbidden.contains("ignition\""), "{forbidden}");
    let (st, wrong) = get(&s, "/ignition?id=tok1&token=nope").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, unknown) = get(&s, "/ignition?id=nobody&token=nope").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Unknown machine and wrong token look the same.
    assert_eq!(wrong, unknown);
    let (st, _) = post(&s, "/boot-complete?id=tok1&token=nope", "").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = post(&s, "/facts?id=tok1&token=nope", "{}").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.engine.flush().unwrap();
    assert_eq!(lab.commits(), commits, "a refused request must not commit");
    assert_eq!(s.engine.find("tok1").unwrap(), m);

    // With the token: Ignition JSON, valid, with the hostname and the boot-complete URL.
    let (st, body) = get(&s, &format!("/ignition?id=tok1&token={}", m.token)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ignition"]["version"], "3.3.0");
    assert!(body.contains("data:,tok1"), "{body}");
    assert!(body.contains(&format!("boot-complete?id=tok1&token={}", m.token)));
    let (st, body) = get(&s, &format!("/cloud-config?id=tok1&token={}", m.token)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.starts_with("#cloud-config"));

    let (st, _) = post(&s, &format!("/boot-complete?id=tok1&token={}", m.token), "").await;
    assert_eq!(st, StatusCode::OK);
    let m = s.engine.find("tok1").unwrap();
    assert_eq!(m.state, State::Running);
    let history = s.engine.history("tok1").unwrap();
    assert_eq!(history[0].message, "tok1: boot complete");
    assert_eq!(
        history[0].author, "tok1",
        "the machine itself is the author"
    );
}

#[tokio::test]
async fn facts_move_a_discovered_machine_into_a_matching_profile() {
    let lab = Lab::new(&[(
        "  - name: worker\n    quantity: 10",
        "  - name: worker\n    quantity: 0",
    )]);
    let s = lab.boot_state();
    get(&s, "/ipxe?mac=52:54:00:00:00:50&serial=DISC1").await;
    let m = s.engine.find("disc1").unwrap();
    assert_eq!(m.profile.as_deref(), Some("discovery"));
    assert_eq!(m.state, State::Waiting, "discovery is not an installation");
    let (st, body) = get(&s, &format!("/assignment?id=disc1&token={}", m.token)).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("\"boot\":false"), "{body}");
    let facts = r#"{"cpus":2,"memory_bytes":4294967296,"disks":[{"name":"vda","size_bytes":1073741824}],
        "nics":[{"name":"eth0","mac":"52:54:00:00:00:50","link":true}],"vendor":"QEMU","product":"Standard PC"}"#;
    let (st, body) = post(
        &s,
        &format!("/facts?id=disc1&token={}&ipmi=10.1.0.5", m.token),
        facts,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("\"boot\":true"), "{body}");
    let m = s.engine.find("disc1").unwrap();
    assert_eq!(m.profile.as_deref(), Some("control-plane"));
    assert_eq!(m.facts.cpus, Some(2));
    assert_eq!(m.ipmi_addr.as_deref(), Some("10.1.0.5"));
    let (st, body) = post(
        &s,
        &format!("/facts?id=disc1&token={}", m.token),
        r#"{"ram":1}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown field"), "{body}");
}

#[tokio::test]
async fn invalid_ignition_is_refused_with_a_reason() {
    let lab = Lab::new(&[]);
    lab.write(
        "templates/worker.yaml",
        "{% include \"snippets/ignition-common.yaml\" %}\n{% if env.broken %}bogus: 1\n{% endif %}",
    );
    let s = lab.boot_state();
    get(&s, "/ipxe?mac=52:54:00:00:00:60&serial=BAD1").await;
    s.engine
        .edit(
            "bad1",
            "alice",
            mayu::engine::Edit {
                overrides: [("broken".to_string(), Some(serde_json::json!(true)))].into(),
                ..Default::default()
            },
        )
        .unwrap();
    let m = s.engine.find("bad1").unwrap();
    let mut rx = s.engine.bus().subscribe();
    let (st, body) = get(&s, &format!("/ignition?id=bad1&token={}", m.token)).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("unused key: $.bogus"), "{body}");
    wait_for(
        &mut rx,
        5,
        |e| matches!(&e.kind, EventKind::Log { message, .. } if message.contains("bad1")),
    )
    .await;
}

#[tokio::test]
async fn renders_never_see_each_others_overrides() {
    let lab = Lab::new(&[(
        "templates: { ipxe: flatcar.ipxe, ignition: worker.yaml, cloud_config: cloud-config.yaml }",
        "templates: { ipxe: flatcar.ipxe, ignition: worker.yaml, metadata: env.json }",
    )]);
    lab.write("templates/env.json", "{{ env | json_encode() }}");
    let s = lab.boot_state();
    let mut tokens = Vec::new();
    for i in 0..8u8 {
        get(
            &s,
            &format!("/ipxe?mac=52:54:00:00:01:{i:02x}&serial=ENV{i}"),
        )
        .await;
        let id = format!("env{i}");
        s.engine
            .edit(
                &id,
                "alice",
                mayu::engine::Edit {
                    overrides: [(format!("only_{i}"), Some(serde_json::json!(i)))].into(),
                    ..Default::default()
                },
            )
            .unwrap();
        tokens.push((i, id.clone(), s.engine.find(&id).unwrap().token));
    }
    let mut tasks = Vec::new();
    for round in 0..25 {
        for (i, id, token) in tokens.clone() {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let (st, body) = get(&s, &format!("/metadata?id={id}&token={token}")).await;
                assert_eq!(st, StatusCode::OK, "{body}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let keys: Vec<_> = v
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| k.starts_with("only_"))
                    .cloned()
                    .collect();
                assert_eq!(keys, vec![format!("only_{i}")], "round {round}: {body}");
                assert_eq!(v["role"], "worker");
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn boot_steps_are_events_with_machine_and_phase() {
    let lab = Lab::new(&[]);
    let s = lab.boot_state();
    let mut rx = s.engine.bus().subscribe();
    get(&s, "/ipxe?mac=52:54:00:00:00:70&serial=EV1").await;
    wait_for(&mut rx, 5, |e| {
        matches!(&e.kind, EventKind::MachineAdded { machine, .. } if machine.id.as_str() == "ev1")
    })
    .await;
    wait_for(&mut rx, 5, |e| {
        matches!(&e.kind, EventKind::BootStep { id: Some(id), phase: Phase::Ipxe, .. } if id.as_str() == "ev1")
    })
    .await;
}

/// Wait helper used by the engine-level registration test elsewhere.
#[tokio::test]
async fn registration_without_any_identity_is_refused() {
    let lab = Lab::new(&[]);
    let s = lab.boot_state();
    let (st, body) = get(&s, "/ipxe?serial=&uuid=").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("serial, a UUID or a MAC"), "{body}");
    let _ = Registration::default();
}
