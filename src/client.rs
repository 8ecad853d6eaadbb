//! A typed client for the operator API, used by `mayuctl` (cargo feature `client`): one method
//! per route answering with the types the server sends (the engine's own, or
//! [`crate::api::responses`]), requests with the bearer token, errors a person can act on
//! (server unreachable, token missing or too weak, unknown machine with close ids), a reader
//! for the Server-Sent Events stream (`eventsource-stream`), and `--ca-cert` trust: the
//! server's own certificate pinned, or a CA verified as usual.

use std::marker::PhantomData;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::machines::MachinePatch;
use crate::api::responses::{CreatedToken, ErrorBody, Profiles, Retired, Revoked, TokenInfo};
use crate::inventory::HistoryEntry;
use crate::lease::{Lease, ServiceState};
use crate::power::PowerStatus;
use crate::tokens::Scope;

/// Everything but unreserved characters is escaped in a path segment (MACs keep working, and
/// an id can never add a path segment of its own).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How to pass a token, repeated in every 401 message.
pub const TOKEN_HINT: &str = "pass a token with --token, the MAYU_TOKEN environment variable or \
     --token-file PATH (at first start the server writes an admin token to `<tokens file>.admin`, \
     by default tokens.json.admin beside config.yaml)";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the mayu API at {url}: {reason}; is the server running there? (set --server or MAYU_SERVER)")]
    Unreachable { url: String, reason: String },
    #[error(
        "the mayu API at {url} refused the request without a valid token ({detail}); {TOKEN_HINT}"
    )]
    Unauthorized { url: String, detail: String },
    #[error("not allowed: {detail}")]
    Forbidden { detail: String },
    #[error("unknown machine: {detail}{hint}")]
    UnknownMachine {
        detail: String,
        suggestions: Vec<String>,
        hint: String,
    },
    #[error("{detail} ({status} {error})")]
    Api {
        status: u16,
        error: String,
        detail: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("`{0}` is not a server URL; use e.g. http://127.0.0.1:4080")]
    BadServer(String),
    #[error("the TLS certificate of {url} is not trusted ({reason}); pass the server's certificate or its CA with --ca-cert PATH or MAYU_CA_CERT")]
    Tls { url: String, reason: String },
    #[error("the TLS certificate of {url} is not trusted ({reason}): it is not the certificate in {} and no certificate there issued it for this address; pass the server's own certificate or its CA with --ca-cert", path.display())]
    TlsNotPinned {
        url: String,
        path: PathBuf,
        reason: String,
    },
    #[error("CA certificate {path}: {reason}")]
    CaCert { path: PathBuf, reason: String },
}

/// One message of an event stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

/// What a person reads of an event: when it happened and its one-line summary (the API adds
/// `summary` to every event; a notice that events were missed has no `at`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EventLine {
    pub at: Option<String>,
    pub summary: String,
}

impl SseMessage {
    /// The event's time and summary; empty when the data is not an event.
    pub fn line(&self) -> EventLine {
        serde_json::from_str(&self.data).unwrap_or_default()
    }
}

/// A machine as the API shows it: the engine's record (reached through `Deref`) and what the
/// server adds to it, its power as last checked (absent without power control, without a BMC,
/// or before the first check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    #[serde(flatten)]
    pub machine: crate::machine::Machine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerStatus>,
}

impl Deref for Machine {
    type Target = crate::machine::Machine;

    fn deref(&self) -> &crate::machine::Machine {
        &self.machine
    }
}

/// Which machines [`Client::machines`] lists; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct MachineFilter {
    pub state: Option<String>,
    /// `-` for machines in no profile.
    pub profile: Option<String>,
    /// free text over ids, MACs, names, addresses and notes.
    pub search: Option<String>,
    /// only machines stalled in a boot phase.
    pub stalled: bool,
}

impl MachineFilter {
    fn query(&self) -> String {
        let stalled = self.stalled.then(|| "true".to_string());
        let parts: Vec<String> = [
            ("state", &self.state),
            ("profile", &self.profile),
            ("q", &self.search),
            ("stalled", &stalled),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", Client::segment(v))))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// A read of the API whose answer is a `T`: [`Call::send`] decodes it, [`Call::raw`] keeps the
/// JSON as the server sent it (for `--json`, so nothing the types leave out goes missing).
#[must_use = "a call does nothing until it is sent"]
pub struct Call<'c, T> {
    client: &'c Client,
    path: String,
    answer: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Call<'_, T> {
    pub async fn send(self) -> Result<T, ClientError> {
        self.client.json(Method::GET, &self.path, None::<&()>).await
    }

    pub async fn raw(self) -> Result<Value, ClientError> {
        self.client.json(Method::GET, &self.path, None::<&()>).await
    }
}

pub struct Client {
    base: String,
    token: Option<String>,
    /// the `--ca-cert` file, named in certificate errors.
    ca_cert: Option<PathBuf>,
    http: reqwest::Client,
}

fn reason(e: &reqwest::Error) -> String {
    // reqwest's top-level message is generic; the innermost cause says what happened.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// Trust for `--ca-cert FILE`. A server presenting exactly one of the file's certificates (the
/// same DER bytes) is trusted by pinning: that is how a self-signed certificate is used, even
/// one that says `CA:TRUE` as `openssl req -x509` makes by default, and whatever name it was
/// made for. Any other certificate must chain to the file's certificates as roots under the
/// usual webpki rules, the server's name included. The handshake signatures are checked either
/// way, so only the holder of the pinned certificate's key gets through.
#[derive(Debug)]
struct PinnedOrIssued {
    pinned: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// `None` when no certificate in the file can be a trust anchor: then only pinning trusts.
    issued: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedOrIssued {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        match &self.issued {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::CertificateError::UnknownIssuer.into()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS client configuration for `--ca-cert`: the file's PEM certificates, pinned or as
/// roots ([`PinnedOrIssued`]), with the ring provider (named, never the process default).
fn ca_tls(path: &Path) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let ca = |reason: String| ClientError::CaCert {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
    let pinned: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ca(e.to_string()))?;
    if pinned.is_empty() {
        return Err(ca("no PEM certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(pinned.iter().cloned());
    let issued = if roots.is_empty() {
        None
    } else {
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| ca(e.to_string()))?;
        Some(v)
    };
    let verifier = PinnedOrIssued {
        pinned,
        issued,
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest asks for itself when it builds the configuration (HTTP/1.1 only).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Client {
    /// `ca_cert` is a PEM file for an API served over TLS: the server's own (self-signed)
    /// certificate, trusted by pinning, or the CA that issued it. With it, only that file is
    /// trusted, not the public roots.
    pub fn new(
        server: &str,
        token: Option<String>,
        ca_cert: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() < 10 {
            return Err(ClientError::BadServer(server.to_string()));
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(path) = ca_cert {
            builder = builder.use_preconfigured_tls(ca_tls(path)?);
        }
        let http = builder.build().map_err(|e| ClientError::Protocol {
            url: base.clone(),
            reason: reason(&e),
        })?;
        Ok(Client {
            base,
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            ca_cert: ca_cert.map(Path::to_path_buf),
            http,
        })
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    /// Escapes one path segment (a machine id, MAC or template name).
    fn segment(s: &str) -> String {
        utf8_percent_encode(s, SEGMENT).to_string()
    }

    fn request(&self, method: Method, path: &str) -> (String, reqwest::RequestBuilder) {
        let url = format!("{}{path}", self.base);
        let mut rb = self.http.request(method, &url);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        (url, rb)
    }

    async fn send(
        &self,
        url: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = rb.send().await.map_err(|e| {
            let reason = reason(&e);
            // A certificate the client does not trust is not an unreachable server.
            if reason.to_lowercase().contains("certificate") {
                match &self.ca_cert {
                    Some(path) => ClientError::TlsNotPinned {
                        url: url.to_string(),
                        path: path.clone(),
                        reason,
                    },
                    None => ClientError::Tls {
                        url: url.to_string(),
                        reason,
                    },
                }
            } else {
                ClientError::Unreachable {
                    url: url.to_string(),
                    reason,
                }
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        // A body that is not the API's error (a proxy's page) still gets the status's words.
        let body: ErrorBody = resp.json().await.unwrap_or_default();
        let ErrorBody {
            error,
            detail,
            suggestions,
        } = body;
        let detail = if detail.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            detail
        };
        Err(match status {
            StatusCode::UNAUTHORIZED => ClientError::Unauthorized {
                url: self.base.clone(),
                detail,
            },
            StatusCode::FORBIDDEN => ClientError::Forbidden { detail },
            StatusCode::NOT_FOUND if error == "unknown_machine" => {
                // The server's own hint names the HTTP route; point at the command instead.
                let (detail, hint) = if suggestions.is_empty() {
                    let reason = detail.split("; ").next().unwrap_or_default().to_string();
                    (reason, "; `mayuctl list` shows every machine".to_string())
                } else {
                    (detail, String::new())
                };
                ClientError::UnknownMachine {
                    detail,
                    suggestions,
                    hint,
                }
            }
            _ => ClientError::Api {
                status: status.as_u16(),
                error,
                detail,
            },
        })
    }

    async fn json<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (url, mut rb) = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self.send(&url, rb).await?;
        resp.json().await.map_err(|e| ClientError::Protocol {
            url,
            reason: reason(&e),
        })
    }

    fn call<T>(&self, path: String) -> Call<'_, T> {
        Call {
            client: self,
            path,
            answer: PhantomData,
        }
    }

    fn machine_path(id: &str) -> String {
        format!("/api/v1/machines/{}", Client::segment(id))
    }

    pub fn machines(&self, filter: &MachineFilter) -> Call<'_, Vec<Machine>> {
        self.call(format!("/api/v1/machines{}", filter.query()))
    }

    /// One machine by id or MAC.
    pub fn machine(&self, id: &str) -> Call<'_, Machine> {
        self.call(Client::machine_path(id))
    }

    /// A machine's boot timeline (or an unregistered MAC's), oldest boot first.
    pub fn timeline(&self, key: &str) -> Call<'_, crate::api::timeline::TimelineAnswer> {
        self.call(format!("{}/timeline", Client::machine_path(key)))
    }

    /// MACs seen by DHCP that are no machine yet, most recently heard first.
    pub fn unregistered(&self) -> Call<'_, Vec<crate::engine::Unregistered>> {
        self.call("/api/v1/unregistered".into())
    }

    /// A machine's audit trail, newest first.
    pub fn history(&self, id: &str) -> Call<'_, Vec<HistoryEntry>> {
        self.call(format!("{}/history", Client::machine_path(id)))
    }

    pub fn profiles(&self) -> Call<'_, Profiles> {
        self.call("/api/v1/profiles".into())
    }

    pub fn leases(&self) -> Call<'_, Vec<Lease>> {
        self.call("/api/v1/leases".into())
    }

    /// DHCP clients dnsmasq ignored as unknown, most recently seen first.
    pub fn ignored(&self) -> Call<'_, Vec<crate::engine::IgnoredClient>> {
        self.call("/api/v1/ignored".into())
    }

    /// Enrols a MAC as a machine; the answer is the new machine.
    pub async fn enrol(&self, e: &crate::engine::Enrolment) -> Result<Machine, ClientError> {
        self.json(Method::POST, "/api/v1/machines", Some(e)).await
    }

    /// `GET /api/v1/health`: `{status, version}`.
    pub fn health(&self) -> Call<'_, Value> {
        self.call("/api/v1/health".into())
    }

    pub fn services(&self) -> Call<'_, Vec<ServiceState>> {
        self.call("/api/v1/services".into())
    }

    pub fn tokens(&self) -> Call<'_, Vec<TokenInfo>> {
        self.call("/api/v1/tokens".into())
    }

    /// Changes a machine; the answer is the machine afterwards.
    pub async fn update(&self, id: &str, patch: &MachinePatch) -> Result<Machine, ClientError> {
        self.json(Method::PATCH, &Client::machine_path(id), Some(patch))
            .await
    }

    pub async fn reinstall(&self, id: &str) -> Result<Machine, ClientError> {
        let path = format!("{}/reinstall", Client::machine_path(id));
        self.json(Method::POST, &path, None::<&()>).await
    }

    /// `POST /machines/{id}/power` with `action` (on, off, cycle, status, reinstall): what the
    /// BMC then reported. A BMC that fails or does not answer is the server's 502/504 error.
    pub async fn power(
        &self,
        id: &str,
        action: &str,
    ) -> Result<crate::power::PowerOutcome, ClientError> {
        let path = format!("{}/power", Client::machine_path(id));
        let body = serde_json::json!({ "action": action });
        self.json(Method::POST, &path, Some(&body)).await
    }

    pub async fn boot_complete(&self, id: &str) -> Result<Machine, ClientError> {
        let path = format!("{}/boot-complete", Client::machine_path(id));
        self.json(Method::POST, &path, None::<&()>).await
    }

    pub async fn retire(&self, id: &str) -> Result<Retired, ClientError> {
        self.json(Method::DELETE, &Client::machine_path(id), None::<&()>)
            .await
    }

    /// Adds a token; the answer holds its secret, shown only this once.
    pub async fn add_token(&self, name: &str, scope: Scope) -> Result<CreatedToken, ClientError> {
        #[derive(Serialize)]
        struct NewToken<'a> {
            name: &'a str,
            scope: Scope,
        }
        let body = NewToken { name, scope };
        self.json(Method::POST, "/api/v1/tokens", Some(&body)).await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<Revoked, ClientError> {
        let path = format!("/api/v1/tokens/{}", Client::segment(name));
        self.json(Method::DELETE, &path, None::<&()>).await
    }

    /// A machine's rendered template (kind or name), as text.
    pub async fn render(&self, id: &str, template: &str) -> Result<String, ClientError> {
        let path = format!(
            "{}/render/{}",
            Client::machine_path(id),
            Client::segment(template)
        );
        let (url, rb) = self.request(Method::GET, &path);
        let resp = self.send(&url, rb).await?;
        resp.text().await.map_err(|e| ClientError::Protocol {
            url,
            reason: reason(&e),
        })
    }

    /// `GET /admin/mayu_config`: the server's configuration file as text.
    pub async fn config_text(&self) -> Result<String, ClientError> {
        let (url, rb) = self.request(Method::GET, "/admin/mayu_config");
        let resp = self.send(&url, rb).await?;
        resp.text().await.map_err(|e| ClientError::Protocol {
            url,
            reason: reason(&e),
        })
    }

    /// `PUT /admin/host/{serial}/{route}` with a Mayu-style JSON body, as Mayu's own client
    /// sends it (the server answers 202 with no body).
    pub async fn mayu_put(
        &self,
        serial: &str,
        route: &str,
        body: &Value,
    ) -> Result<(), ClientError> {
        let path = format!("/admin/host/{}/{route}", Client::segment(serial));
        let (url, rb) = self.request(Method::PUT, &path);
        self.send(&url, rb.json(body)).await.map(drop)
    }

    /// Opens the event stream, resuming after event `after` when given.
    pub async fn events(&self, after: Option<u64>) -> Result<EventStream, ClientError> {
        let (url, mut rb) = self.request(Method::GET, "/api/v1/events");
        rb = rb.header("accept", "text/event-stream");
        if let Some(a) = after {
            rb = rb.header("last-event-id", a.to_string());
        }
        let resp = self.send(&url, rb).await?;
        Ok(EventStream {
            url,
            events: Box::pin(resp.bytes_stream().eventsource()),
        })
    }
}

type Events = Pin<
    Box<
        dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

/// Reads Server-Sent Events messages off a response body, each byte decoded once (a character
/// split between two reads arrives whole).
pub struct EventStream {
    url: String,
    events: Events,
}

impl From<eventsource_stream::Event> for SseMessage {
    fn from(e: eventsource_stream::Event) -> SseMessage {
        SseMessage {
            // The stream's last event id; a stream that has sent none has an empty one.
            id: e.id.parse().ok(),
            event: e.event,
            data: e.data,
        }
    }
}

/// Parses one SSE message block (the lines before a blank line). `None` for comment-only
/// blocks such as keep-alives.
pub fn parse_block(block: &str) -> Option<SseMessage> {
    let mut m = SseMessage::default();
    let mut data: Vec<&str> = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        let v = v.strip_prefix(' ').unwrap_or(v);
        match k {
            "id" => {
                m.id = v.parse().ok();
                any = true;
            }
            "event" => {
                m.event = v.to_string();
                any = true;
            }
            "data" => {
                data.push(v);
                any = true;
            }
            _ => {}
        }
    }
    m.data = data.join("\n");
    any.then_some(m)
}

impl EventStream {
    /// The next message, or `None` when the server closed the stream. Comments (keep-alives)
    /// and messages without data are skipped.
    pub async fn next(&mut self) -> Result<Option<SseMessage>, ClientError> {
        match self.events.next().await {
            None => Ok(None),
            Some(Ok(e)) => Ok(Some(e.into())),
            Some(Err(e)) => Err(ClientError::Protocol {
                url: self.url.clone(),
                reason: match e {
                    EventStreamError::Transport(e) => reason(&e),
                    other => other.to_string(),
                },
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test should stop at the first surprise
mod tests {
    use super::*;

    #[test]
    fn sse_blocks() {
        let m = parse_block("id: 7\nevent: leases\ndata: {\"a\":1}").unwrap();
        assert_eq!(m.id, Some(7));
        assert_eq!(m.event, "leases");
        assert_eq!(m.data, "{\"a\":1}");
        assert_eq!(parse_block(": keep-alive"), None);
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(
            Client::segment("52:54:00:aa:bb:cc"),
            "52%3A54%3A00%3Aaa%3Abb%3Acc"
        );
        assert_eq!(Client::segment("../x"), "..%2Fx");
    }
}
