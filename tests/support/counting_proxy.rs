//! A TCP proxy that counts the connections clients open through it, and
//! those still open: TEST SUPPORT ONLY. Bytes are passed through untouched, both ways.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The proxy; stops accepting when dropped.
pub struct CountingProxy {
    pub port: u16,
    seen: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    listener: TcpListener,
}

impl CountingProxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:backend`.
    pub fn to(backend: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let accept = listener.try_clone().expect("clone");
        let seen = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (count, live) = (seen.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in accept.incoming() {
                let Ok(client) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                live.fetch_add(1, Ordering::SeqCst);
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Some(live.clone()),
                );
                pipe(server, client, None);
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
    #[allow(dead_code)]
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

/// Copies `from` to `to` until either side ends; then `closed`, if given,
/// counts one connection less.
fn pipe(mut from: TcpStream, mut to: TcpStream, closed: Option<Arc<AtomicUsize>>) {
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
        if let Some(c) = closed {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    });
}
