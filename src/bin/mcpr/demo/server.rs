//! The DEMO server of `mcpr demo`. NOT a real MCP server, and never used by
//! the tests against real servers: just enough Streamable HTTP (POST with
//! JSON answers, `Mcp-Session-Id` sessions, DELETE) to make the failures
//! the demo shows happen on cue, on 127.0.0.1:
//!
//! - a session nobody used for `idle_ttl` is forgotten, and a request that
//!   names it gets the 404 the official Python SDK sends;
//! - [`DemoServer::restart`] closes the listener, forgets every session and
//!   listens again on the same port after a pause;
//! - the `transfer` tool (not idempotent) does its work, then the
//!   connection is cut before the answer, as when a proxy or the server
//!   dies mid-call.
//!
//! It counts `initialize` requests and `transfer` executions, and tells
//! the demo what it does through the shared [`Trace`].

use super::Trace;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the idle sessions are looked at.
const REAPER_TICK: Duration = Duration::from_millis(20);
/// Requests are small; anything bigger is not from our demo client.
const MAX_BODY: usize = 1 << 20;

#[derive(Default)]
struct State {
    /// Session id → when it was last used.
    sessions: HashMap<String, Instant>,
    next_session: u64,
    initializes: u64,
    transfers: u64,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled on every session change (and on shutdown).
    changed: Condvar,
    trace: Trace,
    idle_ttl: Duration,
    addr: SocketAddr,
    /// Cleared to make the accept loop close the listener.
    accepting: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running demo server. Dropping it stops it.
pub struct DemoServer {
    inner: Arc<Inner>,
    accept: Mutex<Option<JoinHandle<()>>>,
    reaper: Option<JoinHandle<()>>,
}

impl DemoServer {
    /// Listens on a free loopback port.
    pub fn start(trace: Trace, idle_ttl: Duration) -> io::Result<DemoServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let inner = Arc::new(Inner {
            state: Mutex::default(),
            changed: Condvar::new(),
            trace,
            idle_ttl,
            addr: listener.local_addr()?,
            accepting: AtomicBool::new(true),
        });
        let reaper = {
            let inner = inner.clone();
            std::thread::spawn(move || reap(&inner))
        };
        let accept = spawn_accept(inner.clone(), listener);
        Ok(DemoServer {
            inner,
            accept: Mutex::new(Some(accept)),
            reaper: Some(reaper),
        })
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.inner.addr)
    }

    /// `initialize` requests answered so far.
    pub fn initializes(&self) -> u64 {
        self.inner.lock().initializes
    }

    /// Times `transfer` ran.
    pub fn transfers(&self) -> u64 {
        self.inner.lock().transfers
    }

    /// Blocks until the server holds no session (the idle timer fired), at
    /// most `within`; says whether that happened.
    pub fn await_no_sessions(&self, within: Duration) -> bool {
        let st = self.inner.lock();
        let (st, _) = self
            .inner
            .changed
            .wait_timeout_while(st, within, |s| !s.sessions.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        st.sessions.is_empty()
    }

    /// Closes the listener and forgets every session now; listens again on
    /// the same port after `down` (on another thread, so the caller can
    /// call the server while it is down).
    pub fn restart(self: &Arc<Self>, down: Duration) {
        self.stop_listening();
        let forgotten = {
            let mut st = self.inner.lock();
            let n = st.sessions.len();
            st.sessions.clear();
            n
        };
        self.inner.changed.notify_all();
        self.inner.trace.note(format!(
            "server: restarting: listener closed, {forgotten} session(s) forgotten, back in {} ms",
            down.as_millis()
        ));
        let me = self.clone();
        std::thread::spawn(move || {
            // The downtime being demonstrated, not a wait for something.
            std::thread::sleep(down);
            match me.listen_again() {
                Ok(()) => me
                    .inner
                    .trace
                    .note(format!("server: listening again on {}", me.inner.addr)),
                Err(e) => me
                    .inner
                    .trace
                    .note(format!("server: cannot listen again: {e}")),
            }
        });
    }

    fn stop_listening(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
        // accept() blocks: one connection wakes it to see the flag.
        let _ = TcpStream::connect(self.inner.addr);
        let accept = self
            .accept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = accept {
            let _ = t.join();
        }
    }

    fn listen_again(&self) -> io::Result<()> {
        // std sets SO_REUSEADDR on Unix, so the old connections lingering in
        // TIME_WAIT do not keep the port.
        let listener = TcpListener::bind(self.inner.addr)?;
        self.inner.accepting.store(true, Ordering::SeqCst);
        let t = spawn_accept(self.inner.clone(), listener);
        *self.accept.lock().unwrap_or_else(PoisonError::into_inner) = Some(t);
        Ok(())
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.changed.notify_all();
        self.stop_listening();
        if let Some(t) = self.reaper.take() {
            let _ = t.join();
        }
    }
}

fn spawn_accept(inner: Arc<Inner>, listener: TcpListener) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if !inner.accepting.load(Ordering::SeqCst) {
                break; // dropping the listener closes the port
            }
            if let Ok(stream) = stream {
                let inner = inner.clone();
                std::thread::spawn(move || {
                    let _ = serve(&inner, stream);
                });
            }
        }
    })
}

/// The idle timer: forgets sessions unused for `idle_ttl`.
fn reap(inner: &Inner) {
    let mut st = inner.lock();
    while !st.shutdown {
        st = inner
            .changed
            .wait_timeout(st, REAPER_TICK)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        let now = Instant::now();
        let expired: Vec<String> = st
            .sessions
            .iter()
            .filter(|(_, used)| now.duration_since(**used) >= inner.idle_ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            st.sessions.remove(id);
            inner.trace.note(format!(
                "server: session {id} expired after {} ms idle",
                inner.idle_ttl.as_millis()
            ));
        }
        if !expired.is_empty() {
            inner.changed.notify_all();
        }
    }
}

/// One HTTP request on one connection (`Connection: close`, so a restart
/// leaves no pooled connection behind).
struct Request {
    method: String,
    session: Option<String>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let method = line.split_whitespace().next().unwrap_or("").to_owned();
    let (mut len, mut chunked, mut session) = (0usize, false, None);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "mcp-session-id" => session = Some(value.to_owned()),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            if size == 0 || body.len() + size > MAX_BODY {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(len.min(MAX_BODY), 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Request {
        method,
        session,
        body,
    })
}

/// What to send back.
enum Reply {
    Http {
        status: u16,
        session: Option<String>,
        body: String,
    },
    /// Close the connection without a word.
    Cut,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply::Http {
        status,
        session: None,
        body: body.to_string(),
    }
}

fn serve(inner: &Inner, mut stream: TcpStream) -> io::Result<()> {
    let req = read_request(&stream)?;
    let answer = match req.method.as_str() {
        "POST" => post(inner, &req),
        "DELETE" => {
            if let Some(id) = &req.session {
                inner.lock().sessions.remove(id);
                inner.changed.notify_all();
            }
            reply(200, json!({}))
        }
        // No server-initiated stream in this demo.
        _ => reply(405, json!({"error": "method not allowed"})),
    };
    match answer {
        Reply::Cut => stream.shutdown(Shutdown::Both),
        Reply::Http {
            status,
            session,
            body,
        } => {
            let session = session
                .map(|s| format!("Mcp-Session-Id: {s}\r\n"))
                .unwrap_or_default();
            let (ctype, body) = if status == 202 {
                ("", String::new())
            } else {
                ("Content-Type: application/json\r\n", body)
            };
            write!(
                stream,
                "HTTP/1.1 {status} {}\r\n{ctype}{session}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(status),
                body.len()
            )
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Other",
    }
}

fn post(inner: &Inner, req: &Request) -> Reply {
    let Ok(msg) = serde_json::from_slice::<Value>(&req.body) else {
        return reply(
            400,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}),
        );
    };
    let method = msg["method"].as_str().unwrap_or("");
    if method == "initialize" {
        return initialize(inner, &msg);
    }
    // Everything else needs a live session.
    {
        let mut st = inner.lock();
        let live = req.session.as_ref().and_then(|id| st.sessions.get_mut(id));
        match live {
            Some(used) => *used = Instant::now(),
            None => {
                drop(st);
                let Some(id) = &req.session else {
                    return reply(
                        400,
                        json!({"jsonrpc":"2.0","id":null,
                               "error":{"code":-32600,"message":"Bad Request: No valid session ID provided"}}),
                    );
                };
                inner
                    .trace
                    .note(format!("server: 404 Session not found ({id}, {method})"));
                return reply(
                    404,
                    json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}),
                );
            }
        }
    }
    let Some(id) = msg.get("id").cloned() else {
        return Reply::Http {
            status: 202,
            session: None,
            body: String::new(),
        }; // a notification
    };
    if msg.get("method").is_none() {
        return reply(202, json!({})); // a reply to a server request (none are sent)
    }
    let result = match method {
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({ "tools": tools() })),
        "tools/call" => match call(inner, &msg["params"]) {
            Some(r) => r,
            None => return Reply::Cut,
        },
        _ => Err(json!({"code": -32601, "message": format!("Method not found: {method}")})),
    };
    let body = match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
    };
    reply(200, body)
}

fn initialize(inner: &Inner, msg: &Value) -> Reply {
    let (id, n) = {
        let mut st = inner.lock();
        st.next_session += 1;
        st.initializes += 1;
        let id = format!("s{}", st.next_session);
        st.sessions.insert(id.clone(), Instant::now());
        (id, st.initializes)
    };
    inner.changed.notify_all();
    inner
        .trace
        .note(format!("server: initialize #{n} -> new session {id}"));
    let version = msg["params"]["protocolVersion"]
        .as_str()
        .unwrap_or("2025-11-25");
    let result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "mcpr-demo-server (DEMO, not a real MCP server)", "version": env!("CARGO_PKG_VERSION")},
    });
    Reply::Http {
        status: 200,
        session: Some(id),
        body: json!({"jsonrpc": "2.0", "id": msg["id"], "result": result}).to_string(),
    }
}

fn tools() -> Value {
    let schema = |props: Value| json!({"type": "object", "properties": props});
    json!([
        {"name": "echo", "description": "Returns its text.",
         "inputSchema": schema(json!({"text": {"type": "string"}})),
         "annotations": {"readOnlyHint": true}},
        {"name": "add", "description": "Adds two integers.",
         "inputSchema": schema(json!({"a": {"type": "integer"}, "b": {"type": "integer"}})),
         "annotations": {"readOnlyHint": true}},
        {"name": "transfer", "description": "Moves money: NOT idempotent. The demo cuts its connection mid-call.",
         "inputSchema": schema(json!({"amount": {"type": "integer"}})),
         "annotations": {"readOnlyHint": false, "idempotentHint": false}},
        {"name": "transfers", "description": "How many times transfer ran.",
         "inputSchema": schema(json!({})),
         "annotations": {"readOnlyHint": true}},
    ])
}

/// A tool call: `Some(result or error)`, or `None` to cut the connection.
fn call(inner: &Inner, params: &Value) -> Option<Result<Value, Value>> {
    let args = &params["arguments"];
    let text = |t: String| Ok(json!({"content": [{"type": "text", "text": t}]}));
    Some(match params["name"].as_str().unwrap_or("") {
        "echo" => text(args["text"].as_str().unwrap_or("").to_owned()),
        "add" => {
            let (a, b) = (args["a"].as_i64(), args["b"].as_i64());
            match (a, b) {
                (Some(a), Some(b)) => text(a.saturating_add(b).to_string()),
                _ => Ok(
                    json!({"content": [{"type": "text", "text": "a and b must be integers"}], "isError": true}),
                ),
            }
        }
        "transfer" => {
            let n = {
                let mut st = inner.lock();
                st.transfers += 1;
                st.transfers
            };
            inner.trace.note(format!(
                "server: transfer ran (executions: {n}); now the connection is cut before the answer"
            ));
            return None;
        }
        "transfers" => text(inner.lock().transfers.to_string()),
        other => Ok(
            json!({"content": [{"type": "text", "text": format!("unknown tool {other}")}], "isError": true}),
        ),
    })
}
