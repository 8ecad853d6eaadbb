//! Serving HTTP/1.1 on the boot and API ports: one accept loop (plain or TLS) that bounds how
//! many connections are open at once, how long a client may take over its headers, its body,
//! or with nothing moving at all, and that shuts down gracefully; plus the open-file limit the
//! connection caps are derived from, and the connection counters `/metrics` shows.
//!
//! Without these bounds a client that opens a connection and sends nothing (or a header a byte
//! at a time) holds a task and a file descriptor forever, and enough of them on the
//! unauthenticated boot port leave no descriptors for the operator API.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use axum_server::accept::Accept as _;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpConfig;

/// Default time for a client to send a request's headers (or finish a TLS handshake). Hyper
/// starts the same clock when a keep-alive connection goes idle, so it is the idle limit too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time for a request body to arrive once the handler starts reading it.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a connection may move no byte either way before it is asked to close; after
/// as long again it is dropped (a client that stopped reading, a stalled body).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Hyper's per-connection read and write buffer ceiling: headers larger than this are refused,
/// and a client that stops reading holds at most this much of queued response.
const MAX_BUF: usize = 64 * 1024;
/// At a stop, how long a response in flight (a large initrd to a slow machine) may take to
/// finish before its connection is dropped: a stop is bounded whatever the clients do.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Most descriptors kept back from the boot port's share (at most half the limit) for the API
/// port, files being served, templates, git, logs and the dnsmasq child.
const RESERVE: u64 = 4096;
/// Upper end of the default boot cap: a machine needs one or two connections at a time, and
/// the cap also bounds the memory held by open connections.
const MAX_DEFAULT_BOOT: u64 = 16_384;
/// Pause after a failed accept (out of descriptors and the like) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The connection-limit warning is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Connections the kernel holds for a listener that is not accepting (at its cap); std's
/// default of 128 would make machines past that retry their SYNs for seconds.
const BACKLOG: u32 = 1024;

/// Binds a listener for [`serve`] with room in the accept backlog.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std does: a restarted server can bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Which listener a connection came in on (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Boot,
    Api,
}

impl Port {
    pub fn as_str(self) -> &'static str {
        match self {
            Port::Boot => "boot",
            Port::Api => "api",
        }
    }
}

/// The bounds one listener enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// connections open at once; over it, new ones wait in the kernel's accept backlog.
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    /// The boot port's limits: `http.max_boot_connections`, or the default derived from the
    /// open-file limit now in force.
    pub fn boot(http: &HttpConfig) -> Limits {
        let (boot, _) = default_caps(fd_limit());
        Limits {
            max_connections: http.max_boot_connections.map_or(boot, |n| n.get()),
            ..Limits::timeouts(http)
        }
    }

    /// The API port's limits: `http.max_api_connections` or the default.
    pub fn api(http: &HttpConfig) -> Limits {
        let (_, api) = default_caps(fd_limit());
        Limits {
            max_connections: http.max_api_connections.map_or(api, |n| n.get()),
            ..Limits::timeouts(http)
        }
    }

    fn timeouts(http: &HttpConfig) -> Limits {
        Limits {
            max_connections: 1,
            header_timeout: http.header_timeout,
            body_timeout: http.body_timeout,
            idle_timeout: http.idle_timeout,
        }
    }
}

impl Default for Limits {
    /// The API port's defaults, for callers without a config.
    fn default() -> Limits {
        Limits {
            max_connections: default_caps(fd_limit()).1,
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Default (boot, API) connection caps for an open-file limit. A boot connection may hold a
/// second descriptor for the file it streams, hence the halving; the API's cap comes out of
/// the reserve, so a full boot port never takes the API's descriptors.
pub fn default_caps(fd_limit: u64) -> (usize, usize) {
    let reserve = RESERVE.min(fd_limit / 2);
    let boot = ((fd_limit - reserve) / 2).clamp(8, MAX_DEFAULT_BOOT);
    let api = (reserve / 4).max(8);
    (
        usize::try_from(boot).unwrap_or(usize::MAX),
        usize::try_from(api).unwrap_or(usize::MAX),
    )
}

/// The soft open-file limit in force (`u64::MAX` when unlimited).
pub fn fd_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Raises the soft open-file limit to the hard limit, so the connection caps have room, and
/// returns (before, after).
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let r = getrlimit(Resource::Nofile);
    // None is RLIM_INFINITY.
    let before = r.current.unwrap_or(u64::MAX);
    let max = r.maximum.unwrap_or(u64::MAX);
    if before >= max {
        return Ok((before, before));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: r.maximum,
            maximum: r.maximum,
        },
    )?;
    Ok((before, max))
}

/// Connection counters for one listener.
#[derive(Debug, Default)]
struct ListenerStats {
    limit: AtomicU64,
    open: AtomicU64,
    accepted: AtomicU64,
    /// times the accept loop paused because the cap was reached.
    limit_reached: AtomicU64,
    /// closed for not sending a complete header (or TLS handshake) in time.
    header_timeouts: AtomicU64,
    /// dropped after moving no byte for twice the idle timeout.
    stalled: AtomicU64,
    /// closed by a handler (an event-stream client that fell behind).
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct StatsInner {
    boot: ListenerStats,
    api: ListenerStats,
    sse_subscribers: AtomicU64,
    sse_dropped: AtomicU64,
}

/// Connection and event-stream counters for both listeners; cheap to clone, clones share.
#[derive(Debug, Clone, Default)]
pub struct HttpStats(Arc<StatsInner>);

/// Counts one event-stream subscriber while it lives.
#[derive(Debug)]
pub struct SubscriberGuard(HttpStats);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        if self.0 .0.sse_subscribers.fetch_sub(1, Ordering::Relaxed) == 1 {
            give_back_memory();
        }
    }
}

/// When the last event-stream subscriber has gone, hand the memory their buffers used back to
/// the system: glibc keeps freed pages in its arenas otherwise, and RSS would stay at the peak
/// that slow clients caused (seen: 65 MiB kept after 300 clients left, 20 MiB after a trim).
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl HttpStats {
    fn of(&self, port: Port) -> &ListenerStats {
        match port {
            Port::Boot => &self.0.boot,
            Port::Api => &self.0.api,
        }
    }

    /// Connections open now on `port`.
    pub fn open(&self, port: Port) -> u64 {
        self.of(port).open.load(Ordering::Relaxed)
    }

    /// Event-stream subscribers connected now.
    pub fn sse_subscribers(&self) -> u64 {
        self.0.sse_subscribers.load(Ordering::Relaxed)
    }

    pub fn sse_subscriber(&self) -> SubscriberGuard {
        self.0.sse_subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard(self.clone())
    }

    /// Notes an event-stream subscriber dropped for falling behind.
    pub fn sse_dropped(&self) {
        self.0.sse_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The connection and event-stream series of `/metrics`, read from the atomics at scrape time.
impl Collector for HttpStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        type Pick = fn(&ListenerStats) -> &AtomicU64;
        // One row a series: a table reads better than rustfmt's four lines a row.
        #[rustfmt::skip]
        let series: [(&str, MetricType, &str, Pick); 7] = [
            ("mayu_http_connections_open", MetricType::Gauge, "Connections open now, by listener.", |s| &s.open),
            ("mayu_http_connection_limit", MetricType::Gauge, "Most connections a listener keeps open at once.", |s| &s.limit),
            ("mayu_http_connections_accepted_total", MetricType::Counter, "Connections accepted, by listener.", |s| &s.accepted),
            ("mayu_http_connection_limit_reached_total", MetricType::Counter, "Times a listener stopped accepting because its connection limit was reached.", |s| &s.limit_reached),
            ("mayu_http_header_timeouts_total", MetricType::Counter, "Connections closed for not sending request headers (or a TLS handshake) in time, idle keep-alive connections included.", |s| &s.header_timeouts),
            ("mayu_http_connections_stalled_total", MetricType::Counter, "Connections dropped after moving no byte for twice the idle timeout.", |s| &s.stalled),
            ("mayu_http_connections_dropped_total", MetricType::Counter, "Connections closed by the server, such as event-stream clients that fell behind.", |s| &s.dropped),
        ];
        for (name, kind, help, pick) in series {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for port in [Port::Api, Port::Boot] {
                let v = pick(self.of(port)).load(Ordering::Relaxed);
                let labels = [("listener", port.as_str())];
                crate::metrics::encode_sample(family.encode_family(&labels)?, v)?;
            }
        }
        let single: [(&str, MetricType, &str, u64); 2] = [
            (
                "mayu_sse_subscribers",
                MetricType::Gauge,
                "Clients connected to the event stream now.",
                self.sse_subscribers(),
            ),
            (
                "mayu_sse_dropped_total",
                MetricType::Counter,
                "Event-stream clients disconnected for falling behind.",
                self.0.sse_dropped.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in single {
            crate::metrics::encode_sample(encoder.encode_descriptor(name, help, None, kind)?, v)?;
        }
        Ok(())
    }
}

/// Given to every request as an extension: lets a handler end the connection it came in on
/// (an event stream whose client stopped reading cannot end its response any other way).
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    close: CancellationToken,
    finish: CancellationToken,
    ended: CancellationToken,
    idle_timeout: Duration,
}

impl ConnectionHandle {
    fn new(idle_timeout: Duration) -> ConnectionHandle {
        ConnectionHandle {
            close: CancellationToken::new(),
            finish: CancellationToken::new(),
            ended: CancellationToken::new(),
            idle_timeout,
        }
    }

    /// A response that may go quiet (an event stream) must send something more often than
    /// this, or its connection counts as stalled.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Closes the connection now, whatever it is doing.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Closes the connection once the response in progress has been sent, instead of keeping
    /// it open for another request.
    pub fn finish(&self) {
        self.finish.cancel();
    }

    /// Resolves once the connection has ended.
    pub async fn ended(&self) {
        self.ended.cancelled().await;
    }
}

/// Marks a connection ended however its task stops.
struct EndedGuard(CancellationToken);

impl Drop for EndedGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// How [`serve`] runs one listener.
#[derive(Clone)]
pub struct Serve {
    pub port: Port,
    pub limits: Limits,
    pub stats: HttpStats,
    /// serve HTTPS with this config (HTTP/1.1 only; see [`crate::api::tls::load`]).
    pub tls: Option<RustlsConfig>,
}

/// Serves `router` on `listener` with the bounds in `how` until `cancel` fires; then stops
/// accepting, asks every open connection to finish its request and close, and returns once
/// they have. Handlers see the peer as `ConnectInfo<SocketAddr>` and a [`ConnectionHandle`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    how: Serve,
    cancel: CancellationToken,
) -> io::Result<()> {
    let Serve {
        port,
        limits,
        stats,
        tls,
    } = how;
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    stats
        .of(port)
        .limit
        .store(u64::try_from(max).unwrap_or(u64::MAX), Ordering::Relaxed);
    // The handshake is bounded like a request's headers: a client that connects and says
    // nothing (or half a ClientHello) is closed and counted as a header timeout.
    let tls =
        tls.map(|config| RustlsAcceptor::new(config).handshake_timeout(limits.header_timeout));
    let conn = Arc::new(PerConnection {
        port,
        limits,
        stats,
        tls,
        service: TowerToHyperService::new(router),
        cancel: cancel.clone(),
    });
    let tracker = TaskTracker::new();
    let mut warned: Option<Instant> = None;
    loop {
        // A permit first: over the cap, connections wait in the kernel's backlog and cost this
        // process no descriptor.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                conn.stats
                    .of(port)
                    .limit_reached
                    .fetch_add(1, Ordering::Relaxed);
                if warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        listener = port.as_str(),
                        limit = max,
                        "connection limit reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: keep serving the connections we have,
                    // and try again shortly rather than spinning.
                    tracing::warn!(listener = port.as_str(), error = %e, "accept failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // Responses go out as soon as they are written: with Nagle's algorithm a streamed
        // body's last segment waits for the client's delayed ACK (~40 ms per response).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(listener = port.as_str(), error = %e, "cannot set TCP_NODELAY");
        }
        let conn = conn.clone();
        tracker.spawn(async move { conn.run(tcp, peer, permit).await });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// What every connection task of one listener shares.
struct PerConnection {
    port: Port,
    limits: Limits,
    stats: HttpStats,
    tls: Option<RustlsAcceptor>,
    service: TowerToHyperService<Router>,
    cancel: CancellationToken,
}

/// Decrements the open-connections gauge however the task ends.
struct OpenGuard<'a>(&'a AtomicU64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PerConnection {
    async fn run(&self, tcp: TcpStream, peer: SocketAddr, _permit: OwnedSemaphorePermit) {
        let stats = self.stats.of(self.port);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _open = OpenGuard(&stats.open);
        let activity = Activity::new();
        let io = Tracked {
            inner: tcp,
            activity: activity.clone(),
        };
        match &self.tls {
            None => self.http(io, peer, activity).await,
            Some(acceptor) => {
                let handshake = tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    r = acceptor.accept(io, ()) => r,
                };
                match handshake {
                    Ok((stream, ())) => self.http(stream, peer, activity).await,
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                }
            }
        }
    }

    /// Runs HTTP/1.1 on one connection until it ends, is closed by a handler, stalls, or the
    /// server shuts down.
    async fn http<I>(&self, io: I, peer: SocketAddr, activity: Activity)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let stats = self.stats.of(self.port);
        let handle = ConnectionHandle::new(self.limits.idle_timeout);
        let _ended = EndedGuard(handle.ended.clone());
        let inner = self.service.clone();
        let (body_timeout, h) = (self.limits.body_timeout, handle.clone());
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(|body| TimedBody::new(body, body_timeout));
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(h.clone());
            inner.call(req)
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_buf_size(MAX_BUF);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        let check = tokio::time::sleep(idle);
        tokio::pin!(check);
        let mut shutting_down = false;
        let mut finishing = false;
        let mut asked_to_close = false;
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    match r {
                        Err(e) if e.is_timeout() => {
                            stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                        Ok(()) => {}
                    }
                    return;
                }
                _ = handle.close.cancelled() => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "connection closed by its handler");
                    return;
                }
                _ = self.cancel.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                    grace.as_mut().reset(Instant::now() + STOP_GRACE);
                }
                _ = &mut grace, if shutting_down => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "connection dropped: the stop's grace ran out");
                    return;
                }
                _ = handle.finish.cancelled(), if !finishing => {
                    finishing = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = &mut check => {
                    let quiet = activity.quiet_for();
                    if quiet < idle {
                        asked_to_close = false;
                        check.as_mut().reset(Instant::now() + (idle - quiet));
                    } else if !asked_to_close {
                        // Closes it at once when between requests; otherwise after the
                        // response in progress, if that ever moves again.
                        asked_to_close = true;
                        conn.as_mut().graceful_shutdown();
                        check.as_mut().reset(Instant::now() + idle);
                    } else {
                        stats.stalled.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "connection dropped: nothing moved");
                        return;
                    }
                }
            }
        }
    }
}

/// When a connection last moved a byte, shared between its I/O wrapper and its task.
#[derive(Clone)]
struct Activity {
    since: Instant,
    /// milliseconds after `since`.
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            since: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// A socket that notes every byte read or written in its [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The reason a request body read fails when it arrives too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(Duration);

/// A request body that fails once `limit` has passed since the handler first waited for it,
/// so a client cannot hold a request open by sending its body a byte at a time.
struct TimedBody {
    inner: Incoming,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> TimedBody {
        TimedBody {
            inner,
            limit,
            deadline: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                // The timer is only made for bodies that make a handler wait.
                let limit = this.limit;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_leave_the_api_its_reserve() {
        // The usual 1024: 256 boot connections (up to 512 descriptors with open files), 128 for
        // the API, and the rest for everything else.
        assert_eq!(default_caps(1024), (256, 128));
        let (boot, api) = default_caps(1024);
        assert!(2 * boot + api < 1024);
        // A tiny limit still serves something.
        assert_eq!(default_caps(64), (16, 8));
        // A huge one is capped.
        assert_eq!(default_caps(1 << 20), (16_384, 1024));
        // The API's share grows with the limit: event-stream clients hold a connection each.
        assert_eq!(default_caps(20_000), (7952, 1024));
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let before = fd_limit();
        let (was, now) = raise_fd_limit().expect("rlimit");
        assert_eq!(was, before);
        assert!(now >= was);
        assert_eq!(fd_limit(), now);
    }

    #[test]
    fn stats_render_every_series_for_both_listeners() {
        let s = HttpStats::default();
        let g = s.sse_subscriber();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(s.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &registry).unwrap();
        assert!(out.contains("mayu_http_connections_open{listener=\"boot\"} 0\n"));
        assert!(out.contains("mayu_http_connection_limit{listener=\"api\"} 0\n"));
        assert!(out.contains("# TYPE mayu_http_header_timeouts_total counter\n"));
        assert!(out.contains("mayu_http_header_timeouts_total{listener=\"api\"} 0\n"));
        assert!(out.contains("mayu_sse_subscribers 1\n"));
        assert!(out.contains("mayu_sse_dropped_total 0\n"));
        drop(g);
        assert_eq!(s.sse_subscribers(), 0);
    }
}
