//! HTTP/1.1 over hyper's connection API, on smol's sockets: a pool of
//! keep-alive connections per origin shared by the clients with the same
//! settings, TLS by rustls (ring provider, the webpki roots), no
//! redirects, a timeout on every read.
//!
//! Why hyper's `client::conn` and not a full client: it is runtime-agnostic
//! (smol-hyper adapts smol's I/O to it) and leaves pooling, timeouts and
//! redirects to us, which is where the recovery rules live anyway. The only
//! piece of tokio in the tree is the `sync` crate hyper itself needs.

use async_io::Timer;
use futures_lite::future;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::rustls::pki_types::ServerName;
use futures_rustls::rustls::{self, ClientConfig, RootCertStore};
use futures_rustls::TlsConnector;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Uri};
use mcp_recovery_client::drive::{Response, Shared};
use mcp_recovery_core::{FailureKind, HttpRequest, TransportFailure};
use smol::net::TcpStream;
use smol_hyper::rt::FuturesIo;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

type Sender = SendRequest<Full<Bytes>>;
type Conn = http1::Connection<FuturesIo<Box<dyn Io>>, Full<Bytes>>;
type Idle = Arc<Mutex<Pool>>;
type Hook = Arc<dyn Fn() + Send + Sync>;
/// The CAs a client trusts (DER), when not the webpki ones.
type Roots = Option<Vec<Vec<u8>>>;

/// Idle connections by origin, each with the moment it went idle, and the
/// clients to tell once they have been idle for `keep`.
///
/// Clients that trust the same roots and keep idle connections for the
/// same time share one pool (see [`shared_pool`]): an HTTP/1 connection
/// carries no session (the session is a header of each request), so a
/// process holding thousands of sessions to a few servers keeps a few
/// dozen connections, not one per session (~26 KiB each in hyper).
#[derive(Default)]
struct Pool {
    links: HashMap<Origin, Vec<(Link, Instant)>>,
    /// How long a connection stays idle before it is closed.
    keep: Duration,
    /// Whether a sweeper task is watching the pool.
    sweeping: bool,
    /// Clients with no connection out, until they have been for `keep`
    /// (then their idle hook runs) or take one again, in the order they
    /// went quiet, each with that moment: the sweeper looks at the front
    /// only, so a pass costs what is due, not every idle client.
    quiet: std::collections::VecDeque<(std::sync::Weak<User>, Instant)>,
}

/// Idle connections kept per origin; more are closed when they come back.
/// The pool is shared, so the cap is for all its clients together: above
/// the calls a process has in flight to one server at once (each such
/// connection closes after `keep` anyway), below what would let a burst
/// leave thousands open.
const MAX_IDLE: usize = 256;

/// One client's use of a pool: how many connections it has out, since
/// when it has had none, and what to call once that lasted the pool's
/// keep.
#[derive(Default)]
struct User {
    out: std::sync::atomic::AtomicUsize,
    state: Mutex<Quiet>,
}

#[derive(Default)]
struct Quiet {
    /// When the last connection out came back.
    since: Option<Instant>,
    /// Whether the pool's `quiet` list holds this client.
    listed: bool,
    hook: Option<Hook>,
}

/// A connection out for one request and its response, counted in its
/// client's [`User::out`] until dropped, unless it carries a listening
/// stream: that lives as long as the session, and the client is quiet
/// when its calls are.
struct Lent {
    user: Arc<User>,
    idle: Idle,
    counted: bool,
}

impl Lent {
    /// Counted up without the state lock (one less lock per call): a
    /// client told it went idle just as a call of its starts only gives
    /// back capacity its engine then allocates again.
    fn new(user: &Arc<User>, idle: &Idle, counted: bool) -> Self {
        if counted {
            user.out.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        Lent {
            user: user.clone(),
            idle: idle.clone(),
            counted,
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        // Counted down under the state lock, where the sweeper reads the
        // count with `since`: it never sees the client quiet with the
        // moment of an earlier spell.
        let mut quiet = self
            .user
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self
            .user
            .out
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            != 1
        {
            return;
        }
        // The last one back: the client is quiet from now on, and the
        // sweeper looks at it once `keep` has passed.
        let now = Instant::now();
        quiet.since = Some(now);
        if quiet.hook.is_none() || quiet.listed {
            return;
        }
        quiet.listed = true;
        drop(quiet);
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        pool.quiet.push_back((Arc::downgrade(&self.user), now));
        sweep_soon(&mut pool, &self.idle);
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    host: String,
    port: u16,
}

#[derive(Clone)]
pub(crate) struct Http {
    idle: Idle,
    /// This client's use of `idle`, which other clients may share.
    user: Arc<User>,
    tls: TlsConnector,
    connect_timeout: Duration,
}

/// One keep-alive connection.
///
/// hyper's `Connection` does the connection's I/O only while it is polled.
/// Its user polls it, on their own task, next to what they wait for: a
/// task per connection would put two cross-thread wake-ups (request in,
/// response out) on every exchange, measurably more CPU per call.
struct Link {
    sender: Sender,
    /// `None` once the connection ended.
    conn: Option<Conn>,
    /// The read timeout's timer, kept with the connection (see [`Lapse`]).
    lapse: Lapse,
}

/// Runs `f` while driving `conn`. A connection that ends first (the server
/// closed it) is dropped, which ends `f`'s wait on it with hyper's error.
async fn driving<T>(conn: &mut Option<Conn>, f: impl Future<Output = T>) -> T {
    let drive = async {
        if let Some(c) = conn.as_mut() {
            let _ = c.await;
        }
        *conn = None;
        future::pending::<T>().await
    };
    future::or(f, drive).await
}

/// A read timeout on one timer, moved only when it must be.
///
/// Arming an `async-io` timer wakes the reactor (a write to its eventfd,
/// another turn of `epoll_wait`, a `timerfd_settime`): per read that was
/// several system calls per MCP call. A deadline later than the armed one
/// leaves the timer alone and is checked when it fires, so a busy
/// connection re-arms about once per read timeout.
struct Lapse {
    timer: Timer,
    armed: Option<Instant>,
}

impl Lapse {
    fn new() -> Self {
        Lapse {
            timer: Timer::never(),
            armed: None,
        }
    }

    /// Resolves at `deadline`.
    async fn until(&mut self, deadline: Instant) {
        loop {
            match self.armed {
                Some(at) if at <= deadline => {}
                _ => {
                    self.timer.set_at(deadline);
                    self.armed = Some(deadline);
                }
            }
            (&mut self.timer).await;
            // Fired: for this deadline, or for an earlier one (re-armed).
            if self.armed.take().is_some_and(|at| at >= deadline) {
                return;
            }
        }
    }
}

/// A response whose body is read chunk by chunk; its connection goes back
/// to the pool only once the body was read to its end.
pub(crate) struct Body {
    /// The chunk last read, lent out by `chunk`.
    current: Bytes,
    body: Incoming,
    origin: Origin,
    /// `None` once back in the pool.
    link: Option<Link>,
    /// Dropped after `link`: the client is quiet once its last body went.
    lent: Lent,
}

impl Body {
    /// The next chunk, `Ok(None)` at the end, or a failure (after send: the
    /// server may have acted on the request).
    pub async fn chunk(
        &mut self,
        read_timeout: Duration,
    ) -> Result<Option<&[u8]>, TransportFailure> {
        let deadline = after(read_timeout);
        loop {
            let Body { body, link, .. } = self;
            let Some(Link { conn, lapse, .. }) = link.as_mut() else {
                return Ok(None);
            };
            let frame = driving(
                conn,
                future::or(async { Some(body.frame().await) }, async {
                    lapse.until(deadline).await;
                    None
                }),
            )
            .await;
            match frame {
                None => {
                    return Err(TransportFailure::after_send(
                        FailureKind::Timeout,
                        "read timed out",
                    ))
                }
                Some(None) => {
                    self.pool();
                    return Ok(None);
                }
                Some(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.current = data;
                        return Ok(Some(&self.current));
                    }
                    // Trailers: nothing for us.
                }
                Some(Some(Err(e))) => {
                    return Err(TransportFailure::after_send(
                        FailureKind::Reset,
                        e.to_string(),
                    ))
                }
            }
        }
    }

    /// The body was read to its end: its connection can carry another
    /// request.
    fn pool(&mut self) {
        if let Some(link) = self.link.take() {
            put(&self.lent.idle, &self.origin, link);
        }
    }
}

/// Puts `link` in the pool, unless it ended or the pool is full. A pool
/// with connections has a sweeper task closing them once idle past its
/// `keep`: an idle client holds no connection (a socket, hyper's buffers,
/// ~26 KiB), and none the server has long closed.
fn put(idle: &Idle, origin: &Origin, link: Link) {
    if link.conn.is_none() {
        return;
    }
    let mut pool = idle.lock().unwrap_or_else(PoisonError::into_inner);
    let list = pool.links.entry(origin.clone()).or_default();
    if list.len() < MAX_IDLE {
        list.push((link, Instant::now()));
        sweep_soon(&mut pool, idle);
    }
    // A connection over the cap closes here, after the lock.
    drop(pool);
}

/// Starts the pool's sweeper unless it runs.
fn sweep_soon(pool: &mut Pool, idle: &Idle) {
    if !pool.sweeping {
        pool.sweeping = true;
        smol::spawn(sweep(Arc::downgrade(idle), pool.keep)).detach();
    }
}

/// Closes the pool's connections idle for `keep` or more and tells the
/// clients quiet that long, waking when the next one is due, until there
/// is nothing left to watch (or every client is gone).
async fn sweep(idle: std::sync::Weak<Mutex<Pool>>, keep: Duration) {
    let mut wake = keep;
    loop {
        Timer::after(wake).await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        let mut pool = idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let due = |since: Instant| now.saturating_duration_since(since) >= keep;
        let mut next: Option<Instant> = None;
        let mut soonest = |since: Instant| next = Some(next.map_or(since, |n| n.min(since)));
        // Closed as they drop, after the lock is released.
        let mut closing = Vec::new();
        for list in pool.links.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(_, since)| due(*since));
            closing.extend(old);
            *list = fresh;
            list.iter().for_each(|(_, since)| soonest(*since));
        }
        pool.links.retain(|_, list| !list.is_empty());
        let mut hooks = Vec::new();
        // Went quiet again since it was listed: back in line, at the
        // moment it did (at most a keep late, behind later ones).
        let mut again = Vec::new();
        while pool.quiet.front().is_some_and(|(_, at)| due(*at)) {
            let Some((weak, _)) = pool.quiet.pop_front() else {
                break;
            };
            let Some(user) = weak.upgrade() else {
                continue;
            };
            let mut quiet = user.state.lock().unwrap_or_else(PoisonError::into_inner);
            let busy = user.out.load(std::sync::atomic::Ordering::Acquire) > 0;
            match quiet.since {
                Some(since) if !busy && !due(since) => {
                    again.push((weak, since));
                    continue;
                }
                Some(_) if !busy => hooks.extend(quiet.hook.clone()),
                // Busy: listed again when its last connection comes back.
                _ => {}
            }
            quiet.listed = false;
        }
        pool.quiet.extend(again);
        if let Some((_, at)) = pool.quiet.front() {
            soonest(*at);
        }
        match next {
            Some(n) => {
                // A keep too large to add never comes due.
                wake = n
                    .checked_add(keep)
                    .map_or(Duration::MAX, |due| due.saturating_duration_since(now))
                    .max(Duration::from_millis(10));
            }
            None => {
                // Nothing left: the tables' memory goes too.
                pool.sweeping = false;
                pool.links = HashMap::new();
                pool.quiet = Default::default();
            }
        }
        // Closed and told outside the lock.
        drop(pool);
        drop(closing);
        for hook in hooks {
            hook();
        }
        if next.is_none() {
            return;
        }
    }
}

/// The pool of the clients that trust the same roots and keep idle
/// connections for `keep`: one per process for each pair in use, gone
/// with its last client. Only clients with the same roots share: a pooled
/// connection was verified against the roots of whoever opened it.
fn shared_pool(keep: Duration, roots: Option<&[Vec<u8>]>) -> Idle {
    static POOLS: Shared<(Duration, Roots), Mutex<Pool>> = Shared::new();
    POOLS.get_or((keep, roots.map(<[Vec<u8>]>::to_vec)), || {
        Arc::new(Mutex::new(Pool {
            keep,
            ..Pool::default()
        }))
    })
}

/// One TLS configuration (roots, provider) for every client of the
/// process that trusts the same roots (the webpki ones, or the same
/// private CAs): a root store is tens of KiB, too much to copy per client
/// when a process holds thousands, and TLS sessions cached in it resume
/// for all of them.
fn shared_tls(roots: Option<&[Vec<u8>]>) -> TlsConnector {
    static TLS: Shared<Roots, ClientConfig> = Shared::new();
    let config = TLS.get_or(roots.map(<[Vec<u8>]>::to_vec), || {
        let store = match roots {
            None => RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(roots) => {
                let mut store = RootCertStore::empty();
                for der in roots {
                    // A certificate rustls cannot read trusts nothing.
                    let _ = store.add(rustls::pki_types::CertificateDer::from(der.clone()));
                }
                store
            }
        };
        // The provider is set explicitly: no process-wide default is
        // assumed.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(store).with_no_client_auth())
            .expect("ring supports the default protocol versions");
        Arc::new(config)
    });
    TlsConnector::from(config)
}

impl Http {
    /// `roots`: the only CAs to trust (DER), instead of the webpki ones.
    pub fn new(connect_timeout: Duration, pool_idle: Duration, roots: Option<&[Vec<u8>]>) -> Self {
        Http {
            idle: shared_pool(pool_idle, roots),
            user: Arc::default(),
            tls: shared_tls(roots),
            connect_timeout,
        }
    }

    /// Sends `request` and waits (at most `read_timeout`) for the head.
    pub async fn send(
        &self,
        request: &HttpRequest,
        read_timeout: Duration,
    ) -> Result<Response<Body>, TransportFailure> {
        let uri: Uri = request
            .url
            .parse()
            .map_err(|_| TransportFailure::not_sent(FailureKind::Other, "bad URL"))?;
        let origin = Origin {
            tls: uri.scheme_str() == Some("https"),
            host: uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned(),
            port: uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                }),
        };
        let mut req = Some(build(request, &uri)?);
        let deadline = after(read_timeout);
        let lent = Lent::new(
            &self.user,
            &self.idle,
            request.method != mcp_recovery_core::Method::Get,
        );
        // A pooled connection the server closed meanwhile gives the request
        // back unsent: then, and only then, try the next one.
        loop {
            let (mut link, pooled) = match self.pooled(&origin) {
                Some(l) => (l, true),
                None => (self.connect(&origin).await?, false),
            };
            let Link {
                sender,
                conn,
                lapse,
            } = &mut link;
            if pooled {
                // Resolves at once on a live idle connection, with an error
                // on one the server closed.
                let ready = driving(
                    conn,
                    future::or(async { sender.ready().await.is_ok() }, async {
                        lapse.until(deadline).await;
                        false
                    }),
                );
                if !ready.await {
                    continue;
                }
            }
            let Some(r) = req.take() else {
                return Err(TransportFailure::not_sent(
                    FailureKind::Other,
                    "request lost",
                ));
            };
            let sent = driving(
                conn,
                future::or(async { Some(sender.try_send_request(r).await) }, async {
                    lapse.until(deadline).await;
                    None
                }),
            )
            .await;
            match sent {
                None => {
                    return Err(TransportFailure::after_send(
                        FailureKind::Timeout,
                        "no response head in time",
                    ))
                }
                Some(Ok(response)) => {
                    let (head, body) = response.into_parts();
                    return Ok(Response {
                        status: head.status.as_u16(),
                        headers: head.headers,
                        body: Body {
                            current: Bytes::new(),
                            body,
                            origin,
                            link: Some(link),
                            lent,
                        },
                    });
                }
                Some(Err(mut e)) => match e.take_message() {
                    Some(r) if pooled => req = Some(r),
                    Some(_) => {
                        return Err(TransportFailure::not_sent(
                            FailureKind::Connect,
                            e.into_error().to_string(),
                        ))
                    }
                    None => {
                        let err = e.into_error();
                        let kind = if err.is_timeout() {
                            FailureKind::Timeout
                        } else {
                            FailureKind::Reset
                        };
                        return Err(TransportFailure::after_send(kind, err.to_string()));
                    }
                },
            }
        }
    }

    /// Calls `hook` whenever this client has had no connection out for
    /// the pool's keep.
    pub fn on_idle(&self, hook: Hook) {
        self.user
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hook = Some(hook);
    }

    /// An idle connection to `origin`, the most recently used first, if
    /// it has not been idle too long.
    fn pooled(&self, origin: &Origin) -> Option<Link> {
        let mut pool = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = pool.keep;
        let (link, since) = pool.links.get_mut(origin)?.pop()?;
        (since.elapsed() < keep).then_some(link)
    }

    async fn connect(&self, origin: &Origin) -> Result<Link, TransportFailure> {
        let failed = |e: &dyn std::fmt::Display| {
            TransportFailure::not_sent(FailureKind::Connect, e.to_string())
        };
        let connect = async {
            let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
                .await
                .map_err(|e| failed(&e))?;
            // Small JSON-RPC requests: do not wait to coalesce them.
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = if origin.tls {
                let name = ServerName::try_from(origin.host.clone()).map_err(|e| failed(&e))?;
                Box::new(self.tls.connect(name, tcp).await.map_err(|e| failed(&e))?)
            } else {
                Box::new(tcp)
            };
            let (sender, conn) = http1::handshake(FuturesIo::new(io))
                .await
                .map_err(|e| failed(&e))?;
            Ok(Link {
                sender,
                conn: Some(conn),
                lapse: Lapse::new(),
            })
        };
        future::or(connect, async {
            Timer::after(self.connect_timeout).await;
            Err(TransportFailure::not_sent(
                FailureKind::Connect,
                "connect timed out",
            ))
        })
        .await
    }
}

/// `d` from now, saturating (a read timeout of "forever" stays far away).
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86400)))
        .unwrap_or(now)
}

fn build(request: &HttpRequest, uri: &Uri) -> Result<Request<Full<Bytes>>, TransportFailure> {
    let mut b = Request::builder()
        .method(request.method.as_str())
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()));
    if let Some(authority) = uri.authority() {
        // `Host` is host and port only: userinfo in the URL
        // (`user:pass@`) is a credential, never a header value.
        let host = authority.as_str().rsplit('@').next().unwrap_or("");
        b = b.header("host", host);
    }
    b = b.header(
        "user-agent",
        concat!("mcp-recovery/", env!("CARGO_PKG_VERSION")),
    );
    for (name, value) in request.headers() {
        b = b.header(name, value);
    }
    // The error text of `http` never repeats header values, so a token
    // cannot leak through it.
    b.body(Full::new(Bytes::copy_from_slice(&request.body)))
        .map_err(|e| TransportFailure::not_sent(FailureKind::Other, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_recovery_core::Method;

    #[test]
    fn the_host_header_never_carries_userinfo() {
        let url = "http://user:s3cret@127.0.0.1:9/mcp?x=1";
        let request = HttpRequest {
            method: Method::Post,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let uri: Uri = url.parse().unwrap();
        let built = build(&request, &uri).unwrap();
        assert_eq!(built.headers()["host"], "127.0.0.1:9");
        assert_eq!(built.uri(), "/mcp?x=1");
        assert!(!format!("{:?}", built.headers()).contains("s3cret"));
    }
}

/// The pool shared by clients, against a minimal keep-alive HTTP/1.1
/// responder on loopback (the MCP behaviour over it is tested against
/// real servers in `tests/`).
#[cfg(test)]
mod shared {
    use super::*;
    use mcp_recovery_core::Method;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers every request `200 ok` on a kept connection; counts the
    /// connections accepted.
    fn responder() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                            return;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    fn post(port: u16) -> HttpRequest {
        HttpRequest {
            method: Method::Post,
            url: format!("http://127.0.0.1:{port}/mcp").into(),
            headers: Vec::new(),
            body: b"{}".to_vec(),
        }
    }

    /// Sends one request and reads its body to the end.
    async fn exchange(http: &Http, port: u16) {
        let mut response = http
            .send(&post(port), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        while response
            .body
            .chunk(Duration::from_secs(10))
            .await
            .unwrap()
            .is_some()
        {}
    }

    fn counter(http: &Http) -> Arc<AtomicUsize> {
        let told = Arc::new(AtomicUsize::new(0));
        let t = told.clone();
        http.on_idle(Arc::new(move || {
            t.fetch_add(1, Ordering::SeqCst);
        }));
        told
    }

    /// Waits (at most 10 s) for `f`.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "{what}");
            Timer::after(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn clients_with_the_same_roots_share_idle_connections() {
        let (port, accepted) = responder();
        // A keep of its own: no other test's clients in this pool.
        let keep = Duration::from_millis(60_001);
        let clients: Vec<Http> = (0..20)
            .map(|_| Http::new(Duration::from_secs(5), keep, None))
            .collect();
        smol::block_on(async {
            for c in &clients {
                exchange(c, port).await;
            }
        });
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection for all");
        // Other roots: another pool, shared by the clients with those.
        let roots = [b"not a certificate".to_vec()];
        let own: Vec<Http> = (0..3)
            .map(|_| Http::new(Duration::from_secs(5), keep, Some(&roots)))
            .collect();
        smol::block_on(async {
            for c in &own {
                exchange(c, port).await;
            }
        });
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn each_client_is_told_once_it_has_been_quiet_for_the_keep() {
        let (port, _) = responder();
        let keep = Duration::from_millis(50);
        let (quiet, busy) = (
            Http::new(Duration::from_secs(5), keep, None),
            Http::new(Duration::from_secs(5), keep, None),
        );
        let (told_quiet, told_busy) = (counter(&quiet), counter(&busy));
        smol::block_on(async {
            exchange(&busy, port).await;
            // `busy` holds a response it has not read: a connection out.
            let held = busy
                .send(&post(port), Duration::from_secs(10))
                .await
                .unwrap();
            exchange(&quiet, port).await;
            until("the quiet client told", || {
                told_quiet.load(Ordering::SeqCst) == 1
            })
            .await;
            assert_eq!(
                told_busy.load(Ordering::SeqCst),
                0,
                "a client with a connection out is not idle"
            );
            drop(held);
            until("the other told once its response went", || {
                told_busy.load(Ordering::SeqCst) == 1
            })
            .await;
            // Told once per quiet spell.
            Timer::after(keep * 3).await;
            assert_eq!(told_quiet.load(Ordering::SeqCst), 1);
            exchange(&quiet, port).await;
            until("told again after the next spell", || {
                told_quiet.load(Ordering::SeqCst) == 2
            })
            .await;
        });
    }
}
