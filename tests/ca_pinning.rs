//! `mayuctl --ca-cert FILE` against the real API served over TLS (`http.tls`): the server's own
//! certificate made by `openssl req -x509` with its defaults (which marks it `CA:TRUE`, so
//! plain webpki refuses it as an end-entity certificate) is trusted by pinning; a different
//! self-signed certificate is refused with the reason; a CA file keeps working for a
//! certificate that CA issued, names checked.
#![allow(clippy::unwrap_used)] // tests stop at the first surprise

mod api_fixture;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use mayu::api;
use mayu::metrics::Metrics;
use mayu::tokens::{Scope, Tokens};
use mayu::{Config, Engine};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// The API of a throwaway mayu served over TLS with the given certificate chain and key.
struct Tls {
    _dir: TempDir,
    url: String,
    reader: String,
    cancel: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Tls {
    async fn start(cert: &Path, key: &Path) -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (file, text) in [
            ("templates/flatcar.ipxe", "#!ipxe\n"),
            ("templates/worker.yaml", "ignition: {}\n"),
            ("templates/discovery.ipxe", "#!ipxe\n"),
            ("images/flatcar/README.md", "flatcar\n"),
            ("images/discovery/README.md", "discovery\n"),
        ] {
            let p = root.join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let text = api_fixture::CONFIG.replace(
            "http: { boot: \"127.0.0.1:0\", api: \"127.0.0.1:0\" }",
            &format!(
                "http:\n  boot: \"127.0.0.1:0\"\n  api: \"127.0.0.1:0\"\n  tls: {{ cert: {}, key: {} }}",
                cert.display(),
                key.display()
            ),
        );
        assert!(text.contains("tls:"), "{text}");
        let config_path = root.join("config.yaml");
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::parse(&config_path, &text).unwrap();
        let tokens_file = config.tokens_file.clone();
        let engine = Engine::open(config).unwrap();
        api_fixture::register(&engine, "52:54:00:00:00:01", Some("SN-A1"));
        api_fixture::register(&engine, "52:54:00:00:00:02", Some("SN-A2"));
        engine.flush().unwrap();
        let (tokens, _) = Tokens::load_or_create(&tokens_file).unwrap();
        let reader = tokens.add("viewer", Scope::Read).unwrap();
        let cancel = CancellationToken::new();
        let state = api::ApiState::new(engine.clone(), tokens, Metrics::new())
            .with_shutdown(cancel.clone());
        let (cert, key) = api::tls::configured_paths(engine.config()).unwrap();
        let tls = api::tls::load(&cert, &key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(api::tls::serve(
            listener,
            api::router(state),
            tls,
            cancel.clone(),
        ));
        Tls {
            _dir: dir,
            url,
            reader,
            cancel,
            server,
        }
    }

    /// `mayuctl --ca-cert CA --server URL list --no-legend --fields id`.
    async fn list(&self, ca: &Path) -> Output {
        let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
            .env_remove("MAYU_SERVER")
            .env_remove("MAYU_TOKEN")
            .env_remove("MAYU_TOKEN_FILE")
            .env_remove("MAYU_CA_CERT")
            .arg("--ca-cert")
            .arg(ca)
            .args(["--server", &self.url, "--token", &self.reader])
            .args(["list", "--no-legend", "--fields", "id"])
            .output();
        tokio::time::timeout(WAIT, cmd)
            .await
            .expect("mayuctl finishes")
            .unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.server)
            .await
            .expect("server stops after cancel")
            .unwrap()
            .unwrap();
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn listed(o: &Output) -> Vec<String> {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out(o),
        err(o)
    );
    out(o).lines().map(str::to_string).collect()
}

/// `openssl req -x509` with the default configuration (no `-addext`): a self-signed RSA
/// certificate for CN=localhost, `basicConstraints=CA:TRUE`. Returns (cert, key).
fn openssl_self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let o = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .output()
        .expect("openssl is installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // What makes plain webpki refuse it as the server's certificate.
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("CA:TRUE"), "{text}");
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_openssl_certificate_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(dir.path(), "api");
    let server = Tls::start(&cert, &key).await;

    // Made for CN=localhost, served at 127.0.0.1: pinning trusts the certificate itself.
    let ids = listed(&server.list(&cert).await);
    assert_eq!(ids, vec!["sn-a1", "sn-a2"]);

    // Another self-signed certificate (same subject, other key) is not the server's.
    let (other, _) = openssl_self_signed(dir.path(), "other");
    let o = server.list(&other).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let e = err(&o);
    assert!(e.contains("not trusted"), "{e}");
    assert!(e.contains(&other.display().to_string()), "{e}");
    assert!(
        e.contains("invalid peer certificate") && e.contains("is not the certificate in"),
        "{e}"
    );
    assert!(out(&o).is_empty(), "{}", out(&o));
    server.stop().await;
}

/// A CA (rcgen) and a leaf it issued for `names`; the leaf's chain and key written to files.
struct Issued {
    ca: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

fn issue(dir: &Path, names: &[&str]) -> Issued {
    let name = names.join("_");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("mayu test CA for {name}"),
    );
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let files = Issued {
        ca: dir.join(format!("ca-{name}.crt")),
        chain: dir.join(format!("leaf-{name}.crt")),
        key: dir.join(format!("leaf-{name}.key")),
    };
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&files.key, leaf_key.serialize_pem()).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_verifies_what_it_issued_names_included() {
    let dir = tempfile::tempdir().unwrap();

    let good = issue(dir.path(), &["127.0.0.1"]);
    let server = Tls::start(&good.chain, &good.key).await;
    assert_eq!(listed(&server.list(&good.ca).await), vec!["sn-a1", "sn-a2"]);
    // The CA of another server's certificate does not vouch for this one.
    let stranger = issue(dir.path(), &["127.0.0.2"]);
    let o = server.list(&stranger.ca).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(err(&o).contains("UnknownIssuer"), "{}", err(&o));
    server.stop().await;

    // Issued by the trusted CA, but for another name: the name check still applies.
    let elsewhere = issue(dir.path(), &["mayu.invalid"]);
    let server = Tls::start(&elsewhere.chain, &elsewhere.key).await;
    let o = server.list(&elsewhere.ca).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let e = err(&o);
    assert!(e.contains("not trusted"), "{e}");
    assert!(
        e.contains("not valid for name") && e.contains("127.0.0.1"),
        "{e}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_cert_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_self_signed(dir.path(), "api");
    let server = Tls::start(&cert, &key).await;
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let o = server.list(&empty).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        err(&o).contains("empty.pem") && err(&o).contains("no PEM certificate"),
        "{}",
        err(&o)
    );
    server.stop().await;
}
