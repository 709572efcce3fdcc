//! Two wires, one engine, in virtual time: negotiation (`Protocol::Auto`
//! probes `server/discover`, falls back to the handshake on anything that
//! is not a 2026-07-28 answer), the 2026-07-28 wire (headers, `_meta`,
//! `-32022`), multi-round-trip requests, and recovery when the server
//! moves from one wire to the other. Server bodies as the Python SDK
//! (`mcp` 2.3.0) and the TypeScript SDK send them.

mod common;

use common::{Harness, Sent, URL};
use mcp_recovery_core::{
    Action, CallError, Config, Operation, Protocol, ProtocolError, Recovery, RequestId,
    MODERN_VERSION,
};
use serde_json::{json, Value};

fn auto() -> Harness {
    Harness::negotiating(Config::new(URL))
}

/// The Python server's `server/discover` result.
fn discover_result() -> Value {
    json!({"cacheScope": "private", "capabilities": {"tools": {}}, "resultType": "complete",
           "supportedVersions": ["2026-07-28"], "ttlMs": 0,
           "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "py", "version": "1"}}})
}

/// A 400 `-32022` naming `supported`.
fn unsupported(h: &mut Harness, s: &Sent, supported: &[&str]) {
    let body = json!({"jsonrpc": "2.0", "id": s.json["id"], "error": {"code": -32022,
        "message": "Unsupported protocol version",
        "data": {"supported": supported, "requested": MODERN_VERSION}}});
    h.respond(
        s.exchange,
        400,
        &[("content-type", "application/json")],
        &body.to_string(),
    );
}

/// Probes and settles on the stateless wire.
fn stateless() -> Harness {
    let mut h = auto();
    h.engine.connect(h.now);
    h.pump();
    let probe = h.take("server/discover");
    h.result(&probe, discover_result());
    assert!(h.engine.session().is_stateless());
    h
}

fn negotiated(h: &Harness) -> Vec<(&'static str, bool, String)> {
    h.events
        .iter()
        .filter_map(|a| match a {
            Action::Negotiated {
                version,
                stateless,
                reason,
                ..
            } => Some((*version, *stateless, reason.clone())),
            _ => None,
        })
        .collect()
}

fn meta_version(s: &Sent) -> &str {
    s.json["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"]
        .as_str()
        .unwrap_or("")
}

#[test]
fn a_2026_server_is_spoken_to_statelessly() {
    let mut h = auto();
    let call = h.call(Operation::call_tool("echo", json!({"text": "hi"})));
    let probe = h.take("server/discover");
    assert_eq!(
        probe.request.header("MCP-Protocol-Version"),
        Some(MODERN_VERSION)
    );
    assert_eq!(probe.request.header("Mcp-Method"), Some("server/discover"));
    assert_eq!(meta_version(&probe), MODERN_VERSION);
    h.result(&probe, discover_result());
    let sent = h.take("tools/call");
    assert_eq!(sent.session_id(), None);
    assert_eq!(
        sent.request.header("MCP-Protocol-Version"),
        Some(MODERN_VERSION)
    );
    assert_eq!(sent.request.header("Mcp-Method"), Some("tools/call"));
    assert_eq!(sent.request.header("Mcp-Name"), Some("echo"));
    assert_eq!(meta_version(&sent), MODERN_VERSION);
    assert!(sent.json["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"].is_object());
    h.result(&sent, json!({"content": [], "resultType": "complete"}));
    h.ok(call);
    assert_eq!(h.sent_count("initialize"), 0);
    let n = negotiated(&h);
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].0, n[0].1), (MODERN_VERSION, true));
    assert!(n[0].2.contains("server/discover names"), "{}", n[0].2);
    assert_eq!(
        h.engine.session().server().unwrap()["supportedVersions"][0],
        MODERN_VERSION
    );
}

#[test]
fn anything_but_a_discover_result_falls_back_to_the_handshake() {
    // What handshake-only servers answer a probe: the TypeScript SDK 1.32.2
    // (no session: 400), a 404 method not found, a 405, a result that does
    // not name the revision, a JSON-RPC error in a 200.
    let answers: [(u16, Value); 5] = [
        (
            400,
            json!({"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}),
        ),
        (
            404,
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}),
        ),
        (405, json!("Method Not Allowed")),
        (
            200,
            json!({"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"]}}),
        ),
        (
            200,
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}),
        ),
    ];
    for (status, body) in answers {
        let mut h = auto();
        let call = h.call(Operation::list_tools(None));
        let probe = h.take("server/discover");
        let mut body = body;
        if body.get("id").is_some_and(|id| !id.is_null()) {
            body["id"] = probe.json["id"].clone();
        }
        h.respond(
            probe.exchange,
            status,
            &[("content-type", "application/json")],
            &body.to_string(),
        );
        h.handshake("s1");
        let sent = h.take("tools/list");
        assert_eq!(sent.session_id(), Some("s1"));
        assert_eq!(sent.request.header("Mcp-Method"), None, "handshake wire");
        h.result(&sent, json!({"tools": []}));
        h.ok(call);
        assert!(!h.engine.session().is_stateless());
        let n = negotiated(&h);
        assert_eq!((n[0].0, n[0].1), ("2025-11-25", false));
        assert!(
            n[0].2.contains("not a 2026-07-28 server"),
            "{status}: {}",
            n[0].2
        );
    }
}

#[test]
fn a_transport_failure_is_no_verdict() {
    let mut h = auto();
    let call = h.call(Operation::list_tools(None));
    let probe = h.take("server/discover");
    h.reset_after_send(&probe);
    // Probed again, not the handshake.
    let probe = h.take("server/discover");
    h.result(&probe, discover_result());
    let sent = h.take("tools/list");
    h.result(&sent, json!({"tools": []}));
    h.ok(call);
    assert_eq!(h.sent_count("initialize"), 0);
}

#[test]
fn minus_32022_naming_a_mutual_revision_reprobes_once() {
    // The conformance suite's request-metadata server refuses the first
    // request whatever it names.
    let mut h = auto();
    let call = h.call(Operation::list_tools(None));
    let probe = h.take("server/discover");
    unsupported(&mut h, &probe, &[MODERN_VERSION]);
    let again = h.take("server/discover");
    assert_ne!(again.json["id"], probe.json["id"]);
    h.result(&again, discover_result());
    let sent = h.take("tools/list");
    h.result(&sent, json!({"tools": []}));
    h.ok(call);
    assert!(negotiated(&h)[0].2.contains("-32022 names"));

    // Refused again after the re-probe: a typed error, no third probe.
    let mut h = auto();
    let call = h.call(Operation::list_tools(None));
    for _ in 0..2 {
        let probe = h.take("server/discover");
        unsupported(&mut h, &probe, &[MODERN_VERSION]);
    }
    assert!(h.outbox.is_empty(), "{:?}", h.outbox);
    assert!(matches!(
        h.error(call),
        CallError::InitializeFailed(e) if matches!(**e, CallError::Protocol(ProtocolError::NoMutualVersion { .. }))
    ));
}

#[test]
fn minus_32022_naming_only_handshake_revisions_or_strangers() {
    let mut h = auto();
    let call = h.call(Operation::list_tools(None));
    let probe = h.take("server/discover");
    unsupported(&mut h, &probe, &["2025-06-18", "2025-11-25"]);
    h.handshake("s1");
    let sent = h.take("tools/list");
    h.result(&sent, json!({"tools": []}));
    h.ok(call);

    // Only revisions we do not speak: a real incompatibility, said once.
    let mut h = auto();
    let call = h.call(Operation::list_tools(None));
    let probe = h.take("server/discover");
    unsupported(&mut h, &probe, &["2099-01-01"]);
    assert!(h.outbox.is_empty());
    match h.error(call) {
        CallError::InitializeFailed(e) => match &**e {
            CallError::Protocol(ProtocolError::NoMutualVersion { supported }) => {
                assert_eq!(supported, "2099-01-01")
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_call_refused_at_its_revision_is_sent_once_more() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("write", json!({})));
    let first = h.take("tools/call");
    unsupported(&mut h, &first, &[MODERN_VERSION]);
    let second = h.take("tools/call");
    assert_ne!(second.json["id"], first.json["id"]);
    assert!(h.events.iter().any(|a| matches!(
        a,
        Action::RetryOnce {
            recovery: Recovery::Version,
            ..
        }
    )));
    unsupported(&mut h, &second, &[MODERN_VERSION]);
    assert!(matches!(
        h.error(call),
        CallError::Protocol(ProtocolError::NoMutualVersion { .. })
    ));
    assert_eq!(h.sent_count("tools/call"), 2);
}

#[test]
fn a_replica_on_the_handshake_wire_means_one_renegotiation_for_all() {
    // A rolling deploy: the stateless client's calls land on a replica of
    // the old release, which wants a session.
    let mut h = stateless();
    let calls: Vec<_> = (0..4)
        .map(|i| h.call(Operation::call_tool("write", json!({"i": i}))))
        .collect();
    let sent: Vec<Sent> = (0..4).map(|_| h.take("tools/call")).collect();
    for s in &sent {
        let body = json!({"jsonrpc":"2.0","error":{"code":-32000,
            "message":"Bad Request: Mcp-Session-Id header is required"},"id":null});
        h.respond(
            s.exchange,
            400,
            &[("content-type", "application/json")],
            &body.to_string(),
        );
    }
    // One negotiation, shared: the probe finds the old release.
    let probe = h.take("server/discover");
    h.respond(
        probe.exchange,
        404,
        &[("content-type", "text/plain")],
        "Not Found",
    );
    h.handshake("s1");
    assert!(h.ended.is_empty(), "{:?} {:?}", h.ended, h.events);
    for _ in 0..4 {
        let s = h.take("tools/call");
        assert_eq!(s.session_id(), Some("s1"), "{:?}", h.ended);
        h.result(&s, json!({"content": []}));
    }
    for c in calls {
        h.ok(c);
    }
    assert_eq!(h.sent_count("server/discover"), 2);
    assert_eq!(h.sent_count("initialize"), 1);
    assert_eq!(
        h.sent_count("tools/call"),
        8,
        "each call sent twice, never more"
    );
}

#[test]
fn a_session_whose_server_became_2026_only_moves_to_the_stateless_wire() {
    let mut h = auto();
    h.engine.connect(h.now);
    h.pump();
    let probe = h.take("server/discover");
    h.respond(probe.exchange, 404, &[], "");
    h.handshake("s1");
    // The server is replaced by a 2026-07-28-only release.
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    unsupported(&mut h, &s, &[MODERN_VERSION]);
    let probe = h.take("server/discover");
    h.result(&probe, discover_result());
    let s = h.take("tools/list");
    assert_eq!(s.session_id(), None);
    assert_eq!(meta_version(&s), MODERN_VERSION);
    h.result(&s, json!({"tools": [], "resultType": "complete"}));
    h.ok(call);
    assert!(h.engine.session().is_stateless());
}

#[test]
fn the_legacy_setting_never_probes_and_refuses_a_2026_only_server() {
    let mut h = Harness::negotiating(Config::new(URL).protocol(Protocol::Legacy));
    let call = h.call(Operation::list_tools(None));
    let init = h.take("initialize");
    unsupported(&mut h, &init, &[MODERN_VERSION]);
    assert_eq!(h.sent_count("server/discover"), 0);
    assert!(matches!(h.error(call), CallError::InitializeFailed(_)));
}

fn input_required(state: Option<&str>, keys: &[&str]) -> Value {
    let requests: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| {
            (
                k.to_string(),
                json!({"method": "elicitation/create", "params": {"message": k,
                    "requestedSchema": {"type": "object", "properties": {}}}}),
            )
        })
        .collect();
    let mut r = json!({"resultType": "input_required", "inputRequests": requests});
    if let Some(s) = state {
        r["requestState"] = json!(s);
    }
    r
}

/// The input requests the engine handed out for `call`, in order.
fn asked(h: &Harness, call: mcp_recovery_core::CallId) -> Vec<(RequestId, String)> {
    h.events
        .iter()
        .filter_map(|a| match a {
            Action::ServerMessage {
                call: Some(c),
                message: mcp_recovery_core::Message::Request { id, params, .. },
            } if *c == call => Some((id.clone(), params.as_ref()?["message"].as_str()?.to_owned())),
            _ => None,
        })
        .collect()
}

#[test]
fn input_required_runs_the_handlers_and_echoes_the_state_byte_for_byte() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("deploy", json!({"env": "prod"})));
    let other = h.call(Operation::call_tool("unrelated", json!({})));
    let first = h.take("tools/call");
    let unrelated = h.take("tools/call");
    // Looks like JSON; is opaque: never parsed, never re-serialized.
    let state = r#"{"nonce": "a b",  "n":1.0}"#;
    h.result(&first, input_required(Some(state), &["confirm", "token"]));
    let asks = asked(&h, call);
    assert_eq!(asks.len(), 2);
    // The unrelated call carries nothing of it.
    assert!(unrelated.json["params"].get("requestState").is_none());
    assert!(unrelated.json["params"].get("inputResponses").is_none());
    h.result(&unrelated, json!({"content": []}));
    h.ok(other);
    let now = h.now;
    for (id, key) in &asks {
        assert!(h.outbox.is_empty(), "no round before every answer");
        h.engine.reply(
            id.clone(),
            Ok(json!({"action": "accept", "content": {"k": key}})),
            now,
        );
        h.pump();
    }
    let round = h.take("tools/call");
    assert_ne!(round.json["id"], first.json["id"]);
    assert_eq!(round.json["params"]["requestState"].as_str(), Some(state));
    assert_eq!(round.json["params"]["arguments"], json!({"env": "prod"}));
    assert_eq!(
        round.json["params"]["inputResponses"]["token"],
        json!({"action": "accept", "content": {"k": "token"}})
    );
    assert_eq!(round.request.header("Mcp-Name"), Some("deploy"));
    h.result(
        &round,
        json!({"content": [{"type": "text", "text": "done"}], "resultType": "complete"}),
    );
    assert_eq!(h.ok(call)["content"][0]["text"], "done");
}

#[test]
fn a_round_without_state_sends_none_and_a_refused_input_ends_the_call() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("t", json!({})));
    let s = h.take("tools/call");
    h.result(&s, input_required(None, &["q"]));
    let (id, _) = asked(&h, call).remove(0);
    let now = h.now;
    h.engine.reply(id, Ok(json!({"action": "decline"})), now);
    h.pump();
    let round = h.take("tools/call");
    assert!(round.json["params"].get("requestState").is_none());
    assert_eq!(
        round.json["params"]["inputResponses"]["q"]["action"],
        "decline"
    );
    h.result(&round, input_required(Some("s2"), &["q2"]));
    let (id, _) = asked(&h, call).pop().unwrap();
    let refused = mcp_recovery_core::RpcError::new(-32601, "method not found: elicitation/create");
    h.engine.reply(id.clone(), Err(refused), now);
    h.pump();
    match h.error(call) {
        CallError::InputRefused { key, error } => {
            assert_eq!(key, "q2");
            assert_eq!(error.code, -32601);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.outbox.is_empty(), "{:?}", h.outbox);
    // A late answer for the ended call changes nothing.
    h.engine.reply(id, Ok(json!({})), now);
    h.pump();
    assert!(h.outbox.is_empty());
}

#[test]
fn rounds_are_bounded() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("t", json!({})));
    let mut pauses = Vec::new();
    for round in 0..=8 {
        let s = h.take("tools/call");
        // State only: nothing to ask (load shedding): the next round after
        // a pause, 50 ms doubling to 1 s.
        h.result(
            &s,
            json!({"resultType": "input_required", "requestState": format!("r{round}")}),
        );
        if round < 8 {
            let (at, timer) = h.engine.poll_timeout().expect("a pause");
            assert!(matches!(timer, mcp_recovery_core::Timer::NextRound(c) if c == call));
            pauses.push((at - h.now).as_millis());
            assert!(h.outbox.is_empty());
            h.advance(at - h.now);
        }
    }
    assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    assert!(matches!(
        h.error(call),
        CallError::Protocol(ProtocolError::TooManyRounds { rounds: 8 })
    ));
    assert_eq!(h.sent_count("tools/call"), 9);
}

#[test]
fn a_401_between_rounds_refreshes_and_resends_the_round() {
    let mut h = auto();
    h.engine
        .set_token(Some(mcp_recovery_core::Token::bearer("old")), h.now);
    h.engine.connect(h.now);
    h.pump();
    let probe = h.take("server/discover");
    h.result(&probe, discover_result());
    let call = h.call(Operation::call_tool("t", json!({})));
    let s = h.take("tools/call");
    h.result(&s, input_required(Some("st"), &["q"]));
    let (id, _) = asked(&h, call).remove(0);
    let now = h.now;
    h.engine.reply(id, Ok(json!({"action": "accept"})), now);
    h.pump();
    let round = h.take("tools/call");
    h.respond(
        round.exchange,
        401,
        &[("www-authenticate", "Bearer error=\"invalid_token\"")],
        "",
    );
    h.refreshed(1, "new");
    let again = h.take("tools/call");
    assert_eq!(again.bearer(), Some("Bearer new"));
    assert_eq!(again.json["params"]["requestState"], "st");
    assert_eq!(
        again.json["params"]["inputResponses"]["q"]["action"],
        "accept"
    );
    h.result(&again, json!({"content": [], "resultType": "complete"}));
    h.ok(call);
}

#[test]
fn a_tampered_state_is_the_servers_answer_not_a_loop() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("t", json!({})));
    let s = h.take("tools/call");
    h.result(&s, input_required(Some("st"), &["q"]));
    let (id, _) = asked(&h, call).remove(0);
    let now = h.now;
    h.engine.reply(id, Ok(json!({"action": "accept"})), now);
    h.pump();
    let round = h.take("tools/call");
    let body = json!({"jsonrpc":"2.0","id":round.json["id"],"error":{"code":-32602,
        "message":"Invalid or expired requestState","data":{"reason":"invalid_request_state"}}});
    h.respond(
        round.exchange,
        400,
        &[("content-type", "application/json")],
        &body.to_string(),
    );
    assert!(h.outbox.is_empty());
    assert!(matches!(
        h.outcome(call),
        Err(CallError::Http { status: 400, .. }) | Ok(Err(_))
    ));
}

#[test]
fn invalid_parameter_headers_leave_the_tool_out_and_mirror_the_rest() {
    let mut h = stateless();
    let list = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.result(
        &s,
        json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "private", "tools": [
        {"name": "sql", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "query": {"type": "string"}}}},
        {"name": "bad", "inputSchema": {"type": "object", "properties": {
            "v": {"type": "object", "x-mcp-header": "V"}}}}]}),
    );
    let tools: Vec<&str> = h.ok(list)["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["sql"]);
    assert_eq!(
        h.count(|a| matches!(a, Action::Warning { message, .. } if message.contains("`bad`"))),
        1
    );
    h.call(Operation::call_tool(
        "sql",
        json!({"region": "Zürich", "query": "SELECT 1"}),
    ));
    let call = h.take("tools/call");
    assert_eq!(
        call.request.header("Mcp-Param-Region"),
        Some("=?base64?WsO8cmljaA==?=")
    );
    assert_eq!(call.request.header("Mcp-Param-Query"), None);
}

#[test]
fn ping_on_the_stateless_wire_asks_server_discover() {
    let mut h = stateless();
    let call = h.call(Operation::ping());
    let s = h.take("server/discover");
    assert_eq!(s.request.header("Mcp-Method"), Some("server/discover"));
    h.result(&s, discover_result());
    h.ok(call);
}

#[test]
fn cancelling_on_the_stateless_wire_closes_the_stream_only() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("slow", json!({})));
    let s = h.take("tools/call");
    h.cancel(call);
    assert!(matches!(h.error(call), CallError::Cancelled));
    assert!(h
        .events
        .iter()
        .any(|a| matches!(a, Action::Abort { exchange } if *exchange == s.exchange)));
    assert_eq!(h.sent_count("notifications/cancelled"), 0);
}

#[test]
fn headers_at_odds_with_the_body_are_a_typed_error_sent_once() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("sql", json!({"region": "eu"})));
    let s = h.take("tools/call");
    let body = json!({"jsonrpc":"2.0","id":s.json["id"],"error":{"code":-32020,
        "message":"Mcp-Param-Region header is missing but the request body's 'region' argument is present"}});
    h.respond(
        s.exchange,
        400,
        &[("content-type", "application/json")],
        &body.to_string(),
    );
    match h.error(call) {
        CallError::HeaderMismatch { message } => assert!(message.contains("Mcp-Param-Region")),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.sent_count("tools/call"), 1);
}

#[test]
fn a_fresh_listing_is_answered_without_a_round_trip() {
    let mut h = stateless();
    let list = json!({"tools": [{"name": "a", "inputSchema": {"type": "object"}}],
        "resultType": "complete", "ttlMs": 60_000, "cacheScope": "private"});
    let first = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.result(&s, list.clone());
    assert_eq!(h.ok(first)["tools"][0]["name"], "a");
    // Within its ttl: answered at once, nothing sent.
    h.advance(std::time::Duration::from_secs(59));
    let again = h.call(Operation::list_tools(None));
    assert_eq!(h.ok(again)["tools"][0]["name"], "a");
    assert!(h.outbox.is_empty());
    // Another page is another request.
    h.call(Operation::list_tools(Some("p2")));
    let s = h.take("tools/list");
    h.result(&s, json!({"tools": [], "ttlMs": 0}));
    // Stale: asked again.
    h.advance(std::time::Duration::from_secs(1));
    let stale = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.result(&s, list.clone());
    h.ok(stale);
    // A list_changed notification on a call's stream drops it.
    let call = h.call(Operation::call_tool("t", json!({})));
    let s = h.take("tools/call");
    let stream = format!(
        "event: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
        json!({"jsonrpc": "2.0", "id": s.json["id"], "result": {"content": []}})
    );
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        &stream,
    );
    h.ok(call);
    h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.result(&s, list.clone());
    // A new token: another authorization's results are not ours.
    h.engine
        .set_token(Some(mcp_recovery_core::Token::bearer("other")), h.now);
    h.call(Operation::list_tools(None));
    h.take("tools/list");
    assert_eq!(h.sent_count("tools/list"), 5);
}

#[test]
fn an_unknown_result_type_is_invalid() {
    let mut h = stateless();
    let call = h.call(Operation::call_tool("t", json!({})));
    let s = h.take("tools/call");
    h.result(&s, json!({"resultType": "task", "task": {}}));
    assert!(matches!(
        h.error(call),
        CallError::Protocol(ProtocolError::UnknownResultType(t)) if t == "\"task\""
    ));
}
