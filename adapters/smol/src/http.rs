//! HTTP/1.1 over hyper's connection API, on smol's sockets: a small pool of
//! keep-alive connections per origin, TLS by rustls (ring provider, the
//! webpki roots), no redirects, a timeout on every read.
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
use mcp_recovery_client::drive::Response;
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

/// Idle connections by origin, each with the moment it went idle.
#[derive(Default)]
struct Pool {
    links: HashMap<Origin, Vec<(Link, Instant)>>,
    /// How long a connection stays idle before it is closed.
    keep: Duration,
    /// Whether a sweeper task is watching the pool.
    sweeping: bool,
    /// Called once the sweeper closed the last idle connection.
    on_idle: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Idle connections kept per origin; more are closed when they come back.
const MAX_IDLE: usize = 32;

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
    idle: Idle,
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
            put(&self.idle, &self.origin, link);
        }
    }
}

/// Puts `link` in the pool, unless it ended or the pool is full. A pool
/// with connections has a sweeper task closing them once idle past its
/// `keep`: an idle client holds no connection (a socket, hyper's buffers,
/// ~29 KiB), and none the server has long closed.
fn put(idle: &Idle, origin: &Origin, link: Link) {
    if link.conn.is_none() {
        return;
    }
    let mut pool = idle.lock().unwrap_or_else(PoisonError::into_inner);
    let list = pool.links.entry(origin.clone()).or_default();
    if list.len() < MAX_IDLE {
        list.push((link, Instant::now()));
    }
    if !pool.sweeping {
        pool.sweeping = true;
        let weak = Arc::downgrade(idle);
        let keep = pool.keep;
        smol::spawn(sweep(weak, keep)).detach();
    }
}

/// Closes the pool's connections idle for `keep` or more, waking when the
/// oldest one is due, until the pool is empty (or its client gone).
async fn sweep(idle: std::sync::Weak<Mutex<Pool>>, keep: Duration) {
    let mut wake = keep;
    loop {
        Timer::after(wake).await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        let mut pool = idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut oldest: Option<Instant> = None;
        // Closed as they drop, after the lock is released.
        let mut closing = Vec::new();
        for list in pool.links.values_mut() {
            let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(_, since)| now.duration_since(*since) >= keep);
            closing.extend(old);
            *list = fresh;
            for (_, since) in list.iter() {
                oldest = Some(oldest.map_or(*since, |o| o.min(*since)));
            }
        }
        pool.links.retain(|_, list| !list.is_empty());
        match oldest {
            Some(o) => {
                wake = (o + keep)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(10));
                // Closed outside the lock.
                drop(pool);
                drop(closing);
            }
            None => {
                // Nothing left: the table's memory goes too, and the
                // client hears it has gone idle.
                pool.sweeping = false;
                pool.links = HashMap::new();
                let hook = pool.on_idle.clone();
                drop(pool);
                drop(closing);
                if let Some(hook) = hook {
                    hook();
                }
                return;
            }
        }
    }
}

/// One TLS configuration (roots, provider) for every client of the
/// process: it is the same for all of them, and a root store is tens of
/// KiB, too much to copy per client when a process holds thousands.
fn shared_tls() -> TlsConnector {
    static TLS: std::sync::OnceLock<TlsConnector> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        tls_with(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ))
    })
    .clone()
}

fn tls_with(roots: RootCertStore) -> TlsConnector {
    // The provider is set explicitly: no process-wide default is assumed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .expect("ring supports the default protocol versions");
    TlsConnector::from(Arc::new(config))
}

impl Http {
    /// `roots`: the only CAs to trust (DER), instead of the webpki ones.
    pub fn new(connect_timeout: Duration, pool_idle: Duration, roots: Option<&[Vec<u8>]>) -> Self {
        let tls = match roots {
            Some(roots) => {
                let mut store = RootCertStore::empty();
                for der in roots {
                    // A certificate rustls cannot read trusts nothing.
                    let _ = store.add(rustls::pki_types::CertificateDer::from(der.clone()));
                }
                tls_with(store)
            }
            None => shared_tls(),
        };
        let pool = Pool {
            keep: pool_idle,
            ..Pool::default()
        };
        Http {
            idle: Arc::new(Mutex::new(pool)),
            tls,
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
                            idle: self.idle.clone(),
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

    /// Calls `hook` whenever the last idle connection has been closed.
    pub fn on_idle(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .on_idle = Some(hook);
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
