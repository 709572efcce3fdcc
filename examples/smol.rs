//! The async client on smol against any Streamable-HTTP MCP server: 16
//! concurrent calls of one tool on one shared session, then a summary. A
//! session the server forgets mid-way is re-initialized once for all of
//! them; the recovery steps are printed as they happen.
//!
//! ```sh
//! cargo run --features smol --example smol -- http://127.0.0.1:8000/mcp echo '{"text":"hi"}'
//! ```

use mcp_recovery::core::Action;
use mcp_recovery::smol::{Client, Error};
use serde_json::Value;
use std::time::{Duration, Instant};

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000/mcp".into());
    let tool = args.next().unwrap_or_else(|| "echo".into());
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

    smol::block_on(async {
        let started = Instant::now();
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let (client, tool, arguments) = (client.clone(), tool.clone(), arguments.clone());
                smol::spawn(async move { client.call_tool(&tool, arguments).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await?);
        }
        println!(
            "{} calls of {tool} in {:?} on session #{}",
            answers.len(),
            started.elapsed(),
            client.generation()
        );
        println!("{tool}: {}", answers[0].text());
        client.close().await
    })
}
