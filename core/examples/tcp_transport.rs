//! Bring your own transport: the recovery core driven over plain
//! `std::net::TcpStream` HTTP/1.1, with no HTTP library at all. This is the
//! proof that every recovery decision lives in the core: this file only
//! moves bytes and reads the clock.
//!
//! ```text
//! cargo run -p mcp-recovery-core --example tcp_transport                  # embedded demo server
//! cargo run -p mcp-recovery-core --example tcp_transport -- http://127.0.0.1:8000/mcp
//! cargo run -p mcp-recovery-core --example tcp_transport -- http://127.0.0.1:8000/mcp 3
//! ```
//!
//! Without a URL it starts a small DEMO server on 127.0.0.1 (not a real MCP
//! server: just enough of the protocol to show recovery) that forgets every
//! session after three requests, the way a server with an idle timeout or a
//! restart does. With a URL it runs the same script against your server
//! (plain `http://` only; it calls `tools/list`, then `echo` if listed). A
//! second argument pauses that many seconds between calls, so a server with
//! a shorter idle timeout forgets the session in between.
// This is the I/O side: clock, sockets and threads are its job.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use mcp_recovery_core::{Action, CallId, Config, Engine, Input, Operation, TransportFailure};
use mcp_recovery_core::{FailureKind, HttpRequest};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => demo_server::start(),
    };
    println!("MCP endpoint: {url}");
    let pause = std::env::args()
        .nth(2)
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64);
    let mut engine = Engine::new(Config::new(url.as_str()));
    let started = Instant::now();

    let tools = run(&mut engine, Operation::list_tools(None));
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    println!("tools: {names:?}");
    if names.contains(&"echo") {
        for i in 1..=6 {
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
            let text = format!("message {i}");
            let r = run(
                &mut engine,
                Operation::call_tool("echo", json!({ "text": text })),
            );
            println!("echo → {}", r["content"][0]["text"]);
        }
    }
    println!(
        "done in {:?}; session generation {} (each generation after the first is a recovered session)",
        started.elapsed(),
        engine.generation()
    );
    engine.close(Instant::now());
    drive(&mut engine, None);
}

/// Runs one call to its end, printing what the core decides on the way.
fn run(engine: &mut Engine, op: Operation) -> Value {
    let method = op.method().to_owned();
    let call = engine.call(op, Instant::now());
    match drive(engine, Some(call)) {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            eprintln!("{method} failed: {e}");
            std::process::exit(1);
        }
        None => unreachable!("every call ends"),
    }
}

/// The whole adapter: perform transmits, wait for deadlines, report ends.
fn drive(engine: &mut Engine, watch: Option<CallId>) -> Option<Result<Value, String>> {
    let mut outcome = None;
    let mut queue = Vec::new();
    loop {
        while let Some(action) = engine.poll_action() {
            match action {
                Action::Transmit {
                    exchange, request, ..
                } => queue.push((exchange, request)),
                Action::SignalReconnect { generation } => {
                    println!("  ↻ session lost: re-initializing (generation {generation})")
                }
                Action::RetryOnce { recovery, .. } => {
                    println!("  ↻ retrying once after {recovery:?} recovery")
                }
                Action::SessionReady { generation } => {
                    println!("  ✓ session ready (generation {generation})")
                }
                Action::Complete { call, result } if Some(call) == watch => {
                    outcome = Some(result.map_err(|e| e.to_string()))
                }
                Action::Surface { call, error } if Some(call) == watch => {
                    outcome = Some(Err(error.to_string()))
                }
                _ => {}
            }
        }
        if outcome.is_some() {
            return outcome;
        }
        if queue.is_empty() {
            match engine.poll_timeout() {
                Some((deadline, _why)) => {
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    engine.handle_timeout(Instant::now());
                    continue;
                }
                None => return None,
            }
        }
        // One at a time keeps the example short; a real adapter sends them
        // concurrently.
        let (exchange, request) = queue.remove(0);
        match perform(&request) {
            Ok((status, headers, body)) => {
                let method = serde_json::from_slice::<Value>(&request.body)
                    .ok()
                    .and_then(|v| v["method"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| request.method.as_str().to_owned());
                if status >= 400 {
                    println!(
                        "  ✗ {method}: HTTP {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                engine.handle_response(exchange, status, &headers, &body, Instant::now());
            }
            Err(failure) => engine.handle_input(
                Input::Failed {
                    exchange,
                    failure: &failure,
                },
                Instant::now(),
            ),
        }
    }
}

type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 exchange on a fresh connection.
fn perform(request: &HttpRequest) -> Result<Response, TransportFailure> {
    let rest = request
        .url
        .strip_prefix("http://")
        .ok_or_else(|| TransportFailure::not_sent(FailureKind::Other, "only http:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(authority)
        .map_err(|e| TransportFailure::not_sent(FailureKind::Connect, e.to_string()))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.method.as_str(),
        request.body.len()
    );
    for (name, value) in request.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let io = |kind| move |e: std::io::Error| TransportFailure::after_send(kind, e.to_string());
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&request.body))
        .map_err(io(FailureKind::Reset))?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(io(FailureKind::Reset))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TransportFailure::after_send(FailureKind::Reset, "no status line"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .map_err(io(FailureKind::Reset))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(io(FailureKind::Reset))?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| TransportFailure::after_send(FailureKind::Reset, "bad chunk size"))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader
                .read_exact(&mut chunk)
                .map_err(io(FailureKind::Reset))?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader
            .read_exact(&mut body)
            .map_err(io(FailureKind::Reset))?;
    } else {
        reader
            .read_to_end(&mut body)
            .map_err(io(FailureKind::Reset))?;
    }
    Ok((status, headers, body))
}

/// A DEMO server, not a real MCP server: just enough Streamable HTTP to show
/// recovery. It forgets every session after three requests and answers the
/// stale id with the 404 the official Python SDK sends.
mod demo_server {
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    pub fn start() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        std::thread::spawn(move || {
            let mut sessions: HashMap<String, u32> = HashMap::new();
            let mut next = 0;
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &mut sessions, &mut next);
            }
        });
        format!("http://{addr}/mcp")
    }

    fn serve(
        stream: TcpStream,
        sessions: &mut HashMap<String, u32>,
        next: &mut u32,
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let (mut line, mut len, mut sid) = (String::new(), 0, None);
        reader.read_line(&mut line)?;
        let delete = line.starts_with("DELETE");
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if l.starts_with("mcp-session-id:") {
                sid = line.split_once(':').map(|(_, v)| v.trim().to_owned());
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let method = msg["method"].as_str().unwrap_or("");
        let (status, extra, reply) = if delete {
            (200, String::new(), String::new())
        } else if method == "initialize" {
            *next += 1;
            let id = format!("demo-{next}");
            sessions.insert(id.clone(), 0);
            let r = json!({"jsonrpc":"2.0","id":msg["id"],"result":{"protocolVersion":"2025-11-25",
                "capabilities":{"tools":{}},"serverInfo":{"name":"demo (not a real server)","version":"0"}}});
            (200, format!("Mcp-Session-Id: {id}\r\n"), r.to_string())
        } else {
            let known = sid.as_ref().and_then(|s| sessions.get_mut(s));
            match known {
                None => (
                    404,
                    String::new(),
                    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#.to_owned(),
                ),
                Some(uses) => {
                    *uses += 1;
                    if *uses >= 3 {
                        // Forget it after this answer, like an idle timeout would.
                        sessions.remove(sid.as_deref().unwrap_or(""));
                    }
                    if msg.get("id").is_none() {
                        (202, String::new(), String::new())
                    } else {
                        let result = match method {
                            "tools/list" => json!({"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}),
                            "tools/call" => json!({"content":[{"type":"text","text":msg["params"]["arguments"]["text"]}]}),
                            _ => json!({}),
                        };
                        (200, String::new(), json!({"jsonrpc":"2.0","id":msg["id"],"result":result}).to_string())
                    }
                }
            }
        };
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )
    }
}
