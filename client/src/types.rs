//! Typed MCP results. Every type keeps the fields it does not name in
//! `extra`, and every client has a raw `request` method,
//! so nothing the server sends is out of reach.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Fields a type does not name.
pub type Extra = Map<String, Value>;

/// A tool offered by the server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Tool {
    /// Its name, for `call_tool`.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    #[serde(default)]
    pub input_schema: Value,
    /// JSON Schema of its `structuredContent`, if it declares one: the
    /// client checks every result of a listed tool against it
    /// ([`Error::InvalidOutput`](crate::Error::InvalidOutput)).
    pub output_schema: Option<Value>,
    /// Behaviour hints.
    #[serde(default)]
    pub annotations: ToolAnnotations,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool's behaviour hints (untrusted: they come from the server).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolAnnotations {
    /// A human-readable title.
    pub title: Option<String>,
    /// The tool does not change anything.
    pub read_only_hint: Option<bool>,
    /// Calling it again with the same arguments has no further effect.
    pub idempotent_hint: Option<bool>,
    /// It may destroy something.
    pub destructive_hint: Option<bool>,
    /// It talks to the outside world.
    pub open_world_hint: Option<bool>,
}

impl Tool {
    /// Whether a call may be replayed after an ambiguous transport failure:
    /// the server says it is read-only or idempotent.
    pub fn replay_safe(&self) -> bool {
        let a = &self.annotations;
        a.read_only_hint == Some(true) || a.idempotent_hint == Some(true)
    }
}

/// One page of `tools/list`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolList {
    /// The tools.
    pub tools: Vec<Tool>,
    /// Pass to the next `list_tools` for the next page.
    pub next_cursor: Option<String>,
}

/// One piece of content in a tool result or prompt message. A kind this
/// client does not know, or a known kind without its required fields, is
/// kept whole as [`Content::Unknown`]: nothing the server sent is lost.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Content {
    /// `text`.
    Text(TextContent),
    /// `image`: base64 data and its MIME type.
    Image(BinaryContent),
    /// `audio`: base64 data and its MIME type.
    Audio(BinaryContent),
    /// `resource_link`: a resource the client may read (`read_resource`).
    ResourceLink(Resource),
    /// `resource`: a resource's contents, embedded.
    Resource(EmbeddedResource),
    /// Any other kind, as the server sent it.
    Unknown(Value),
}

/// Text content.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[non_exhaustive]
pub struct TextContent {
    /// The text.
    pub text: String,
    /// Everything else (annotations, `_meta`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Image or audio content.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BinaryContent {
    /// The bytes, base64.
    pub data: String,
    /// Their MIME type.
    pub mime_type: String,
    /// Everything else (annotations, `_meta`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A resource embedded in a result.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[non_exhaustive]
pub struct EmbeddedResource {
    /// Its contents.
    pub resource: ResourceContents,
    /// Everything else (annotations, `_meta`).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Content {
    /// The text, for text content.
    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(&t.text),
            _ => None,
        }
    }

    /// The `type` the server gave it.
    pub fn kind(&self) -> &str {
        match self {
            Content::Text(_) => "text",
            Content::Image(_) => "image",
            Content::Audio(_) => "audio",
            Content::ResourceLink(_) => "resource_link",
            Content::Resource(_) => "resource",
            Content::Unknown(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// Back to JSON, as the server sent it (fields in another order).
    pub fn to_value(&self) -> Value {
        let body = match self {
            Content::Text(t) => serde_json::to_value(t),
            Content::Image(b) | Content::Audio(b) => serde_json::to_value(b),
            Content::ResourceLink(r) => serde_json::to_value(r),
            Content::Resource(e) => serde_json::to_value(e),
            Content::Unknown(v) => return v.clone(),
        };
        let mut body = body.unwrap_or(Value::Null);
        if let Some(m) = body.as_object_mut() {
            m.insert("type".into(), self.kind().into());
        }
        body
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let Some(kind) = raw.get("type").and_then(Value::as_str) else {
            return Ok(Content::Unknown(raw));
        };
        // The typed structs keep unnamed fields in `extra`: `type` is the
        // variant, not one of them.
        let mut body = raw.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("type");
        }
        let typed = match kind {
            "text" => serde_json::from_value(body).map(Content::Text),
            "image" => serde_json::from_value(body).map(Content::Image),
            "audio" => serde_json::from_value(body).map(Content::Audio),
            "resource_link" => serde_json::from_value(body).map(Content::ResourceLink),
            "resource" => serde_json::from_value(body).map(Content::Resource),
            _ => return Ok(Content::Unknown(raw)),
        };
        Ok(typed.unwrap_or(Content::Unknown(raw)))
    }
}

/// The result of `tools/call`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolResult {
    /// What the tool returned.
    #[serde(default)]
    pub content: Vec<Content>,
    /// Structured output, if the tool declares an output schema.
    pub structured_content: Option<Value>,
    /// The tool itself failed (its error is in `content`).
    #[serde(default)]
    pub is_error: bool,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ToolResult {
    /// The text blocks, joined by newlines.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self.content.iter().filter_map(Content::text).collect();
        texts.join("\n")
    }
}

/// A resource offered by the server (or linked from a tool result).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Resource {
    /// Its URI, for `read_resource`.
    pub uri: String,
    /// Its name.
    pub name: String,
    /// What it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One page of `resources/list`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResourceList {
    /// The resources.
    pub resources: Vec<Resource>,
    /// Pass to the next `list_resources` for the next page.
    pub next_cursor: Option<String>,
}

/// One item of a `resources/read` result.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResourceContents {
    /// The URI it came from.
    pub uri: String,
    /// Its MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Text contents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Binary contents, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// Everything else (`_meta`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The result of `resources/read`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct ResourceRead {
    /// The contents.
    pub contents: Vec<ResourceContents>,
}

/// A prompt offered by the server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct Prompt {
    /// Its name, for `get_prompt`.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub arguments: Vec<PromptArgument>,
}

/// An argument of a prompt.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct PromptArgument {
    /// Its name.
    pub name: String,
    /// What it means.
    pub description: Option<String>,
    /// Whether it must be given.
    #[serde(default)]
    pub required: bool,
}

/// One page of `prompts/list`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PromptList {
    /// The prompts.
    pub prompts: Vec<Prompt>,
    /// Pass to the next `list_prompts` for the next page.
    pub next_cursor: Option<String>,
}

/// A message of a prompt.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct PromptMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// What it says.
    pub content: Content,
}

/// The result of `prompts/get`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct PromptResult {
    /// What the prompt is for.
    pub description: Option<String>,
    /// Its messages.
    pub messages: Vec<PromptMessage>,
}

/// A progress notification for a call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Progress so far (grows with every notification).
    pub progress: f64,
    /// The total, if known.
    pub total: Option<f64>,
    /// A description, if any.
    pub message: Option<String>,
}

impl Progress {
    /// Reads the params of a `notifications/progress`.
    pub fn from_params(params: &Value) -> Option<Progress> {
        Some(Progress {
            progress: params.get("progress")?.as_f64()?,
            total: params.get("total").and_then(Value::as_f64),
            message: params
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// A root: a directory or file the client lets the server work in
/// (`roots/list`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[non_exhaustive]
pub struct Root {
    /// Its URI (`file:///home/me/project`).
    pub uri: String,
    /// A name for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Root {
    /// A root at `uri`.
    pub fn new(uri: impl Into<String>) -> Self {
        Root {
            uri: uri.into(),
            name: None,
        }
    }

    /// With a name for people.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A log message of the server (`notifications/message`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct LogMessage {
    /// `debug` ... `emergency`.
    pub level: String,
    /// Which part of the server logged it.
    pub logger: Option<String>,
    /// What it says: a string or any JSON.
    #[serde(default)]
    pub data: Value,
}

/// What the server tells the client on its own, typed
/// ([`ServerHandler::on_notification`](crate::ServerHandler::on_notification)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notification {
    /// `notifications/tools/list_changed`: the client has already
    /// forgotten what the old listing said (output schemas, replay safety).
    ToolsListChanged,
    /// `notifications/resources/list_changed`.
    ResourcesListChanged,
    /// `notifications/prompts/list_changed`.
    PromptsListChanged,
    /// `notifications/resources/updated`: a subscribed resource changed.
    ResourceUpdated {
        /// The resource.
        uri: String,
    },
    /// `notifications/message`: a log message.
    Log(LogMessage),
    /// `notifications/progress` that reached no call (a call's own goes
    /// to its progress callback).
    Progress(Progress),
    /// `notifications/cancelled`: the server gave up on a request of its own.
    Cancelled {
        /// The request's id.
        request_id: Value,
        /// Why, if it says.
        reason: Option<String>,
    },
    /// Anything else, as it came.
    Other {
        /// The method.
        method: String,
        /// Its params.
        params: Option<Value>,
    },
}

impl Notification {
    /// Types a notification; one that does not have the shape its method
    /// promises is [`Notification::Other`].
    pub fn parse(method: &str, params: Option<Value>) -> Notification {
        let p = params.as_ref();
        let typed = match method {
            "notifications/tools/list_changed" => Some(Notification::ToolsListChanged),
            "notifications/resources/list_changed" => Some(Notification::ResourcesListChanged),
            "notifications/prompts/list_changed" => Some(Notification::PromptsListChanged),
            "notifications/resources/updated" => p
                .and_then(|p| p.get("uri")?.as_str())
                .map(|uri| Notification::ResourceUpdated { uri: uri.into() }),
            "notifications/message" => p
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .map(Notification::Log),
            "notifications/progress" => p
                .and_then(Progress::from_params)
                .map(Notification::Progress),
            "notifications/cancelled" => p.and_then(|p| {
                Some(Notification::Cancelled {
                    request_id: p.get("requestId")?.clone(),
                    reason: p.get("reason").and_then(Value::as_str).map(str::to_owned),
                })
            }),
            _ => None,
        };
        typed.unwrap_or_else(|| Notification::Other {
            method: method.to_owned(),
            params,
        })
    }
}

/// What the server asks the client, typed
/// ([`ServerHandler::on_request`](crate::ServerHandler::on_request)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerRequest {
    /// `elicitation/create`: ask the user.
    Elicit(ElicitRequest),
    /// `sampling/createMessage`: run the model (params as they came).
    CreateMessage(Value),
    /// `roots/list` (answered by the client itself when it was given
    /// roots: [`ClientBuilder::roots`](crate::ClientBuilder::roots)).
    ListRoots,
    /// `ping`.
    Ping,
    /// Anything else, as it came.
    Other {
        /// The method.
        method: String,
        /// Its params.
        params: Option<Value>,
    },
}

/// An `elicitation/create` request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ElicitRequest {
    /// What to ask the user.
    pub message: String,
    /// `form` (the default) or `url`.
    pub mode: Option<String>,
    /// For a form: the JSON Schema of the answer.
    pub requested_schema: Option<Value>,
    /// For `url` mode: where to send the user.
    pub url: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The user's answer to an elicitation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ElicitResponse {
    /// They answered: the content (an object matching the schema).
    Accept(Value),
    /// They said no.
    Decline,
    /// They dismissed it.
    Cancel,
}

impl ElicitResponse {
    /// The `elicitation/create` result.
    pub fn to_value(&self) -> Value {
        match self {
            ElicitResponse::Accept(content) => {
                serde_json::json!({"action": "accept", "content": content})
            }
            ElicitResponse::Decline => serde_json::json!({"action": "decline"}),
            ElicitResponse::Cancel => serde_json::json!({"action": "cancel"}),
        }
    }
}

impl ServerRequest {
    /// Types a server request; one that does not have the shape its
    /// method promises is [`ServerRequest::Other`].
    pub fn parse(method: &str, params: Option<Value>) -> ServerRequest {
        let typed = match method {
            "elicitation/create" => params
                .as_ref()
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .map(ServerRequest::Elicit),
            "sampling/createMessage" => params.clone().map(ServerRequest::CreateMessage),
            "roots/list" => Some(ServerRequest::ListRoots),
            "ping" => Some(ServerRequest::Ping),
            _ => None,
        };
        typed.unwrap_or_else(|| ServerRequest::Other {
            method: method.to_owned(),
            params,
        })
    }
}

/// A resource template offered by the server (RFC 6570 URI template).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResourceTemplate {
    /// The URI template, e.g. `greeting://{name}`.
    pub uri_template: String,
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: Option<String>,
    /// The MIME type of what it yields.
    pub mime_type: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One page of `resources/templates/list`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResourceTemplateList {
    /// The templates.
    pub resource_templates: Vec<ResourceTemplate>,
    /// Pass to the next `list_resource_templates` for the next page.
    pub next_cursor: Option<String>,
}

/// What `completion/complete` completes an argument of.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CompletionRef {
    /// A prompt, by name.
    Prompt(String),
    /// A resource template, by URI template.
    Resource(String),
}

impl CompletionRef {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            CompletionRef::Prompt(name) => serde_json::json!({"type": "ref/prompt", "name": name}),
            CompletionRef::Resource(uri) => {
                serde_json::json!({"type": "ref/resource", "uri": uri})
            }
        }
    }
}

/// Suggested values for an argument (`completion/complete`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Completion {
    /// The values, best first (at most 100).
    pub values: Vec<String>,
    /// How many there are in all, if the server says.
    pub total: Option<u64>,
    /// Whether there are more than these.
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Deserialize)]
pub(crate) struct CompleteResult {
    pub(crate) completion: Completion,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_kinds_typed_and_unknown_kept() {
        let blocks = json!([
            {"type": "text", "text": "hi", "annotations": {"priority": 1}},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "audio", "data": "BBBB", "mimeType": "audio/wav"},
            {"type": "resource_link", "uri": "file:///a", "name": "a"},
            {"type": "resource", "resource": {"uri": "x://y", "text": "t"}},
            {"type": "hologram", "frames": 3},
            {"type": "image", "mimeType": "image/png"},
            {"no": "type"},
        ]);
        let parsed: Vec<Content> = serde_json::from_value(blocks.clone()).unwrap();
        assert_eq!(parsed[0].text(), Some("hi"));
        assert!(matches!(&parsed[1], Content::Image(b) if b.mime_type == "image/png"));
        assert!(matches!(&parsed[2], Content::Audio(b) if b.data == "BBBB"));
        assert!(matches!(&parsed[3], Content::ResourceLink(r) if r.uri == "file:///a"));
        assert!(
            matches!(&parsed[4], Content::Resource(e) if e.resource.text.as_deref() == Some("t"))
        );
        assert_eq!(parsed[5].kind(), "hologram");
        // An image without its data is kept, not refused.
        assert!(matches!(&parsed[6], Content::Unknown(_)));
        assert!(matches!(&parsed[7], Content::Unknown(_)));
        // Back to JSON: what the server sent, field for field.
        let back: Vec<Value> = parsed.iter().map(Content::to_value).collect();
        assert_eq!(Value::Array(back), blocks);
    }
}
