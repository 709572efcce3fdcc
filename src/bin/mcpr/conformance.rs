//! `mcpr conformance SERVER-URL`: the client command that
//! `@modelcontextprotocol/conformance` runs (`scripts/conformance.sh`).
//! The runner starts a test server for one scenario, names it in
//! `MCP_CONFORMANCE_SCENARIO` (and, for some, passes pre-registered
//! credentials in `MCP_CONFORMANCE_CONTEXT`), and appends its URL.
//!
//! Every scenario gets what any MCP application would do through the
//! blocking client, on the wire of the revision the runner names in
//! `MCP_CONFORMANCE_PROTOCOL_VERSION` (the handshake up to 2025-11-25, the
//! stateless wire for 2026-07-28): list the tools, call each one (or the
//! calls the runner's context lists); on the stateless wire also list the
//! resources and prompts and read or get the first of each. What differs
//! is set up here, never faked: the elicitation capability and a handler
//! that accepts with the schema's defaults, and, for `auth/*`, `--oauth`'s
//! behaviour (tokens in memory, the authorization flow with the
//! redirect-following opener when the server wants credentials, then the
//! operation retried once). The checks themselves are the runner's.

use crate::auth::{self, Opener};
use crate::exit::{classify, Exit, Failure};
use mcp_recovery::blocking::{Client, Error, ServerHandler};
use mcp_recovery::client::oauth::{Enterprise, MemoryTokenStore, OAuthConfig};
use mcp_recovery::core::{Protocol, RpcError};
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::time::Duration;

/// The client id metadata document URL the suite expects a client to
/// offer where the server supports such ids (`auth/basic-cimd`).
const CIMD_URL: &str = "https://conformance-test.local/client-metadata.json";

/// Runs the scenario; 0 when every operation worked, else the exit code
/// of the failure, with one line on stderr.
pub fn run(server: &str) -> Exit {
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    match scenario_run(&scenario, server) {
        Ok(()) => Exit::Ok,
        Err(f) => {
            eprintln!("mcpr conformance {scenario}: {}: {}", f.label, f.message);
            f.exit
        }
    }
}

fn scenario_run(scenario: &str, server: &str) -> Result<(), Failure> {
    // The runner gives a scenario 30 s: a call must fail before that, so
    // the failure is ours to report.
    let version = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION")
        .unwrap_or_else(|_| mcp_recovery::core::LATEST_LEGACY_VERSION.into());
    let protocol = Protocol::parse(&version)
        .map_err(|e| Failure::input(format!("MCP_CONFORMANCE_PROTOCOL_VERSION: {e}")))?;
    let stateless = matches!(protocol, Protocol::Pinned(v) if v.is_stateless());
    let mut builder = Client::builder(server)
        .protocol(protocol)
        .read_timeout(Duration::from_secs(20))
        .call_timeout(Duration::from_secs(25))
        // Input requests of multi-round-trip calls (2026-07-28).
        .handler(AcceptDefaults);
    if scenario == "elicitation-sep1034-client-defaults" {
        builder = builder
            .configure(|c| c.capabilities = json!({"elicitation": {"applyDefaults": true}}))
            .handler(AcceptDefaults)
            // The server asks on the session's GET stream, outside any call.
            .listen(true);
    }
    let oauth = scenario.starts_with("auth/");
    if oauth {
        builder = builder.oauth(oauth_config(scenario)?);
    }
    let client = builder.build()?;
    let authorized = Cell::new(!oauth);
    let step = |what: &str, f: &dyn Fn() -> Result<Value, Error>| -> Result<Value, Failure> {
        match f() {
            Err(e) if !authorized.get() && classify(&e).0 == Exit::NeedsReauth => {
                eprintln!("mcpr conformance: {what}: {e}: authorizing");
                authorized.set(true);
                auth::authorize(&client, Opener::Follow)?;
                Ok(f()?)
            }
            other => Ok(other?),
        }
    };

    let tools = step("tools/list", &|| {
        let tools = client.all_tools()?;
        Ok(json!(tools
            .iter()
            .map(|t| (t.name.clone(), t.input_schema.clone()))
            .collect::<Map<_, _>>()))
    })?;
    // The calls the runner asks for, or each listed tool once.
    let calls: Vec<(String, Value)> = match context()?.get("toolCalls").and_then(Value::as_array) {
        Some(asked) => asked
            .iter()
            .filter_map(|c| {
                Some((
                    c.get("name")?.as_str()?.to_owned(),
                    c.get("arguments")?.clone(),
                ))
            })
            .collect(),
        None => tools
            .as_object()
            .into_iter()
            .flatten()
            .map(|(n, _)| (n.to_owned(), arguments(n, &tools)))
            .collect(),
    };
    for (name, args) in &calls {
        let result = step(name, &|| {
            let r = client.call_tool(name, args.clone())?;
            Ok(json!({"isError": r.is_error, "text": r.text()}))
        })?;
        println!("{name}: {result}");
    }
    if stateless {
        // What an application shows next to the tools; a server without
        // them says so, which is no failure of ours.
        if let Ok(list) = client.list_resources(None) {
            if let Some(r) = list.resources.first() {
                let read = client.read_resource(&r.uri).map(|r| r.contents.len());
                println!("{}: {read:?}", r.uri);
            }
        }
        if let Ok(list) = client.list_prompts(None) {
            if let Some(p) = list.prompts.first() {
                let got = client.get_prompt(&p.name, None).map(|r| r.messages.len());
                println!("{}: {got:?}", p.name);
            }
        }
    }
    let _ = client.close();
    Ok(())
}

/// Arguments for the suite's tools: `add_numbers` (`tools_call`) takes two
/// numbers; `json_schema_echo` the input schema of the scenario's other
/// tool, as the client received it (kept verbatim: `$ref`, `$defs`,
/// 2020-12 keywords); the others take none.
fn arguments(tool: &str, schemas: &Value) -> Value {
    match tool {
        "add_numbers" => json!({"a": 2, "b": 3}),
        "json_schema_echo" => json!({"schema": schemas["json_schema_2020_12_tool"]}),
        _ => json!({}),
    }
}

/// OAuth as `--oauth` does it, with tokens in memory (each scenario is a
/// new server) and pre-registered credentials when the runner gives some.
fn oauth_config(scenario: &str) -> Result<OAuthConfig, Failure> {
    let mut config = OAuthConfig::new(MemoryTokenStore::default());
    config.client_metadata_url = Some(CIMD_URL.into());
    let context = context()?;
    let field = |k: &str| context.get(k).and_then(Value::as_str);
    let args = crate::args::OAuthArgs {
        oauth: true,
        oauth_client_id: field("client_id").map(str::to_owned),
        oauth_client_secret: field("client_secret").map(str::to_owned),
        oauth_scope: None,
        token_file: None,
        token_redis: None,
        // A service's own credentials (SEP-1046), where the runner gives a
        // secret for them.
        oauth_client_credentials: scenario.starts_with("auth/client-credentials-")
            && field("client_secret").is_some(),
        // Sender-constrained tokens where the scenario is about them.
        oauth_client_key: None,
        oauth_dpop: scenario.starts_with("auth/dpop"),
        oauth_jwt_bearer_file: None,
        oauth_id_token_file: None,
        oauth_idp_token_url: None,
        oauth_idp_client_id: None,
    };
    // With an opener the client authorizes on its own where a person
    // would be asked (no tokens, a refused refresh, a 403 step-up), with
    // the server's challenge at hand (its resource_metadata and scope).
    let config = config.opener(|url| Opener::Follow.open(url));
    let mut config = auth::settings(config, &args, Opener::Follow)?;
    config.client_name = "mcpr-conformance".into();
    // A signed JWT instead of a secret (private_key_jwt), where the runner
    // gives the key.
    if let (Some(id), Some(pem), Some("ES256")) = (
        field("client_id"),
        field("private_key_pem"),
        field("signing_algorithm"),
    ) {
        if scenario.starts_with("auth/client-credentials-") {
            config = config
                .client_credentials_jwt(id, pem)
                .map_err(|e| Failure::input(e.to_string()))?;
        }
    }
    // A workload's identity token (workload identity federation), where
    // the runner gives one made for its authorization server.
    if let Some(jwt) = field("valid_jwt") {
        let jwt = jwt.to_owned();
        config = config.jwt_bearer(move |_| Ok(jwt.clone()));
    }
    // Enterprise-managed authorization: the person's ID token from the
    // runner's identity provider.
    if let (Some(id_token), Some(endpoint), Some(idp_client), Some(id)) = (
        field("idp_id_token"),
        field("idp_token_endpoint"),
        field("idp_client_id"),
        field("client_id"),
    ) {
        let id_token = id_token.to_owned();
        let idp = Enterprise::new(endpoint, idp_client, move |_| Ok(id_token.clone()));
        config = config.enterprise(idp, id, field("client_secret"));
    }
    Ok(config)
}

/// `MCP_CONFORMANCE_CONTEXT`, a JSON object, if set.
fn context() -> Result<Map<String, Value>, Failure> {
    let Ok(raw) = std::env::var("MCP_CONFORMANCE_CONTEXT") else {
        return Ok(Map::new());
    };
    match serde_json::from_str(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Failure::input(
            "MCP_CONFORMANCE_CONTEXT is not a JSON object",
        )),
    }
}

/// Accepts every elicitation with each field's schema default: what an
/// application with `applyDefaults` does when the user changes nothing.
struct AcceptDefaults;

impl ServerHandler for AcceptDefaults {
    fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        if method != "elicitation/create" {
            return Err(RpcError::new(-32601, format!("method not found: {method}")));
        }
        let properties = params
            .as_ref()
            .and_then(|p| p.pointer("/requestedSchema/properties"))
            .and_then(Value::as_object);
        let content: Map<String, Value> = properties
            .into_iter()
            .flatten()
            .filter_map(|(k, schema)| Some((k.clone(), schema.get("default")?.clone())))
            .collect();
        Ok(json!({"action": "accept", "content": content}))
    }
}
