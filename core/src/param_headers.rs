//! `Mcp-Param-*` headers (2026-07-28, SEP-2243): a tool marks input
//! parameters with `x-mcp-header` so that gateways can route on them
//! without reading the body; the client mirrors each such argument into a
//! header. A tool whose declarations are invalid is left out of the tools
//! the application sees, so nothing is ever sent with a header the server
//! would reject or mis-route on.

use serde_json::Value;
use std::collections::BTreeMap;

/// The most tools whose declarations are kept: a server listing more (an
/// endless listing) does not grow the table past it. Tools past it are
/// called without parameter headers, which a server that needs them
/// answers with an error, never a silent mis-route by us.
const MAX_TOOLS: usize = 10_000;

/// One tool's mirrored parameters: (path of `properties` keys to the
/// argument, header suffix).
type Declared = Vec<(Vec<String>, String)>;

/// The `x-mcp-header` declarations of the tools listed so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct ParamHeaders {
    tools: BTreeMap<String, Declared>,
}

/// Why a header name is refused.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("an empty x-mcp-header");
    }
    // An HTTP token (RFC 9110 tchar): no space, no colon, no control
    // character, ASCII only.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(tchar) {
        return Err("an x-mcp-header that is not an HTTP token");
    }
    Ok(())
}

/// JSON Schema keywords whose values are schemas (or arrays or maps of
/// them) other than `properties`: a declaration under one of them is not
/// statically reachable from the arguments.
const SUBSCHEMA_ONE: &[&str] = &[
    "items",
    "contains",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
];
const SUBSCHEMA_MANY: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const SUBSCHEMA_MAP: &[&str] = &[
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Declarations one tool may make; a tool with more is left out (a header
/// per argument beyond this is a hostile schema, not a routing key).
const MAX_DECLARATIONS: usize = 64;

/// Schemas nested deeper than this are not searched further; their
/// declarations, if any, are left out (a server sending such a schema
/// has bigger problems).
const MAX_DEPTH: usize = 32;

/// Walks a schema: `path` is where it sits in the arguments, `None` when it
/// is not reachable by `properties` keys alone.
fn walk(
    schema: &Value,
    path: Option<&[String]>,
    depth: usize,
    out: &mut Declared,
) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Ok(());
    };
    if depth > MAX_DEPTH {
        return Ok(());
    }
    if let Some(header) = obj.get("x-mcp-header") {
        let at = path
            .filter(|p| !p.is_empty())
            .ok_or_else(|| "x-mcp-header off the chain of `properties` from the root".to_owned())?;
        let arg = at.join(".");
        let header = header
            .as_str()
            .ok_or_else(|| format!("parameter `{arg}`: x-mcp-header is not a string"))?;
        check_name(header).map_err(|why| format!("parameter `{arg}`: {why}"))?;
        // Only values with one plain text form: strings, integers, booleans.
        let primitive = matches!(
            obj.get("type").and_then(Value::as_str),
            Some("string" | "integer" | "boolean")
        );
        if !primitive {
            return Err(format!(
                "parameter `{arg}`: x-mcp-header on a type other than string, integer or boolean"
            ));
        }
        // At most MAX_DECLARATIONS entries: a linear scan stays cheap.
        if out.len() >= MAX_DECLARATIONS {
            return Err(format!(
                "more than {MAX_DECLARATIONS} x-mcp-header declarations"
            ));
        }
        if out.iter().any(|(_, h)| h.eq_ignore_ascii_case(header)) {
            return Err(format!("x-mcp-header `{header}` declared twice"));
        }
        out.push((at.to_vec(), header.to_owned()));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let inner = path.map(|p| {
                let mut v = p.to_vec();
                v.push(name.clone());
                v
            });
            walk(sub, inner.as_deref(), depth + 1, out)?;
        }
    }
    for (key, value) in obj {
        let k = key.as_str();
        if SUBSCHEMA_ONE.contains(&k) {
            walk(value, None, depth + 1, out)?;
        } else if SUBSCHEMA_MANY.contains(&k) {
            for sub in value.as_array().into_iter().flatten() {
                walk(sub, None, depth + 1, out)?;
            }
        } else if SUBSCHEMA_MAP.contains(&k) {
            for sub in value.as_object().into_iter().flat_map(|m| m.values()) {
                walk(sub, None, depth + 1, out)?;
            }
        }
    }
    Ok(())
}

/// The declarations of one tool, or why it is left out.
fn declarations(tool: &Value) -> Result<Declared, String> {
    let mut declared = Vec::new();
    if let Some(schema) = tool.get("inputSchema") {
        walk(schema, Some(&[]), 0, &mut declared)?;
    }
    Ok(declared)
}

impl ParamHeaders {
    /// Learns the declarations of a `tools/list` result and removes the
    /// tools whose declarations are invalid from it. Returns one warning
    /// per tool left out.
    pub(crate) fn learn(&mut self, result: &mut Value) -> Vec<String> {
        let mut warnings = Vec::new();
        let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
            return warnings;
        };
        tools.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return true;
            };
            match declarations(tool) {
                Ok(declared) => {
                    if declared.is_empty() {
                        self.tools.remove(name);
                    } else if self.tools.len() < MAX_TOOLS || self.tools.contains_key(name) {
                        self.tools.insert(name.to_owned(), declared);
                    }
                    true
                }
                Err(why) => {
                    self.tools.remove(name);
                    warnings.push(format!(
                        "tool `{}` left out: {}",
                        crate::error::sanitize(name),
                        crate::error::sanitize(&why)
                    ));
                    false
                }
            }
        });
        warnings
    }

    /// The `Mcp-Param-*` headers of a `tools/call` with these params.
    pub(crate) fn headers(&self, params: Option<&Value>) -> Vec<(String, String)> {
        let Some(params) = params else {
            return Vec::new();
        };
        let Some(declared) = params
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| self.tools.get(n))
        else {
            return Vec::new();
        };
        let arguments = params.get("arguments");
        declared
            .iter()
            .filter_map(|(path, header)| {
                let value = path.iter().try_fold(arguments?, |v, key| v.get(key))?;
                Some((format!("Mcp-Param-{header}"), encode(value)?))
            })
            .collect()
    }
}

/// A header value for an argument: strings as they are when they are plain
/// visible ASCII without edge whitespace, else `=?base64?…?=` of their
/// UTF-8; integers and booleans in their JSON form; null (and anything
/// else) gets no header.
pub(crate) fn encode(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(encode_text(s)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A text header value (an `Mcp-Name`, an argument): the base64 form where
/// the plain one would not survive HTTP.
pub(crate) fn encode_text(s: &str) -> String {
    // A plain value that looks like the encoded form is encoded too, so
    // the server never decodes what was meant literally.
    let sentinel = s.starts_with("=?base64?") && s.ends_with("?=");
    let plain = s.bytes().all(|b| (0x20..=0x7e).contains(&b)) && s.trim() == s && !sentinel;
    if plain {
        s.to_owned()
    } else {
        format!("=?base64?{}?=", crate::oauth::base64(s.as_bytes(), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_encoded_as_the_spec_says() {
        assert_eq!(encode(&json!("us-west1")).as_deref(), Some("us-west1"));
        assert_eq!(encode(&json!("us west 1")).as_deref(), Some("us west 1"));
        assert_eq!(encode(&json!("")).as_deref(), Some(""));
        assert_eq!(encode(&json!(42)).as_deref(), Some("42"));
        assert_eq!(encode(&json!(false)).as_deref(), Some("false"));
        assert_eq!(encode(&json!(null)), None);
        assert_eq!(
            encode(&json!("Hello, 世界")).as_deref(),
            Some("=?base64?SGVsbG8sIOS4lueVjA==?=")
        );
        assert_eq!(
            encode(&json!(" padded ")).as_deref(),
            Some("=?base64?IHBhZGRlZCA=?=")
        );
        assert_eq!(
            encode(&json!("line1\r\nline2")).as_deref(),
            Some("=?base64?bGluZTENCmxpbmUy?=")
        );
        assert_eq!(
            encode(&json!("\tindented")).as_deref(),
            Some("=?base64?CWluZGVudGVk?=")
        );
        assert_eq!(
            encode(&json!("=?base64?literal?=")).as_deref(),
            Some("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=")
        );
    }

    #[test]
    fn invalid_declarations_leave_the_tool_out() {
        let schema = |props: Value| json!({"type": "object", "properties": props});
        let mut result = json!({"tools": [
            {"name": "ok", "inputSchema": schema(json!({
                "region": {"type": "string", "x-mcp-header": "Region"},
                "n": {"type": "integer", "x-mcp-header": "N"},
                "q": {"type": "string"}}))},
            {"name": "empty", "inputSchema": schema(json!({"v": {"type": "string", "x-mcp-header": ""}}))},
            {"name": "object", "inputSchema": schema(json!({"v": {"type": "object", "x-mcp-header": "V"}}))},
            {"name": "number", "inputSchema": schema(json!({"v": {"type": "number", "x-mcp-header": "V"}}))},
            {"name": "dup", "inputSchema": schema(json!({
                "a": {"type": "string", "x-mcp-header": "MyField"},
                "b": {"type": "string", "x-mcp-header": "myfield"}}))},
            {"name": "space", "inputSchema": schema(json!({"v": {"type": "string", "x-mcp-header": "My Region"}}))},
            {"name": "colon", "inputSchema": schema(json!({"v": {"type": "string", "x-mcp-header": "A:B"}}))},
            {"name": "accent", "inputSchema": schema(json!({"v": {"type": "string", "x-mcp-header": "Région"}}))},
            {"name": "tab", "inputSchema": schema(json!({"v": {"type": "string", "x-mcp-header": "R\t1"}}))},
            {"name": "plain", "inputSchema": schema(json!({"v": {"type": "number"}}))},
            {"name": "nested", "inputSchema": schema(json!({"where": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"}}}}))},
            {"name": "in-items", "inputSchema": schema(json!({"list": {"type": "array", "items": {
                "type": "string", "x-mcp-header": "Item"}}}))},
            {"name": "in-anyof", "inputSchema": {"type": "object", "anyOf": [
                {"properties": {"v": {"type": "string", "x-mcp-header": "V"}}}]}},
            {"name": "nullable", "inputSchema": schema(json!({"v": {"type": ["string", "null"], "x-mcp-header": "V"}}))},
        ]});
        let mut p = ParamHeaders::default();
        let warnings = p.learn(&mut result);
        let kept: Vec<&str> = result["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(kept, ["ok", "plain", "nested"]);
        assert_eq!(warnings.len(), 11, "{warnings:?}");
        let headers = p.headers(Some(&json!({
            "name": "ok", "arguments": {"region": " x", "n": 7, "q": "SELECT"}})));
        assert_eq!(
            headers,
            [
                ("Mcp-Param-N".to_owned(), "7".to_owned()),
                ("Mcp-Param-Region".to_owned(), "=?base64?IHg=?=".to_owned()),
            ]
        );
        assert!(p
            .headers(Some(&json!({"name": "ok", "arguments": {"region": null}})))
            .is_empty());
        assert!(p
            .headers(Some(&json!({"name": "plain", "arguments": {"v": 1}})))
            .is_empty());
        assert_eq!(
            p.headers(Some(
                &json!({"name": "nested", "arguments": {"where": {"region": "eu"}}})
            )),
            [("Mcp-Param-Region".to_owned(), "eu".to_owned())]
        );
    }
}
