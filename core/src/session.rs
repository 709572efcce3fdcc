//! The Streamable-HTTP session: what goes on the wire and which session we
//! are in. It builds every request as data (method, URL, headers, body) and
//! takes the initialize answer: protocol version, and the `Mcp-Session-Id`,
//! captured only from a successful initialize and validated as visible ASCII.
//! Decisions about *when* to send belong to [`policy`](crate::policy).

use crate::error::ProtocolError;
use crate::http::{is_sensitive, HttpRequest, Method, Text};
use crate::jsonrpc::{self, RequestId, RpcError};
use crate::param_headers::{encode_text, ParamHeaders};
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
/// Stateless revisions this client speaks, newest first.
pub const SUPPORTED_MODERN_VERSIONS: &[&str] = &[MODERN_VERSION];

/// One protocol revision this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(&'static str);

impl Version {
    /// The revision named `name` (`"2025-06-18"`, `"2026-07-28"`, ...), if
    /// this client speaks it.
    pub fn parse(name: &str) -> Result<Version, ProtocolError> {
        SUPPORTED_MODERN_VERSIONS
            .iter()
            .chain(SUPPORTED_LEGACY_VERSIONS)
            .find(|v| **v == name)
            .map(|v| Version(v))
            .ok_or_else(|| ProtocolError::UnsupportedProtocolVersion(crate::error::sanitize(name)))
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Whether it is a stateless (2026-07-28 and later) revision.
    pub fn is_stateless(self) -> bool {
        SUPPORTED_MODERN_VERSIONS.contains(&self.0)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Which revision to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// Find out (the default): ask `server/discover` at the newest
    /// stateless revision; a server that does not answer it as a
    /// 2026-07-28 server gets the `initialize` handshake. Kept per client;
    /// asked again when a server is found speaking the other wire.
    #[default]
    Auto,
    /// 2024-11-05 … 2025-11-25: `initialize` handshake, `Mcp-Session-Id`;
    /// the server picks the revision among those we speak.
    Legacy,
    /// 2026-07-28: no handshake, no session; version and client identity
    /// travel in every request's `_meta`. A 404 is an unknown method, never
    /// an expired session.
    Modern,
    /// Exactly this revision, on its wire.
    Pinned(Version),
}

impl Protocol {
    /// `auto`, `legacy`, `modern` or a revision's date.
    pub fn parse(s: &str) -> Result<Protocol, ProtocolError> {
        match s {
            "auto" => Ok(Protocol::Auto),
            "legacy" => Ok(Protocol::Legacy),
            "modern" => Ok(Protocol::Modern),
            v => Version::parse(v).map(Protocol::Pinned),
        }
    }

    /// The stateless revision this setting starts on, if it is fixed to one.
    pub(crate) fn fixed_stateless(self) -> Option<&'static str> {
        match self {
            Protocol::Modern => Some(MODERN_VERSION),
            Protocol::Pinned(v) if v.is_stateless() => Some(v.0),
            _ => None,
        }
    }
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
    /// Whether the stateless (2026-07-28) wire is in use.
    stateless: bool,
    /// Kept as its JSON text, not as a `Value`: a parsed result is a tree
    /// of maps (~4 KiB for a typical server), its text a few hundred
    /// bytes, and a process may hold thousands of sessions.
    server: Option<Arc<str>>,
    params: ParamHeaders,
}

const ACCEPT_POST: &str = "application/json, text/event-stream";

/// The supported versions a `-32022` (unsupported protocol version) error
/// names, if it is one.
pub(crate) fn unsupported_version(e: &RpcError) -> Option<Vec<&str>> {
    if e.code != crate::jsonrpc::code::UNSUPPORTED_PROTOCOL_VERSION {
        return None;
    }
    let supported = e
        .data
        .as_ref()
        .and_then(|d| d.get("supported"))
        .and_then(Value::as_array);
    Some(
        supported
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect(),
    )
}

/// The newest stateless revision both sides speak, among `supported`.
pub(crate) fn mutual_stateless(supported: &[&str]) -> Option<&'static str> {
    SUPPORTED_MODERN_VERSIONS
        .iter()
        .copied()
        .find(|v| supported.contains(v))
}

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
        let fixed = protocol.fixed_stateless();
        Session {
            url: url.into(),
            extra_headers,
            protocol,
            client_info,
            capabilities,
            id: None,
            version: fixed,
            stateless: fixed.is_some(),
            server: None,
            params: ParamHeaders::default(),
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The protocol setting.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether the stateless (2026-07-28) wire is in use: no handshake,
    /// no session id, `_meta` on every request.
    pub fn is_stateless(&self) -> bool {
        self.stateless
    }

    /// The current session id, if the server issued one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().map(SessionId::as_str)
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<&'static str> {
        self.version
    }

    /// What the server said about itself: its `InitializeResult`
    /// (capabilities, serverInfo, instructions) on the handshake wire, its
    /// `server/discover` result on the stateless one. Parsed from the text
    /// kept (it was a JSON value when it came).
    pub fn server(&self) -> Option<Value> {
        serde_json::from_str(self.server.as_deref()?).ok()
    }

    /// [`Session::server`] as the JSON text kept, to parse elsewhere (off a
    /// lock, say).
    pub fn server_json(&self) -> Option<Arc<str>> {
        self.server.clone()
    }

    /// Drops the session id and, unless the setting fixes them, the
    /// negotiated version and wire: an initialize that carries a stale id
    /// is rejected by servers, and a re-negotiation starts from nothing.
    pub fn forget(&mut self) {
        self.id = None;
        self.params = ParamHeaders::default();
        if self.protocol.fixed_stateless().is_none() {
            self.version = None;
            self.stateless = false;
        }
    }

    fn post(
        &self,
        body: Vec<u8>,
        in_session: bool,
        token: Option<&Token>,
        routed: Option<&str>,
    ) -> HttpRequest {
        let mut headers = Vec::with_capacity(7 + self.extra_headers.len());
        headers.push((
            Text::Static("Content-Type"),
            Text::Static("application/json"),
        ));
        headers.push((Text::Static("Accept"), Text::Static(ACCEPT_POST)));
        if let Some(method) = routed {
            // SEP-2243: what a gateway routes on without reading the body.
            headers.push((Text::Static("Mcp-Method"), Text::Shared(method.into())));
        }
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
        let asked = match self.protocol {
            Protocol::Pinned(v) if !v.is_stateless() => v.as_str(),
            _ => LATEST_LEGACY_VERSION,
        };
        let params = json!({
            "protocolVersion": asked,
            "capabilities": self.capabilities,
            "clientInfo": self.client_info,
        });
        self.post(
            jsonrpc::encode_request(id, "initialize", Some(&params)),
            false,
            token,
            None,
        )
    }

    /// The `server/discover` request that asks whether the server speaks
    /// the stateless revision `version`.
    pub fn discover(
        &self,
        id: &RequestId,
        version: &'static str,
        token: Option<&Token>,
    ) -> HttpRequest {
        let params = self.with_meta(None, version);
        let mut request = self.post(
            jsonrpc::encode_request(id, "server/discover", Some(&params)),
            false,
            token,
            Some("server/discover"),
        );
        request
            .headers
            .push((Text::Static("MCP-Protocol-Version"), Text::Static(version)));
        request
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
        let Some(version) = self.version.filter(|_| self.stateless) else {
            let body = jsonrpc::encode_request(id, method, params);
            return (self.post(body, true, token, None), self.id.is_some());
        };
        // 2026-07-28 has no `ping`: `server/discover` is the cheapest
        // request every server must answer, so it is what a ping asks.
        let method = if method == "ping" {
            "server/discover"
        } else {
            method
        };
        let body = jsonrpc::encode_request(id, method, Some(&self.with_meta(params, version)));
        let mut request = self.post(body, true, token, Some(method));
        let name = match method {
            "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")),
            "resources/read" => params.and_then(|p| p.get("uri")),
            _ => None,
        };
        if let Some(name) = name.and_then(Value::as_str) {
            request.headers.push((
                Text::Static("Mcp-Name"),
                Text::Shared(encode_text(name).into()),
            ));
        }
        if method == "tools/call" {
            for (n, v) in self.params.headers(params) {
                request
                    .headers
                    .push((Text::Shared(n.into()), Text::Shared(v.into())));
            }
        }
        (request, false)
    }

    /// Learns the `x-mcp-header` parameters of a `tools/list` result on
    /// the stateless wire, and leaves out the tools whose declarations are
    /// invalid. Returns a warning per tool left out.
    pub(crate) fn learn_tools(&mut self, result: &mut Value) -> Vec<String> {
        if !self.stateless {
            return Vec::new();
        }
        self.params.learn(result)
    }

    /// 2026-07-28: every request declares version, identity and capabilities.
    fn with_meta(&self, params: Option<&Value>, version: &'static str) -> Value {
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
                version.into(),
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
        let body = match self.version.filter(|_| self.stateless) {
            Some(version) => {
                jsonrpc::encode_notification(method, Some(&self.with_meta(params, version)))
            }
            None => jsonrpc::encode_notification(method, params),
        };
        self.post(body, true, token, self.stateless.then_some(method))
    }

    /// Our answer to a server's request.
    pub fn response(
        &self,
        id: &RequestId,
        result: &Result<Value, RpcError>,
        token: Option<&Token>,
    ) -> HttpRequest {
        // A response has no method to name.
        self.post(jsonrpc::encode_response(id, result), true, token, None)
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
        let acceptable: &[&'static str] = match self.protocol {
            Protocol::Pinned(v) => &[v.0][..],
            _ => SUPPORTED_LEGACY_VERSIONS,
        };
        let version = acceptable.iter().find(|v| **v == offered).ok_or_else(|| {
            ProtocolError::UnsupportedProtocolVersion(crate::error::sanitize(offered))
        })?;
        let id = session_header.map(SessionId::parse).transpose()?;
        self.id = id;
        self.version = Some(version);
        self.stateless = false;
        self.server = Some(result.to_string().into());
        Ok(())
    }

    /// Takes a `server/discover` answer to a probe at `version`: positive
    /// evidence of a stateless server is a result whose
    /// `supportedVersions` names it. Anything else is not.
    pub fn accept_discover(
        &mut self,
        version: &'static str,
        result: Value,
    ) -> Result<(), ProtocolError> {
        let names_it = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|vs| vs.iter().any(|v| v.as_str() == Some(version)));
        if !names_it {
            return Err(ProtocolError::BadDiscoverResult);
        }
        self.id = None;
        self.version = Some(version);
        self.stateless = true;
        self.server = Some(result.to_string().into());
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
