//! The loopback listener the OAuth redirect comes back to. Any local
//! process, and a browser's speculative pre-connections, can open a
//! connection to it and say nothing: connections are read side by side
//! (polled, non-blocking), so none of them holds up the browser's real
//! `GET /callback`. Each connection gets a few seconds to send its head;
//! at most [`MAX_PENDING`] wait at once (the oldest goes first).

use crate::drive::Io;
use mcp_recovery_core::oauth::{redirect_head_done, MAX_REDIRECT_HEAD};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many connections may wait for their head at once.
pub const MAX_PENDING: usize = 32;

/// How long a connection may take to send its head.
const HEAD_WAIT: Duration = Duration::from_secs(5);

/// How often the listener is polled while it waits.
const POLL: Duration = Duration::from_millis(20);

/// A loopback listener and the connections it is reading.
#[derive(Debug)]
pub struct Loopback {
    listener: TcpListener,
    pending: Mutex<Vec<Pending>>,
}

#[derive(Debug)]
struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
    since: Instant,
}

impl Loopback {
    /// Binds `127.0.0.1:port` (0: any free port); returns it and its port.
    pub fn bind(port: u16) -> io::Result<(Loopback, u16)> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let pending = Mutex::new(Vec::new());
        Ok((Loopback { listener, pending }, port))
    }

    /// Waits until one connection has sent a whole request head, answers
    /// it with `reply(head)` and returns the head; `None` once `until`
    /// passed. Polled every 20 ms, waiting between passes the way the
    /// client `io` waits for anything (a thread's timed wait, a timer).
    pub async fn serve_one<I: Io>(
        &self,
        io: &I,
        until: Instant,
        reply: fn(&[u8]) -> Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        // Never notified: each wait is a pause to its deadline.
        let pause = event_listener::Event::new();
        loop {
            if let Some(head) = self.poll(reply)? {
                return Ok(Some(head));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            io.wait(pause.listen(), Some((now + POLL).min(until))).await;
        }
    }

    /// One pass without waiting: takes new connections, reads what each
    /// has sent, and answers the first whole request head with
    /// `reply(head)`, returning it. `None`: no head is complete yet.
    pub fn poll(&self, reply: fn(&[u8]) -> Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // At most MAX_PENDING new ones a pass, so a process connecting
        // without pause cannot keep this in `accept`.
        for _ in 0..MAX_PENDING {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if pending.len() >= MAX_PENDING {
                        pending.remove(0);
                    }
                    pending.push(Pending {
                        stream,
                        head: Vec::new(),
                        since: now,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Nothing waiting, or a connection that went away before it
                // was taken, or no descriptor free for a moment: the next
                // pass tries again; the flow's own deadline bounds it all.
                Err(_) => break,
            }
        }
        let mut chunk = [0u8; 1024];
        let mut i = 0;
        while i < pending.len() {
            let p = &mut pending[i];
            let mut closed = false;
            while !redirect_head_done(&p.head) {
                match p.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        let room = MAX_REDIRECT_HEAD - p.head.len();
                        p.head.extend_from_slice(&chunk[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if redirect_head_done(&p.head) {
                let mut p = pending.remove(i);
                // The browser may have gone: its page is all that is lost.
                let _ = p.stream.set_nonblocking(false);
                let _ = p.stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = p.stream.write_all(&reply(&p.head));
                return Ok(Some(p.head));
            }
            if closed || now.duration_since(p.since) > HEAD_WAIT {
                pending.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_recovery_core::oauth::redirect_reply;

    #[test]
    fn silent_connections_do_not_hold_up_the_redirect() {
        let (l, port) = Loopback::bind(0).unwrap();
        // Three connections that never speak, opened first.
        let silent: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        assert!(l.poll(redirect_reply).unwrap().is_none());
        let mut browser = TcpStream::connect(("127.0.0.1", port)).unwrap();
        browser
            .write_all(b"GET /callback?code=c&state=s HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let head = (0..500)
            .find_map(|_| {
                let h = l.poll(redirect_reply).unwrap();
                if h.is_none() {
                    std::thread::sleep(POLL);
                }
                h
            })
            .expect("the browser's head, the silent ones still open");
        assert!(head.starts_with(b"GET /callback?code=c"));
        let mut answer = String::new();
        browser.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(silent);
    }
}
