//! `GET /boot/{file}` on the boot port: the TFTP root's boot programs for UEFI HTTP boot, and
//! nothing else from that folder or outside it.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use mayu::boot::{router, BootState};
use mayu::events::EventKind;
use mayu::machine::Phase;
use support::{wait_for, Lab};

async fn send(s: &BootState, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    support::oneshot(router(s.clone()), req).await
}

#[tokio::test]
async fn boot_programs_are_served_from_the_tftp_root_and_nothing_else() {
    let lab = Lab::new(&[]);
    let program: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let root = lab.path().join("tftproot");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("ipxe.efi"), &program).unwrap();
    std::fs::write(root.join("secret.txt"), b"not a boot program").unwrap();
    lab.write("config.yaml.bak", "not served either");
    let s = lab.boot_state();
    let mut events = s.engine.bus().subscribe();

    // The firmware asks for the size first, then fetches.
    let (status, headers, body) = send(
        &s,
        Request::head("/boot/ipxe.efi").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(header::CONTENT_LENGTH).unwrap(),
        &program.len().to_string()
    );
    assert!(body.is_empty());

    let (status, _, body) = send(
        &s,
        Request::get("/boot/ipxe.efi").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, program);
    let ev = wait_for(&mut events, 5, |e| {
        matches!(&e.kind, EventKind::BootStep { phase: Phase::Dhcp, detail, .. }
            if detail.contains("boot program ipxe.efi sent over HTTP"))
    })
    .await;
    let EventKind::BootStep { bytes, .. } = &ev.kind else {
        unreachable!()
    };
    assert_eq!(*bytes, Some(program.len() as u64));

    for uri in [
        "/boot/secret.txt",
        "/boot/..%2Fconfig.yaml",
        "/boot/%2E%2E%2Fconfig.yaml.bak",
        "/boot/boot.ipxe",
    ] {
        let (status, _, body) = send(&s, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains("not a boot program"), "{uri}: {body}");
        assert!(
            body.contains("ipxe.efi"),
            "the reason names what is served: {body}"
        );
    }

    // A known program the folder lacks says how to fill it.
    let (status, _, body) = send(
        &s,
        Request::get("/boot/undionly.kpxe")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        String::from_utf8_lossy(&body).contains("fill-tftproot.sh"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}
