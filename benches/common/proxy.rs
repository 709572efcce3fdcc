//! A loopback TCP proxy for the benchmarks: counts the connections clients
//! open through it and, optionally, delays every byte by a fixed one-way
//! time in each direction, to stand for a network with that round trip.
//! Bytes pass through untouched (over TLS it only sees ciphertext).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The proxy; stops accepting when dropped (connections already open run
/// until either side ends them).
pub struct Proxy {
    pub port: u16,
    seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:backend`,
    /// adding `one_way` to each direction (zero: a plain copy).
    pub fn start(backend: u16, one_way: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let seen = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let opened = Instant::now();
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                    continue;
                };
                // Both sides without Nagle: a proxy must not hold back the
                // small writes (TLS records, SSE events) it was handed.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                if one_way.is_zero() {
                    copy(c2, s2);
                    copy(server, client);
                } else {
                    // The TCP handshake between the client and this proxy
                    // completes at once on loopback, where it would take a
                    // round trip: the client's first bytes are held that
                    // round trip longer (clients write right after
                    // connecting, so they arrive when they would have).
                    delay_line(c2, s2, one_way, Some(opened + 2 * one_way));
                    delay_line(server, client, one_way, None);
                }
            }
        });
        Proxy { port, seen, stop }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Wakes the accept loop, which sees the flag and ends.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` until either side ends, then passes the end on.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Delivers what `from` sends to `to` `one_way` after it was read (and not
/// before `not_before + one_way`), in order, the end of stream included.
/// A reader and a writer thread with a queue between them, so bytes in
/// flight overlap the way they do on a link with that latency instead of
/// each chunk waiting for the one before it.
fn delay_line(
    mut from: TcpStream,
    mut to: TcpStream,
    one_way: Duration,
    not_before: Option<Instant>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let now = Instant::now();
            let sent = not_before.map_or(now, |t| t.max(now));
            // An empty chunk is the end of the stream.
            if tx.send((sent + one_way, buf[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if bytes.is_empty() {
                break;
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
