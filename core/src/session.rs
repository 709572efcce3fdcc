//! The Streamable-HTTP session: what goes on the wire and which session we
//! are in. It builds every request as data (method, URL, headers, body) and
//! takes the initialize answer: protocol version, and the `Mcp-Session-Id`,
//! captured only from a successful initialize and validated as visible ASCII.
//! Decisions about *when* to send belong to [`policy`](crate::policy).

use crate::error::ProtocolError;
use crate::http::{is_sensitive, HttpRequest, Method, Text};
use crate::jsonrpc::{self, RequestId, RpcError};
use crate::token::Token;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The newest handshake-based revision; what we ask for in `initialize`.
pub const LATEST_LEGACY_VERSION: &str = "2025-11-25";
/// Handshake-based revisions this client speaks, newest first.
pub const SUPPORTED_LEGACY_VERSIONS: &[&str] =
    &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The first revision without handshake and sessions.
pub const MODERN_VERSION: &str = "2026-07-28";

/// The protocol era to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// 2024-11-05 … 2025-11-25: `initialize` handshake, `Mcp-Session-Id`.
    #[default]
    Legacy,
    /// 2026-07-28: no handshake, no session; version and client identity
    /// travel in every request's `_meta`. A 404 is an unknown method, never
    /// an expired session.
    Modern,
}

/// A session id as the server issued it: 1 to 4096 visible ASCII
/// characters (0x21-0x7E), per the transport specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Validates a header value.
    pub fn parse(value: &str) -> Result<Self, ProtocolError> {
        let ok = !value.is_empty()
            && value.len() <= 4096
            && value.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if ok {
            Ok(SessionId(value.into()))
        } else {
            Err(ProtocolError::InvalidSessionId)
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Wire format and identity of one client's session with one endpoint.
#[derive(Debug, Clone)]
pub struct Session {
    url: Arc<str>,
    extra_headers: Vec<(Text, Text)>,
    protocol: Protocol,
    client_info: Value,
    capabilities: Value,
    id: Option<SessionId>,
    version: Option<&'static str>,
    server: Option<Arc<Value>>,
}

const ACCEPT_POST: &str = "application/json, text/event-stream";

impl Session {
    /// A session for `url` that has not been initialized.
    pub fn new(
        url: &str,
        protocol: Protocol,
        client_info: Value,
        capabilities: Value,
        extra_headers: &[(String, String)],
    ) -> Self {
        let extra_headers = extra_headers
            .iter()
            .map(|(n, v)| {
                let value = if is_sensitive(n) {
                    // A user-supplied credential header is as secret as a token.
                    Text::Secret(Token::raw(v))
                } else {
                    Text::Shared(v.as_str().into())
                };
                (Text::Shared(n.as_str().into()), value)
            })
            .collect();
        Session {
            url: url.into(),
            extra_headers,
            protocol,
            client_info,
            capabilities,
            id: None,
            version: match protocol {
                Protocol::Legacy => None,
                Protocol::Modern => Some(MODERN_VERSION),
            },
            server: None,
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The protocol era.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The current session id, if the server issued one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().map(SessionId::as_str)
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<&'static str> {
        self.version
    }

    /// The server's `InitializeResult` (capabilities, serverInfo,
    /// instructions) from the last successful handshake.
    pub fn server(&self) -> Option<&Value> {
        self.server.as_deref()
    }

    /// Drops the session id: an initialize that carries a stale id is
    /// rejected by servers, so a reconnect starts clean.
    pub fn forget(&mut self) {
        self.id = None;
        if self.protocol == Protocol::Legacy {
            self.version = None;
        }
    }

    fn post(&self, body: Vec<u8>, in_session: bool, token: Option<&Token>) -> HttpRequest {
        let mut headers = Vec::with_capacity(6 + self.extra_headers.len());
        headers.push((
            Text::Static("Content-Type"),
            Text::Static("application/json"),
        ));
        headers.push((Text::Static("Accept"), Text::Static(ACCEPT_POST)));
        self.common_headers(&mut headers, in_session, token);
        HttpRequest {
            method: Method::Post,
            url: self.url.clone(),
            headers,
            body,
        }
    }

    fn common_headers(
        &self,
        headers: &mut Vec<(Text, Text)>,
        in_session: bool,
        token: Option<&Token>,
    ) {
        if in_session {
            if let Some(id) = &self.id {
                headers.push((Text::Static("Mcp-Session-Id"), Text::Shared(id.0.clone())));
            }
            if let Some(v) = self.version {
                headers.push((Text::Static("MCP-Protocol-Version"), Text::Static(v)));
            }
        }
        if let Some(t) = token {
            headers.push((Text::Static("Authorization"), Text::Secret(t.clone())));
        }
        headers.extend(self.extra_headers.iter().cloned());
    }

    /// The `initialize` request. It never carries a session id.
    pub fn initialize(&self, id: &RequestId, token: Option<&Token>) -> HttpRequest {
        let params = json!({
            "protocolVersion": LATEST_LEGACY_VERSION,
            "capabilities": self.capabilities,
            "clientInfo": self.client_info,
        });
        self.post(
            jsonrpc::encode_request(id, "initialize", Some(&params)),
            false,
            token,
        )
    }

    /// The `notifications/initialized` that completes the handshake.
    pub fn initialized(&self, token: Option<&Token>) -> HttpRequest {
        self.notification("notifications/initialized", None, token)
    }

    /// A request in the current session. Returns whether it carries a
    /// session id, which classification needs.
    pub fn request(
        &self,
        id: &RequestId,
        method: &str,
        params: Option<&Value>,
        token: Option<&Token>,
    ) -> (HttpRequest, bool) {
        let body = match self.protocol {
            Protocol::Legacy => jsonrpc::encode_request(id, method, params),
            Protocol::Modern => jsonrpc::encode_request(id, method, Some(&self.with_meta(params))),
        };
        (self.post(body, true, token), self.id.is_some())
    }

    /// 2026-07-28: every request declares version, identity and capabilities.
    fn with_meta(&self, params: Option<&Value>) -> Value {
        let mut p = match params {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let meta = p
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = meta {
            m.insert(
                "io.modelcontextprotocol/protocolVersion".into(),
                MODERN_VERSION.into(),
            );
            m.insert(
                "io.modelcontextprotocol/clientInfo".into(),
                self.client_info.clone(),
            );
            m.insert(
                "io.modelcontextprotocol/clientCapabilities".into(),
                self.capabilities.clone(),
            );
        }
        Value::Object(p)
    }

    /// A notification in the current session.
    pub fn notification(
        &self,
        method: &str,
        params: Option<&Value>,
        token: Option<&Token>,
    ) -> HttpRequest {
        self.post(jsonrpc::encode_notification(method, params), true, token)
    }

    /// Our answer to a server's request.
    pub fn response(
        &self,
        id: &RequestId,
        result: &Result<Value, RpcError>,
        token: Option<&Token>,
    ) -> HttpRequest {
        self.post(jsonrpc::encode_response(id, result), true, token)
    }

    /// The GET that resumes an event stream after `last_event_id`.
    pub fn resume(&self, last_event_id: &str, token: Option<&Token>) -> HttpRequest {
        self.listen(Some(last_event_id), token)
    }

    /// The GET that opens the session's stream of server messages, or
    /// resumes a stream after `last_event_id`.
    pub fn listen(&self, last_event_id: Option<&str>, token: Option<&Token>) -> HttpRequest {
        let mut headers = Vec::with_capacity(5 + self.extra_headers.len());
        headers.push((Text::Static("Accept"), Text::Static("text/event-stream")));
        if let Some(id) = last_event_id {
            headers.push((Text::Static("Last-Event-ID"), Text::Shared(id.into())));
        }
        self.common_headers(&mut headers, true, token);
        HttpRequest {
            method: Method::Get,
            url: self.url.clone(),
            headers,
            body: Vec::new(),
        }
    }

    /// The DELETE that ends the session, when there is one to end.
    pub fn delete(&self, token: Option<&Token>) -> Option<HttpRequest> {
        self.id.as_ref()?;
        let mut headers = Vec::with_capacity(3 + self.extra_headers.len());
        self.common_headers(&mut headers, true, token);
        Some(HttpRequest {
            method: Method::Delete,
            url: self.url.clone(),
            headers,
            body: Vec::new(),
        })
    }

    /// Takes a successful initialize answer: the result object and the
    /// `Mcp-Session-Id` header of that (2xx) response, if any. Never call
    /// this for an error response: Python servers put a throwaway session
    /// id on 400/406 answers.
    pub fn accept_initialize(
        &mut self,
        session_header: Option<&str>,
        result: Value,
    ) -> Result<(), ProtocolError> {
        let offered = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or(ProtocolError::BadInitializeResult)?;
        let version = SUPPORTED_LEGACY_VERSIONS
            .iter()
            .find(|v| **v == offered)
            .ok_or_else(|| ProtocolError::UnsupportedProtocolVersion(offered.to_owned()))?;
        let id = session_header.map(SessionId::parse).transpose()?;
        self.id = id;
        self.version = Some(version);
        self.server = Some(Arc::new(result));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(
            "http://127.0.0.1:1/mcp",
            Protocol::Legacy,
            json!({"name":"t","version":"0"}),
            json!({}),
            &[
                ("X-Trace".into(), "1".into()),
                ("Cookie".into(), "secret-cookie".into()),
            ],
        )
    }

    #[test]
    fn session_id_must_be_visible_ascii() {
        assert!(SessionId::parse("abc-123_XYZ~").is_ok());
        for bad in ["", "a b", "a\u{7f}", "tab\t", "é", "new\nline"] {
            assert_eq!(
                SessionId::parse(bad),
                Err(ProtocolError::InvalidSessionId),
                "{bad:?}"
            );
        }
        assert!(SessionId::parse(&"a".repeat(4097)).is_err());
    }

    #[test]
    fn initialize_carries_no_session_and_captures_the_new_one() {
        let mut s = session();
        s.accept_initialize(Some("old"), json!({"protocolVersion":"2025-06-18"}))
            .unwrap();
        s.forget();
        let init = s.initialize(&RequestId::Number(1), None);
        assert_eq!(init.header("mcp-session-id"), None);
        assert_eq!(init.header("accept"), Some(ACCEPT_POST));
        assert_eq!(init.header("x-trace"), Some("1"));
        assert!(!format!("{init:?}").contains("secret-cookie"));
        s.accept_initialize(
            Some("sess-2"),
            json!({"protocolVersion":"2025-11-25","capabilities":{}}),
        )
        .unwrap();
        let (req, sent) = s.request(&RequestId::Number(2), "tools/list", None, None);
        assert!(sent);
        assert_eq!(req.header("Mcp-Session-Id"), Some("sess-2"));
        assert_eq!(req.header("MCP-Protocol-Version"), Some("2025-11-25"));
        let del = s.delete(Some(&Token::bearer("t"))).unwrap();
        assert_eq!(del.method, Method::Delete);
        assert_eq!(del.header("authorization"), Some("Bearer t"));
    }

    #[test]
    fn rejects_bad_initialize_answers() {
        let mut s = session();
        assert_eq!(
            s.accept_initialize(None, json!({"protocolVersion":"1999-01-01"})),
            Err(ProtocolError::UnsupportedProtocolVersion(
                "1999-01-01".into()
            ))
        );
        assert_eq!(
            s.accept_initialize(None, json!({})),
            Err(ProtocolError::BadInitializeResult)
        );
        assert_eq!(
            s.accept_initialize(Some("bad id"), json!({"protocolVersion":"2025-03-26"})),
            Err(ProtocolError::InvalidSessionId)
        );
        assert_eq!(s.id(), None);
        // Stateless server: no header, no session, still ready.
        s.accept_initialize(None, json!({"protocolVersion":"2025-03-26"}))
            .unwrap();
        assert_eq!(s.id(), None);
        assert_eq!(s.delete(None).map(|r| r.method), None);
    }

    #[test]
    fn modern_requests_carry_meta_and_no_session() {
        let s = Session::new(
            "http://127.0.0.1:1/mcp",
            Protocol::Modern,
            json!({"name":"t","version":"0"}),
            json!({}),
            &[],
        );
        let (req, sent) = s.request(
            &RequestId::Number(1),
            "tools/call",
            Some(&json!({"name":"echo"})),
            None,
        );
        assert!(!sent);
        assert_eq!(req.header("MCP-Protocol-Version"), Some(MODERN_VERSION));
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            MODERN_VERSION
        );
        assert_eq!(body["params"]["name"], "echo");
    }
}
