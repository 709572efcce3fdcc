//! The subcommands that talk to a server, each run through the blocking
//! client: one client per process, so `--repeat` runs share one session
//! and one circuit breaker, as a long-lived program would.

use crate::activity::Activity;
use crate::args::Repeat;
use crate::exit::{Exit, Failure};
use crate::render;
use mcp_recovery::blocking::{
    CallOptions, Client, CompletionRef, Prompt, PromptResult, Resource, ResourceRead,
    ResourceTemplate, ServerHandler, Tool,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A subcommand with its input already checked.
pub enum Job {
    Tools,
    Call {
        name: String,
        args: Value,
    },
    Resources,
    Read {
        uri: String,
    },
    Prompts,
    Prompt {
        name: String,
        args: Option<Value>,
    },
    Ping,
    Templates,
    Complete {
        reference: CompletionRef,
        argument: String,
        value: String,
    },
    LogLevel {
        level: String,
    },
    Subscribe {
        uri: String,
    },
    Rpc {
        method: String,
        params: Option<Value>,
    },
}

/// `subscribe`: prints each `notifications/resources/updated` as it comes.
pub struct Updates {
    pub json: bool,
}

impl ServerHandler for Updates {
    fn notification(&self, method: &str, params: Option<Value>) {
        if method != "notifications/resources/updated" {
            return;
        }
        let uri = params
            .as_ref()
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if self.json {
            println!("{}", json!({"updated": uri}));
        } else {
            println!("updated {}", render::cell(uri, 200));
        }
    }
}

/// Runs `job` `repeat.repeat` times, printing each result; the exit code is
/// the last run's. With `reauth` (`--oauth`), the first run that fails for
/// want of credentials that can be renewed runs `reauth` (the authorization
/// flow) and is retried once; a second such failure is reported as it is.
pub fn run(
    client: &Client,
    job: &Job,
    repeat: Repeat,
    json: bool,
    reauth: Option<&dyn Fn() -> Result<(), Failure>>,
) -> Exit {
    let mut reauth = reauth;
    let mut last = Exit::Ok;
    for i in 1..=repeat.repeat {
        if i > 1 && repeat.interval > 0 {
            // The pause the user asked for between runs.
            std::thread::sleep(Duration::from_millis(repeat.interval));
        }
        let prefix = if repeat.repeat > 1 {
            format!("run {i}/{}: ", repeat.repeat)
        } else {
            String::new()
        };
        let mut result = once(client, job, json, &prefix);
        if let (Err(f), Some(authorize)) = (&result, reauth) {
            if f.exit == Exit::NeedsReauth {
                // Authorized once per process: a token refused right
                // after a fresh authorization will not be cured by another.
                reauth = None;
                eprintln!(
                    "mcpr: {prefix}{}: starting the OAuth authorization flow",
                    f.label
                );
                result = authorize().and_then(|()| once(client, job, json, &prefix));
            }
        }
        last = match result {
            Ok(exit) => exit,
            Err(f) => {
                report(&f, json, &prefix);
                f.exit
            }
        };
        if last == Exit::Interrupted {
            break;
        }
    }
    last
}

/// The one-line error on stderr; with `--json`, the same as JSON on stdout.
pub fn report(f: &Failure, json: bool, prefix: &str) {
    eprintln!(
        "mcpr: {prefix}{}: {}",
        f.label,
        render::cell(&f.message, 600)
    );
    if json {
        let error = json!({"error": {
            "exit_code": f.exit.code(),
            "class": f.label,
            "message": f.message,
        }});
        println!("{error}");
    }
}

fn once(client: &Client, job: &Job, json: bool, prefix: &str) -> Result<Exit, Failure> {
    match job {
        Job::Tools => list(client, "tools/list", "tools", json, |t: Vec<Tool>| {
            render::tools(&t)
        }),
        Job::Resources => list(
            client,
            "resources/list",
            "resources",
            json,
            |r: Vec<Resource>| render::resources(&r),
        ),
        Job::Prompts => list(client, "prompts/list", "prompts", json, |p: Vec<Prompt>| {
            render::prompts(&p)
        }),
        Job::Call { name, args } => call(client, name, args, json, prefix),
        Job::Read { uri } => {
            let result = watched(&format!("reading {uri}"), || {
                client.request("resources/read", Some(json!({ "uri": uri })))
            })?;
            show(result, json, prefix, |r: ResourceRead| {
                render::resource_read(&r)
            })
        }
        Job::Prompt { name, args } => {
            let mut params = Map::new();
            params.insert("name".into(), name.clone().into());
            if let Some(a) = args {
                params.insert("arguments".into(), a.clone());
            }
            let result = watched(&format!("getting prompt {name}"), || {
                client.request("prompts/get", Some(Value::Object(params)))
            })?;
            show(result, json, prefix, |p: PromptResult| {
                render::prompt_result(&p)
            })
        }
        Job::Templates => list(
            client,
            "resources/templates/list",
            "resourceTemplates",
            json,
            |t: Vec<ResourceTemplate>| render::templates(&t),
        ),
        Job::Complete {
            reference,
            argument,
            value,
        } => {
            let c = watched("completing", || client.complete(reference, argument, value))?;
            if json {
                println!(
                    "{}",
                    json!({"values": c.values, "total": c.total, "hasMore": c.has_more})
                );
            } else {
                for v in &c.values {
                    println!("{}", render::cell(v, 200));
                }
                if c.has_more {
                    eprintln!(
                        "mcpr: {} more",
                        c.total.map_or("and".into(), |t| format!("{} in all,", t))
                    );
                }
            }
            Ok(Exit::Ok)
        }
        Job::LogLevel { level } => {
            watched("setting the log level", || client.set_log_level(level))?;
            if json {
                println!("{}", json!({"ok": true}));
            } else {
                println!("{prefix}ok");
            }
            Ok(Exit::Ok)
        }
        Job::Subscribe { uri } => subscribe(client, uri, json),
        Job::Rpc { method, params } => {
            let result = watched(method, || client.request(method, params.clone()))?;
            println!("{result}");
            Ok(Exit::Ok)
        }
        Job::Ping => {
            let started = Instant::now();
            watched("ping", || client.ping())?;
            let ms = started.elapsed().as_millis();
            if json {
                println!("{}", json!({"ok": true, "elapsed_ms": ms}));
            } else {
                println!("{prefix}ok ({ms} ms)");
            }
            Ok(Exit::Ok)
        }
    }
}

/// Subscribes, then waits for Ctrl-C while the updates print (the
/// listening stream's reader prints them); unsubscribes on the way out.
fn subscribe(client: &Client, uri: &str, json: bool) -> Result<Exit, Failure> {
    watched(&format!("subscribing to {uri}"), || client.subscribe(uri))?;
    if !json {
        eprintln!(
            "mcpr: subscribed to {}; updates follow (Ctrl-C ends)",
            render::cell(uri, 200)
        );
    }
    let until = client.cancel_handle();
    let _interrupt = crate::interrupt::cancels(until.clone());
    while !until.is_cancelled() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = client.unsubscribe(uri);
    Ok(Exit::Interrupted)
}

/// Runs `f` with a spinner (or nothing) for `label`.
fn watched<T, E: Into<Failure>>(
    label: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, Failure> {
    let _activity = Activity::start(label);
    f().map_err(Into::into)
}

fn call(
    client: &Client,
    name: &str,
    args: &Value,
    json: bool,
    prefix: &str,
) -> Result<Exit, Failure> {
    let activity = Activity::start(&format!("calling {name}"));
    let cancel = client.cancel_handle();
    let interrupt = crate::interrupt::cancels(cancel.clone());
    let opts = CallOptions::new()
        .progress(|p| activity.progress(&p))
        .cancel(cancel);
    let result = client.call_tool_with(name, args.clone(), opts);
    drop(interrupt);
    drop(activity);
    if crate::interrupt::interrupted() {
        eprintln!(
            "mcpr: {prefix}interrupted: `{}` cancelled",
            render::cell(name, 60)
        );
        return Ok(Exit::Interrupted);
    }
    let result = result?;
    if json {
        println!("{}", render::tool_result_json(&result));
    } else {
        println!("{prefix}{}", render::tool_result(&result));
    }
    if result.is_error {
        // The result is printed as any other; the exit code and this line
        // say the tool itself failed.
        eprintln!(
            "mcpr: {prefix}tool error: `{}` returned isError",
            render::cell(name, 60)
        );
        return Ok(Exit::ServerError);
    }
    Ok(Exit::Ok)
}

/// Prints a raw result as JSON, or decoded and rendered for people.
fn show<T: DeserializeOwned>(
    result: Value,
    json: bool,
    prefix: &str,
    human: impl FnOnce(T) -> String,
) -> Result<Exit, Failure> {
    if json {
        println!("{result}");
    } else {
        println!("{prefix}{}", human(decode(result)?));
    }
    Ok(Exit::Ok)
}

/// A `*/list` method followed to its last page, printed as one list.
fn list<T: DeserializeOwned>(
    client: &Client,
    method: &str,
    key: &str,
    json: bool,
    human: impl FnOnce(Vec<T>) -> String,
) -> Result<Exit, Failure> {
    let items = watched(method, || all_pages(client, method, key))?;
    if json {
        let mut out = Map::new();
        out.insert(key.into(), Value::Array(items));
        println!("{}", Value::Object(out));
    } else {
        println!("{}", human(decode(Value::Array(items))?));
    }
    Ok(Exit::Ok)
}

/// Every page of a list. A cursor seen twice ends it: a server that loops
/// must not loop us.
fn all_pages(client: &Client, method: &str, key: &str) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
        let page = client.request(method, params)?;
        match page.get(key).and_then(Value::as_array) {
            Some(a) => items.extend(a.iter().cloned()),
            None => {
                let why = format!("the {method} result has no `{key}` list");
                return Err(Failure::new(Exit::Unreachable, "protocol error", why));
            }
        }
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match &cursor {
            Some(c) if seen.insert(c.clone()) => {}
            _ => return Ok(items),
        }
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| {
        Failure::new(
            Exit::Unreachable,
            "protocol error",
            format!("unexpected result: {e}"),
        )
    })
}
