//! A minimal MCP responder for measuring the client side: HTTP/1.1
//! keep-alive on 127.0.0.1, one thread per connection, fixed JSON answers.
//! It answers `initialize` (with a session id), notifications (202), any
//! other request with `{"content":[{"type":"text","text":"hi"}]}` under the
//! request's own id, and `DELETE` with 405. It does no JSON parsing, so
//! nearly all the time of a call is the client's and the kernel's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The running responder; its threads live as long as the process.
pub struct StaticServer {
    pub port: u16,
    /// The first `tools/call` request seen: (header lines, body).
    pub first_call: Arc<Seen>,
}

impl StaticServer {
    pub fn start() -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let first_call = Arc::new(Mutex::new(None));
        let seen = first_call.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &seen));
            }
        });
        StaticServer { port, first_call }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

/// The value after `"key":` in a JSON text, up to the next `,` or `}` (ids
/// are numbers; strings keep their quotes).
fn field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let at = body.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &body[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// The first `tools/call` request seen: (header lines, body).
pub type Seen = Mutex<Option<(Vec<String>, Vec<u8>)>>;

fn serve(stream: TcpStream, seen: &Seen) {
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    let mut response = Vec::with_capacity(512);
    loop {
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut method = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if method.is_empty() {
                method = l.split(' ').next().unwrap_or("").to_owned();
                continue;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            headers.push(l.to_owned());
        }
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let text = std::str::from_utf8(&body).unwrap_or("");
        let id = field(text, "id");
        response.clear();
        let json = |response: &mut Vec<u8>, extra: &str, payload: String| {
            let _ = write!(
                response,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{payload}",
                payload.len()
            );
        };
        if method != "POST" {
            response
                .extend_from_slice(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        } else if text.contains("\"method\":\"initialize\"") {
            let version = field(text, "protocolVersion").unwrap_or("\"2025-06-18\"");
            json(
                &mut response,
                "mcp-session-id: static-session\r\n",
                format!(
                    r#"{{"jsonrpc":"2.0","id":{},"result":{{"protocolVersion":{version},"capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"static","version":"1.0.0"}}}}}}"#,
                    id.unwrap_or("null")
                ),
            );
        } else if let Some(id) = id {
            if text.contains("\"method\":\"tools/call\"") {
                let mut first = seen.lock().unwrap();
                if first.is_none() {
                    *first = Some((headers.clone(), body.clone()));
                }
            }
            json(
                &mut response,
                "",
                format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"hi"}}]}}}}"#
                ),
            );
        } else {
            response.extend_from_slice(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
        }
        if out.write_all(&response).is_err() {
            return;
        }
    }
}
