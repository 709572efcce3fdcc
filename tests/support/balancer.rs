//! A load balancer without session affinity, in front of two real servers:
//! TEST SUPPORT ONLY. The handshake (`initialize` and its
//! `notifications/initialized`) goes to one replica, every other request to
//! the other, which never heard of the session: what a balancer without
//! affinity does to a client, made certain instead of likely. Each
//! connection carries one request (the backend is asked to close after it,
//! so clients cannot reuse a connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The proxy; stops accepting when dropped.
pub struct Balancer {
    pub port: u16,
    listener: TcpListener,
}

impl Balancer {
    /// A proxy on a free loopback port: handshakes to `handshakes`, the
    /// rest to `rest` (ports on 127.0.0.1).
    pub fn split(handshakes: u16, rest: u16) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let accept = listener.try_clone().expect("clone");
        let seen = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for conn in accept.incoming() {
                let Ok(conn) = conn else { return };
                seen.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || forward(conn, handshakes, rest));
            }
        });
        Balancer { port, listener }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // Wake the accept loop so it sees the listener gone.
        let _ = self.listener.set_nonblocking(true);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request, sends it to its backend with `connection: close`,
/// and copies the answer back until the backend closes.
fn forward(client: TcpStream, handshakes: u16, rest: u16) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let method = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|m| m["method"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let handshake = method == "initialize" || method == "notifications/initialized";
    let backend = if handshake { handshakes } else { rest };
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", backend)) else {
        return;
    };
    let request = format!("{head}connection: close\r\n\r\n");
    if upstream.write_all(request.as_bytes()).is_err() || upstream.write_all(&body).is_err() {
        return;
    }
    let mut client = client;
    let _ = std::io::copy(&mut upstream, &mut client);
}
