//! JSON-RPC 2.0 messages as MCP uses them: ids, errors, parsing of what a
//! server sends (a single message or a batch), encoding of what we send.

use serde_json::{Map, Value};
use std::fmt;

/// Standard and MCP error codes the core reasons about.
pub mod code {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist. A 404 carrying this code is "unknown
    /// method", never "session expired".
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// 2026-07-28: the server does not speak the requested protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// A JSON-RPC request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestId {
    /// A numeric id (what this crate generates).
    Number(i64),
    /// A string id (servers may use these for their own requests).
    String(String),
}

impl RequestId {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_i64().map(RequestId::Number),
            Value::String(s) => Some(RequestId::String(s.clone())),
            _ => None,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            RequestId::Number(n) => Value::from(*n),
            RequestId::String(s) => Value::from(s.as_str()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// A JSON-RPC error object: an answer from the server, not a failure to
/// reach it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// The human-readable message.
    pub message: String,
    /// Optional structured detail.
    pub data: Option<Value>,
}

impl RpcError {
    /// A new error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn from_value(v: &Value) -> Option<Self> {
        let obj = v.as_object()?;
        Some(RpcError {
            code: obj.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: obj
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            data: obj.get("data").cloned(),
        })
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.code));
        m.insert("message".into(), Value::from(self.message.as_str()));
        if let Some(d) = &self.data {
            m.insert("data".into(), d.clone());
        }
        Value::Object(m)
    }
}

/// One message received from a server.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// A request the server sends to the client (sampling, elicitation,
    /// roots, ping); it expects a reply.
    Request {
        /// Its id, to answer with.
        id: RequestId,
        /// The method.
        method: String,
        /// The parameters, if any.
        params: Option<Value>,
    },
    /// A notification (progress, logging, list changed, ...).
    Notification {
        /// The method.
        method: String,
        /// The parameters, if any.
        params: Option<Value>,
    },
    /// A response to one of our requests. `id` is `None` when the server
    /// answered with `"id": null` (it could not read our id).
    Response {
        /// The id of the request it answers.
        id: Option<RequestId>,
        /// The result, or the server's error.
        result: Result<Value, RpcError>,
    },
}

/// Why a body is not JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not JSON at all.
    #[error("body is not JSON: {0}")]
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message")]
    NotJsonRpc,
}

impl Message {
    /// Reads one message from a JSON value.
    pub fn from_value(v: Value) -> Result<Self, MessageError> {
        let Value::Object(mut obj) = v else {
            return Err(MessageError::NotJsonRpc);
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(MessageError::NotJsonRpc);
        }
        let params = obj.remove("params");
        if let Some(Value::String(method)) = obj.remove("method") {
            return Ok(match obj.get("id").and_then(RequestId::from_value) {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            });
        }
        let id = obj.get("id").and_then(RequestId::from_value);
        if let Some(result) = obj.remove("result") {
            return Ok(Message::Response {
                id,
                result: Ok(result),
            });
        }
        if let Some(err) = obj.get("error").and_then(RpcError::from_value) {
            return Ok(Message::Response {
                id,
                result: Err(err),
            });
        }
        Err(MessageError::NotJsonRpc)
    }
}

/// Parses a JSON body holding one message or a batch (array) of them.
pub fn parse_body(bytes: &[u8]) -> Result<Vec<Message>, MessageError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| MessageError::Json(e.to_string()))?;
    match v {
        Value::Array(items) => items.into_iter().map(Message::from_value).collect(),
        other => Message::from_value(other).map(|m| vec![m]),
    }
}

/// The `error` object of a body, if the body is a JSON-RPC error response.
/// Used to read the bodies of HTTP error statuses.
pub(crate) fn error_of_body(bytes: &[u8]) -> Option<RpcError> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    RpcError::from_value(obj.get("error")?)
}

/// Whether an error body answers no request in particular: not JSON-RPC at
/// all, or an error with `"id": null` (or none). That is how transports
/// refuse a request they did not hand to the application (no session, a
/// header missing); an application's own error carries the request's id.
pub(crate) fn is_transport_rejection(bytes: &[u8]) -> bool {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(bytes) else {
        return true;
    };
    obj.get("error").is_none() || obj.get("id").is_none_or(Value::is_null)
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Writing a Value into a Vec cannot fail: no I/O, and every Value
    // (string keys, finite numbers) is representable.
    serde_json::to_writer(&mut *out, v).expect("serializing a serde_json::Value into a Vec");
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("serializing a str into a Vec");
}

/// Encodes a request: `{"jsonrpc":"2.0","id":..,"method":..,"params":..}`.
pub fn encode_request(id: &RequestId, method: &str, params: Option<&Value>) -> Vec<u8> {
    encode_call(Some(id), method, params)
}

/// Encodes a notification (no id).
pub fn encode_notification(method: &str, params: Option<&Value>) -> Vec<u8> {
    encode_call(None, method, params)
}

fn encode_call(id: Option<&RequestId>, method: &str, params: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + method.len() + params.map_or(0, |_| 64));
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        write_json(&mut out, &id.to_value());
        out.push(b',');
    }
    out.extend_from_slice(br#""method":"#);
    write_str(&mut out, method);
    if let Some(p) = params {
        out.extend_from_slice(br#","params":"#);
        write_json(&mut out, p);
    }
    out.push(b'}');
    out
}

/// Encodes a response to a server's request.
pub fn encode_response(id: &RequestId, result: &Result<Value, RpcError>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    write_json(&mut out, &id.to_value());
    match result {
        Ok(v) => {
            out.extend_from_slice(br#","result":"#);
            write_json(&mut out, v);
        }
        Err(e) => {
            out.extend_from_slice(br#","error":"#);
            write_json(&mut out, &e.to_value());
        }
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_kind() {
        let msgs = parse_body(
            br#"[{"jsonrpc":"2.0","id":1,"result":{"x":1}},
                 {"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"nope"}},
                 {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}},
                 {"jsonrpc":"2.0","id":7,"method":"sampling/createMessage"}]"#,
        )
        .unwrap();
        assert_eq!(
            msgs[0],
            Message::Response {
                id: Some(RequestId::Number(1)),
                result: Ok(json!({"x":1}))
            }
        );
        assert!(
            matches!(&msgs[1], Message::Response { id: Some(RequestId::String(s)), result: Err(e) } if s == "a" && e.code == -32601)
        );
        assert!(
            matches!(&msgs[2], Message::Notification { method, .. } if method == "notifications/progress")
        );
        assert!(
            matches!(&msgs[3], Message::Request { id: RequestId::Number(7), method, params: None } if method == "sampling/createMessage")
        );
    }

    #[test]
    fn null_id_error_is_a_response_without_id() {
        let m = parse_body(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#,
        )
        .unwrap();
        assert!(
            matches!(&m[0], Message::Response { id: None, result: Err(e) } if e.message == "Session not found")
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse_body(b"<html>"), Err(MessageError::Json(_))));
        assert_eq!(parse_body(b"{}"), Err(MessageError::NotJsonRpc));
        assert_eq!(
            parse_body(br#"{"jsonrpc":"1.0","id":1,"result":1}"#),
            Err(MessageError::NotJsonRpc)
        );
        assert_eq!(parse_body(b"42"), Err(MessageError::NotJsonRpc));
    }

    #[test]
    fn encodes_round_trip() {
        let body = encode_request(
            &RequestId::Number(3),
            "tools/call",
            Some(&json!({"name":"echo"})),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}})
        );
        let n = encode_notification("notifications/initialized", None);
        assert_eq!(
            n,
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        );
        let r = encode_response(
            &RequestId::String("s".into()),
            &Err(RpcError::new(-32601, "x")),
        );
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"s","error":{"code":-32601,"message":"x"}})
        );
    }
}
