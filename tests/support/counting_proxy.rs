//! A loopback TCP proxy that counts the connections clients open through
//! it, and those still open, and can delay every byte by a fixed one-way
//! time in each direction, to stand for a network with that round trip:
//! TEST AND BENCH SUPPORT ONLY. Bytes pass through untouched (over TLS it
//! only sees ciphertext).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The proxy; stops accepting when dropped (connections already open run
/// until either side ends them).
pub struct CountingProxy {
    pub port: u16,
    seen: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    listener: TcpListener,
}

impl CountingProxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:backend`.
    pub fn to(backend: u16) -> CountingProxy {
        CountingProxy::with_delay(backend, Duration::ZERO)
    }

    /// The same, adding `one_way` to each direction (zero: a plain copy).
    pub fn with_delay(backend: u16, one_way: Duration) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let accept = listener.try_clone().expect("clone");
        let seen = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (count, live) = (seen.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in accept.incoming() {
                let Ok(client) = conn else { return };
                let opened = Instant::now();
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                    continue;
                };
                // Both sides without Nagle: a proxy must not hold back the
                // small writes (TLS records, SSE events) it was handed.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                live.fetch_add(1, Ordering::SeqCst);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // The TCP handshake between the client and this proxy
                // completes at once on loopback, where it would take a
                // round trip: the client's first bytes are held that round
                // trip longer (clients write right after connecting, so
                // they arrive when they would have).
                let first = (!one_way.is_zero()).then(|| opened + 2 * one_way);
                pipe(c2, s2, one_way, first, Some(live.clone()));
                pipe(server, client, one_way, None, None);
            }
        });
        CountingProxy {
            port,
            seen,
            open,
            listener,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    /// Connections the clients have not closed yet.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        // Wakes the accept loop, which then fails and ends.
        let _ = self.listener.set_nonblocking(true);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Delivers what `from` sends to `to`, in order, the end of stream
/// included, `one_way` after it was read (and not before
/// `not_before + one_way`); then `closed`, if given, counts one connection
/// less. A reader and a writer thread with a queue between them, so bytes
/// in flight overlap the way they do on a link with that latency instead
/// of each chunk waiting for the one before it.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    one_way: Duration,
    not_before: Option<Instant>,
    closed: Option<Arc<AtomicUsize>>,
) {
    if one_way.is_zero() {
        // A plain copy: no queue, no thread hand-off in the way.
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
            if let Some(c) = closed {
                c.fetch_sub(1, Ordering::SeqCst);
            }
        });
        return;
    }
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let now = Instant::now();
            let sent = not_before.map_or(now, |t| t.max(now));
            // An empty chunk is the end of the stream.
            if tx.send((sent + one_way, buf[..n].to_vec())).is_err() || n == 0 {
                break;
            }
        }
        if let Some(c) = closed {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if bytes.is_empty() || to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
