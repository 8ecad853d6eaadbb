//! The API port over TLS as `http.tls` configures it: the certificate and key read with an
//! error that names the file at fault, and the port served through `axum-server`'s rustls
//! acceptor inside mayu's own accept loop, so TLS connections are counted and bounded like
//! plain ones and a stop still ends the port.
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod support;

use std::time::Duration;

use support::Lab;

const WAIT: Duration = Duration::from_secs(30);

fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn tls_lab() -> Lab {
    Lab::new(&[(
        "api: 127.0.0.1:0",
        "api: 127.0.0.1:0\n  tls: { cert: api.crt, key: api.key }\n ",
    )])
}

#[tokio::test]
async fn a_missing_or_unfit_certificate_or_key_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = self_signed();
    let (_, other_key) = self_signed();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("api.crt"), &cert_pem).unwrap();
    std::fs::write(path("api.key"), &key_pem).unwrap();
    std::fs::write(path("other.key"), &other_key).unwrap();
    std::fs::write(path("empty.crt"), "not a certificate\n").unwrap();
    let load = |c: &str, k: &str| {
        mayu::api::tls::load(&path(c), &path(k))
            .err()
            .map(|e| e.to_string())
    };

    assert_eq!(load("api.crt", "api.key"), None);
    let e = load("missing.crt", "api.key").unwrap();
    assert!(e.starts_with("TLS certificate "), "{e}");
    assert!(
        e.contains(&path("missing.crt").display().to_string()),
        "{e}"
    );
    let e = load("empty.crt", "api.key").unwrap();
    assert!(e.contains(&path("empty.crt").display().to_string()), "{e}");
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = load("api.crt", "missing.key").unwrap();
    assert!(e.starts_with("TLS key "), "{e}");
    assert!(
        e.contains(&path("missing.key").display().to_string()),
        "{e}"
    );
    let e = load("api.crt", "other.key").unwrap();
    assert!(e.contains(&path("api.crt").display().to_string()), "{e}");
    assert!(e.contains(&path("other.key").display().to_string()), "{e}");
    assert!(e.contains("do not fit together"), "{e}");

    // Starting the services with a configured certificate that is not there fails the same
    // way, naming the file as the config resolved it.
    let lab = tls_lab();
    lab.write("api.key", &key_pem);
    let err = mayu::services::start(lab.engine(), tokio_util::sync::CancellationToken::new())
        .await
        .err()
        .expect("no certificate, no API");
    let text = format!("{err:#}");
    assert!(
        text.contains(&lab.path().join("api.crt").display().to_string()),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_port_serves_tls_and_counts_its_connections() {
    let lab = tls_lab();
    let (cert_pem, key_pem) = self_signed();
    lab.write("api.crt", &cert_pem);
    lab.write("api.key", &key_pem);
    let engine = lab.engine();
    let metrics = mayu::metrics::Metrics::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let launched = mayu::api::launch(engine.clone(), metrics.clone(), None, cancel.clone())
        .await
        .unwrap();
    assert!(launched.tls);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = |p: &str| format!("https://{}{p}", launched.addr);

    let r = tokio::time::timeout(WAIT, client.get(url("/api/v1/health")).send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);

    // Plain HTTP to the TLS port gets no answer, and the port keeps serving.
    let plain = reqwest::get(format!("http://{}/api/v1/health", launched.addr)).await;
    assert!(plain.is_err(), "{plain:?}");

    let text = client
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .unwrap()
    };
    // The health request's connection, the plain one, and the scrape's own (which is open).
    assert!(value("mayu_http_connections_accepted_total{listener=\"api\"}") >= 2);
    assert!(value("mayu_http_connections_open{listener=\"api\"}") >= 1);
    assert!(value("mayu_http_connection_limit{listener=\"api\"}") >= 1);

    // A stop ends the port even with the client's keep-alive connection open.
    cancel.cancel();
    tokio::time::timeout(WAIT, launched.task)
        .await
        .expect("the API stops after cancel")
        .unwrap();
    let after = tokio::time::timeout(WAIT, client.get(url("/api/v1/health")).send())
        .await
        .unwrap();
    assert!(after.is_err(), "{after:?}");
}
