//! A controllable HTTP server for what real servers cannot be made to do on
//! demand: garbage, wrong content types, cut streams, oversize bodies, a
//! slowloris head, resets, endless 404s and 401s, a broken token endpoint,
//! bad session ids. TEST SUPPORT ONLY: in its `Good` mode it is a minimal
//! MCP server (initialize, initialized, `echo`, `ping`) so a test can show
//! that the same client works again once the fault is gone. The recovery
//! behaviour against real servers is tested against the official SDKs.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does to the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A working MCP server.
    Good,
    /// `200 application/json` with a body that is not JSON.
    GarbageJson,
    /// `200 text/html`.
    WrongContentType,
    /// An event stream (no event ids) that stops in the middle of an event.
    SseCutMidEvent,
    /// A 4 MiB JSON body.
    Oversize,
    /// The response head, one byte every 100 ms, forever.
    Slowloris,
    /// A `200` head, a few body bytes, then a TCP reset.
    ResetAfter200,
    /// `404 Session not found` to every request that carries a session id.
    Always404,
    /// `401` to every MCP request.
    Always401,
    /// The token endpoint answers `500` with an HTML page.
    TokenEndpoint500,
    /// The initialize answer's `Mcp-Session-Id` holds a control character.
    SessionIdControlChars,
    /// `400` with a throwaway `Mcp-Session-Id` to the first initialize,
    /// then good.
    SessionIdOnError,
    /// `initialize` answered `200 text/event-stream`, then only SSE comments
    /// (`: keep-alive`), one every 100 ms, for up to 30 s: never an answer.
    InitializeComments,
    /// Everything but the handshake answered `500` with a body that goes on
    /// (chunks of `x`, as fast as they are read) for up to 30 s.
    Endless500,
    /// The token endpoint sends a `200` head, then one body byte every
    /// 200 ms, for up to 30 s; MCP requests get `401`.
    TokenTrickle,
    /// `tools/list` answered with 500 tools of 1 KiB descriptions (about
    /// 600 KB a page) and a fresh cursor, every time, forever.
    EndlessPages,
    /// Everything but the handshake answered `307 Temporary Redirect` to
    /// the same path on another port (another origin).
    RedirectTo(u16),
    /// A good answer to `tools/call` as an event stream that the server then
    /// keeps open (against the spec's SHOULD close) until
    /// [`FaultServer::release`], at most 10 s.
    SseHeldOpen,
}

struct State {
    fault: Fault,
    sessions: u64,
    session: Option<String>,
    /// Requests that reached this server at all, and those with an
    /// `Authorization` header.
    requests: u64,
    authorized: u64,
}

/// The server; stops accepting when dropped (its threads end with their
/// connections).
pub struct FaultServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    pub initializes: Arc<AtomicU64>,
    pub token_requests: Arc<AtomicU64>,
    held: Arc<Held>,
}

/// Streams kept open by [`Fault::SseHeldOpen`], and their release.
#[derive(Default)]
struct Held {
    open: AtomicU64,
    released: AtomicBool,
}

impl FaultServer {
    pub fn start() -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            fault: Fault::Good,
            sessions: 0,
            session: None,
            requests: 0,
            authorized: 0,
        }));
        let initializes = Arc::new(AtomicU64::new(0));
        let token_requests = Arc::new(AtomicU64::new(0));
        let held = Arc::new(Held::default());
        let (s, i, t, h) = (
            state.clone(),
            initializes.clone(),
            token_requests.clone(),
            held.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, i, t, h) = (s.clone(), i.clone(), t.clone(), h.clone());
                std::thread::spawn(move || serve(conn, &s, &i, &t, &h));
            }
        });
        FaultServer {
            port,
            state,
            initializes,
            token_requests,
            held,
        }
    }

    /// Event streams [`Fault::SseHeldOpen`] holds open right now.
    pub fn held_open(&self) -> u64 {
        self.held.open.load(Ordering::SeqCst)
    }

    /// Lets every held stream end (its closing chunk is sent).
    pub fn release(&self) {
        self.held.released.store(true, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn set(&self, fault: Fault) {
        self.state.lock().unwrap().fault = fault;
    }

    /// Requests received so far, and how many carried `Authorization`.
    pub fn requests(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.requests, s.authorized)
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn respond(out: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
}

fn json_reply(out: &mut TcpStream, extra: &[(&str, &str)], body: &Value) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra);
    respond(out, "200 OK", &headers, body.to_string().as_bytes());
}

fn serve(
    conn: TcpStream,
    state: &Mutex<State>,
    inits: &AtomicU64,
    tokens: &AtomicU64,
    held: &Held,
) {
    let mut out = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        let fault = {
            let mut s = state.lock().unwrap();
            s.requests += 1;
            if req.header("authorization").is_some() {
                s.authorized += 1;
            }
            s.fault
        };
        if req.path == "/token" && fault == Fault::TokenTrickle {
            tokens.fetch_add(1, Ordering::SeqCst);
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
            let _ = out.write_all(head.as_bytes());
            for b in b"{\"access_token\": \"".iter().cycle().take(150) {
                if out.write_all(&[*b]).and_then(|()| out.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            return;
        }
        if req.path == "/token" {
            tokens.fetch_add(1, Ordering::SeqCst);
            let page = b"<html><body>Internal Server Error</body></html>";
            respond(
                &mut out,
                "500 Internal Server Error",
                &[("content-type", "text/html")],
                page,
            );
            continue;
        }
        let msg: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let method = msg["method"].as_str().unwrap_or("").to_owned();
        let id = msg["id"].clone();
        if req.method == "DELETE" {
            respond(&mut out, "200 OK", &[], b"");
            continue;
        }
        if method == "initialize" {
            inits.fetch_add(1, Ordering::SeqCst);
        }
        let in_session = req.header("mcp-session-id").is_some();
        match fault {
            Fault::GarbageJson if method != "initialize" && !in_initialized(&method) => respond(
                &mut out,
                "200 OK",
                &[("content-type", "application/json")],
                b"{]",
            ),
            Fault::WrongContentType if !is_handshake(&method) => respond(
                &mut out,
                "200 OK",
                &[("content-type", "text/html")],
                b"<html>hello</html>",
            ),
            Fault::SseCutMidEvent if !is_handshake(&method) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\"");
                let _ = out.flush();
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
            Fault::Oversize if !is_handshake(&method) => {
                let big = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"x".repeat(4 << 20)}]}});
                json_reply(&mut out, &[], &big);
            }
            Fault::Slowloris if !is_handshake(&method) => {
                for b in b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-slow: "
                    .iter()
                    .cycle()
                {
                    if out.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Fault::ResetAfter200 if !is_handshake(&method) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"jsonrpc\":";
                let _ = out.write_all(head.as_bytes());
                let _ = out.flush();
                // Linger 0: the close is a reset, not a clean end.
                let _ = socket2_reset(&out);
                return;
            }
            Fault::RedirectTo(port) if !is_handshake(&method) => {
                let location = format!("http://127.0.0.1:{port}/mcp");
                respond(
                    &mut out,
                    "307 Temporary Redirect",
                    &[("location", location.as_str())],
                    b"",
                );
            }
            Fault::Always404 if in_session => {
                let body = json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}});
                respond(
                    &mut out,
                    "404 Not Found",
                    &[("content-type", "application/json")],
                    body.to_string().as_bytes(),
                );
            }
            Fault::Always401 | Fault::TokenEndpoint500 | Fault::TokenTrickle => respond(
                &mut out,
                "401 Unauthorized",
                &[("www-authenticate", "Bearer error=\"invalid_token\"")],
                b"",
            ),
            Fault::SessionIdControlChars if method == "initialize" => {
                let body = init_result(&id);
                json_reply(&mut out, &[("mcp-session-id", "bad\u{1}id")], &body);
            }
            Fault::SessionIdOnError if method == "initialize" => {
                state.lock().unwrap().fault = Fault::Good;
                let body = json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Bad Request: try again"}});
                respond(
                    &mut out,
                    "400 Bad Request",
                    &[
                        ("content-type", "application/json"),
                        ("mcp-session-id", "throwaway"),
                    ],
                    body.to_string().as_bytes(),
                );
            }
            Fault::SseHeldOpen if method == "tools/call" => {
                let text = msg["params"]["arguments"]["text"].as_str().unwrap_or("");
                let answer = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":text}]}});
                let event = format!("event: message\ndata: {answer}\n\n");
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                // Counted before the answer goes out, so a client that has
                // the answer sees the stream counted.
                held.open.fetch_add(1, Ordering::SeqCst);
                let _ = out.write_all(format!("{head}{chunk}").as_bytes());
                let _ = out.flush();
                for _ in 0..200 {
                    if held.released.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                held.open.fetch_sub(1, Ordering::SeqCst);
                let _ = out.write_all(b"0\r\n\r\n");
            }
            Fault::InitializeComments if method == "initialize" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = out.write_all(head.as_bytes());
                for _ in 0..300 {
                    let comment = ": keep-alive\n\n";
                    let chunk = format!("{:x}\r\n{comment}\r\n", comment.len());
                    if out
                        .write_all(chunk.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
            Fault::Endless500 if !is_handshake(&method) => {
                let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = out.write_all(head.as_bytes());
                let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
                let until = std::time::Instant::now() + Duration::from_secs(30);
                while std::time::Instant::now() < until {
                    if out.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                }
                return;
            }
            Fault::EndlessPages if method == "tools/list" => {
                let page = msg["params"]["cursor"]
                    .as_str()
                    .and_then(|c| c.parse::<u64>().ok())
                    .unwrap_or(0);
                let tools: Vec<Value> = (0..500)
                    .map(|i| {
                        json!({"name": format!("t{page}_{i}"), "description": "d".repeat(1024),
                            "inputSchema": {"type": "object"}})
                    })
                    .collect();
                let r = json!({"jsonrpc":"2.0","id":id,
                    "result":{"tools": tools, "nextCursor": (page + 1).to_string()}});
                json_reply(&mut out, &[], &r);
            }
            _ => good(&mut out, state, &method, &id, &msg),
        }
    }
}

fn is_handshake(method: &str) -> bool {
    method == "initialize" || in_initialized(method)
}

fn in_initialized(method: &str) -> bool {
    method.starts_with("notifications/")
}

fn init_result(id: &Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":{
        "protocolVersion":"2025-11-25","capabilities":{"tools":{}},
        "serverInfo":{"name":"fault-server","version":"0"}}})
}

fn good(out: &mut TcpStream, state: &Mutex<State>, method: &str, id: &Value, msg: &Value) {
    match method {
        "initialize" => {
            let sid = {
                let mut st = state.lock().unwrap();
                st.sessions += 1;
                let sid = format!("good-{}", st.sessions);
                st.session = Some(sid.clone());
                sid
            };
            json_reply(out, &[("mcp-session-id", &sid)], &init_result(id));
        }
        m if m.starts_with("notifications/") => respond(out, "202 Accepted", &[], b""),
        "tools/call" => {
            let text = msg["params"]["arguments"]["text"].as_str().unwrap_or("");
            let r =
                json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":text}]}});
            json_reply(out, &[], &r);
        }
        "ping" => json_reply(out, &[], &json!({"jsonrpc":"2.0","id":id,"result":{}})),
        _ => json_reply(
            out,
            &[],
            &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"Method not found"}}),
        ),
    }
}

/// Arms `stream` so that closing it sends a TCP reset (SO_LINGER 0), as a
/// crashed proxy does; the reset goes out when the connection is dropped.
fn socket2_reset(stream: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized `linger` value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
