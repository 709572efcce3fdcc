//! What a caller asks the server for, and whether it is safe to replay
//! (behaviour contract item 5).

use serde_json::{Map, Value};
use std::borrow::Cow;

/// Methods that only read: replaying them after an ambiguous transport
/// failure cannot run anything twice.
const IDEMPOTENT_METHODS: &[&str] = &[
    "ping",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "server/discover",
];

/// Whether `method` is read-only by the MCP specification.
pub fn is_idempotent_method(method: &str) -> bool {
    IDEMPOTENT_METHODS.contains(&method)
}

/// One JSON-RPC request a caller wants answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    method: Cow<'static, str>,
    params: Option<Value>,
    idempotent: bool,
}

fn with_cursor(mut params: Map<String, Value>, cursor: Option<&str>) -> Option<Value> {
    if let Some(c) = cursor {
        params.insert("cursor".into(), c.into());
    }
    (!params.is_empty()).then_some(Value::Object(params))
}

impl Operation {
    /// Any method. Replay-safe when the method is read-only by the
    /// specification; use [`Operation::idempotent`] to say more.
    pub fn new(method: impl Into<Cow<'static, str>>, params: Option<Value>) -> Self {
        let method = method.into();
        let idempotent = is_idempotent_method(&method);
        Operation {
            method,
            params,
            idempotent,
        }
    }

    /// `tools/call`. Not replay-safe unless the tool is annotated
    /// `readOnlyHint`/`idempotentHint` or the caller opts in with
    /// [`Operation::idempotent`].
    pub fn call_tool(name: &str, arguments: Value) -> Self {
        let mut p = Map::new();
        p.insert("name".into(), name.into());
        p.insert("arguments".into(), arguments);
        Operation::new("tools/call", Some(Value::Object(p)))
    }

    /// `tools/list`, optionally from a pagination cursor.
    pub fn list_tools(cursor: Option<&str>) -> Self {
        Operation::new("tools/list", with_cursor(Map::new(), cursor))
    }

    /// `resources/list`, optionally from a pagination cursor.
    pub fn list_resources(cursor: Option<&str>) -> Self {
        Operation::new("resources/list", with_cursor(Map::new(), cursor))
    }

    /// `resources/read`.
    pub fn read_resource(uri: &str) -> Self {
        let mut p = Map::new();
        p.insert("uri".into(), uri.into());
        Operation::new("resources/read", Some(Value::Object(p)))
    }

    /// `prompts/list`, optionally from a pagination cursor.
    pub fn list_prompts(cursor: Option<&str>) -> Self {
        Operation::new("prompts/list", with_cursor(Map::new(), cursor))
    }

    /// `prompts/get` with optional string arguments.
    pub fn get_prompt(name: &str, arguments: Option<Value>) -> Self {
        let mut p = Map::new();
        p.insert("name".into(), name.into());
        if let Some(a) = arguments {
            p.insert("arguments".into(), a);
        }
        Operation::new("prompts/get", Some(Value::Object(p)))
    }

    /// `ping`.
    pub fn ping() -> Self {
        Operation::new("ping", None)
    }

    /// Declares whether replaying this operation after an ambiguous failure
    /// is safe: pass the tool's `readOnlyHint || idempotentHint`, or your
    /// own knowledge.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// The JSON-RPC method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The parameters.
    pub fn params(&self) -> Option<&Value> {
        self.params.as_ref()
    }

    /// Whether it may be replayed after an ambiguous transport failure.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replay_safety_by_method() {
        assert!(!Operation::call_tool("x", json!({})).is_idempotent());
        assert!(Operation::call_tool("x", json!({}))
            .idempotent(true)
            .is_idempotent());
        assert!(Operation::list_tools(None).is_idempotent());
        assert!(Operation::read_resource("a://b").is_idempotent());
        assert!(Operation::get_prompt("p", None).is_idempotent());
        assert!(!Operation::new("custom/write", None).is_idempotent());
        assert_eq!(
            Operation::list_prompts(Some("c1")).params(),
            Some(&json!({"cursor":"c1"}))
        );
        assert_eq!(Operation::list_prompts(None).params(), None);
    }
}
