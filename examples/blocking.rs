//! The blocking client against any Streamable-HTTP MCP server: lists what
//! the server offers, pings it, and calls one tool if you name one. Session
//! loss, restarts and cut connections are recovered by the client; the
//! recovery steps it takes are printed as they happen.
//!
//! ```sh
//! cargo run --features ureq --example blocking -- http://127.0.0.1:8000/mcp echo '{"text":"hi"}'
//! ```

use mcp_recovery::blocking::{Client, Error};
use mcp_recovery::core::Action;
use serde_json::Value;
use std::time::Duration;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000/mcp".into());
    let tool = args.next();
    let arguments: Value = match args.next() {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| Error::Config(format!("tool arguments are not JSON: {e}")))?,
        None => Value::Object(Default::default()),
    };

    let client = Client::builder(&url)
        .read_timeout(Duration::from_secs(30))
        .on_recovery(|action| match action {
            Action::SignalReconnect { generation } => {
                eprintln!("session lost: re-initializing (session #{generation})")
            }
            Action::RetryOnce { recovery, .. } => eprintln!("retrying once after {recovery:?}"),
            _ => {}
        })
        .build()?;

    client.initialize()?;
    let server = client.server_info().unwrap_or_default();
    println!(
        "connected to {} {} (protocol {}, session {})",
        server["name"].as_str().unwrap_or("?"),
        server["version"].as_str().unwrap_or(""),
        client.protocol_version().unwrap_or("?"),
        client.session_id().as_deref().unwrap_or("none"),
    );
    for t in client.all_tools()? {
        let safe = if t.replay_safe() {
            " (replay-safe)"
        } else {
            ""
        };
        let about = t.description.as_deref().unwrap_or("");
        println!("tool     {}{safe}: {about}", t.name);
    }
    // Servers without resources or prompts answer "method not found".
    match client.list_resources(None) {
        Ok(list) => list
            .resources
            .iter()
            .for_each(|r| println!("resource {} ({})", r.uri, r.name)),
        Err(e) => println!("resources: {e}"),
    }
    match client.list_prompts(None) {
        Ok(list) => list
            .prompts
            .iter()
            .for_each(|p| println!("prompt   {}", p.name)),
        Err(e) => println!("prompts: {e}"),
    }
    client.ping()?;
    println!("ping     ok");
    if let Some(name) = tool {
        let result = client.call_tool(&name, arguments)?;
        let flag = if result.is_error { " (tool error)" } else { "" };
        println!("{name}{flag}: {}", result.text());
    }
    client.close()
}
