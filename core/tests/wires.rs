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

// Regression tests from a review of the two-wire change: each one failed
// before its fix.

fn stateless_token(token: Option<&str>) -> Harness {
    let mut h = Harness::negotiating(Config::new(URL));
    if let Some(t) = token {
        h.engine
            .set_token(Some(mcp_recovery_core::Token::bearer(t)), h.now);
    }
    h.engine.connect(h.now);
    h.pump();
    let probe = h.take("server/discover");
    h.result(&probe, discover_result());
    assert!(h.engine.session().is_stateless());
    h
}

fn error_400(h: &mut Harness, s: &Sent, code: i64, message: &str) {
    let body = json!({"jsonrpc":"2.0","id":s.json["id"],"error":{"code":code,"message":message}});
    h.respond(
        s.exchange,
        400,
        &[("content-type", "application/json")],
        &body.to_string(),
    );
}

#[test]
fn an_application_400_mentioning_a_session_is_its_answer() {
    let mut h = stateless_token(None);
    let call = h.call(Operation::call_tool(
        "open_browser_tab",
        json!({"url": "x"}),
    ));
    let s = h.take("tools/call");
    error_400(&mut h, &s, -32602, "Browser session not found");
    assert_eq!(
        h.sent_count("server/discover"),
        1,
        "no re-negotiation: {:?}",
        h.outbox
    );
    assert_eq!(
        h.sent_count("tools/call"),
        1,
        "a non-idempotent call sent twice"
    );
    assert!(h.ended.contains_key(&call));
}

/// Review finding 1b: Same rule, substring "initialization": resources/read of a missing
/// resource whose URI contains the word ends as SessionLost (and counts on
/// the breaker) instead of the server's "Unknown resource" answer.
#[test]
fn a_resource_named_initialization_is_no_wire_change() {
    let mut h = stateless_token(None);
    let call = h.call(Operation::read_resource("docs://initialization"));
    let s = h.take("resources/read");
    error_400(
        &mut h,
        &s,
        -32602,
        "Unknown resource: docs://initialization",
    );
    assert_eq!(
        h.sent_count("server/discover"),
        1,
        "re-probed for a missing resource"
    );
    assert!(h.ended.contains_key(&call));
}

/// Review finding 2: A resume GET refused with -32022 (the stream's pod replaced by a
/// 2026-only release in a rolling deploy) sends the non-idempotent call again.
#[test]
fn a_resume_refused_with_32022_never_replays() {
    let mut h = Harness::negotiating(Config::new(URL));
    h.engine.connect(h.now);
    h.pump();
    let probe = h.take("server/discover");
    h.respond(probe.exchange, 404, &[], "");
    h.handshake("s1");
    let call = h.call(Operation::call_tool("counter_increment", json!({})));
    let s = h.take("tools/call");
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        "id: 1\ndata: \n\n",
    );
    h.advance(std::time::Duration::from_secs(1));
    let g = h.outbox.pop_front().expect("resume GET");
    assert_eq!(g.request.method, mcp_recovery_core::Method::Get);
    let body = json!({"jsonrpc":"2.0","id":null,"error":{"code":-32022,
        "message":"Unsupported protocol version",
        "data":{"supported":[MODERN_VERSION],"requested":"2025-11-25"}}});
    h.respond(
        g.exchange,
        400,
        &[("content-type", "application/json")],
        &body.to_string(),
    );
    // Whatever follows (a probe), the tool call must not go out again.
    while let Some(p) = h.outbox.pop_front() {
        if p.method() == "server/discover" {
            h.result(&p, discover_result());
        }
    }
    assert_eq!(
        h.sent_count("tools/call"),
        1,
        "counter_increment sent twice; {:?}",
        h.ended.get(&call)
    );
}

/// Review finding 3: A result fetched with token A, arriving after the token became B, is
/// cached and served to B's callers.
#[test]
fn a_result_read_with_the_old_token_is_not_cached_for_the_new_one() {
    let mut h = stateless_token(Some("alice"));
    h.call(Operation::read_resource("user://me"));
    let s = h.take("resources/read");
    assert_eq!(s.bearer(), Some("Bearer alice"));
    h.engine
        .set_token(Some(mcp_recovery_core::Token::bearer("bob")), h.now); // cache cleared here...
    h.pump();
    h.result(
        &s,
        json!({"contents": [{"uri": "user://me", "text": "alice's data"}],
        "resultType": "complete", "ttlMs": 60000, "cacheScope": "private"}),
    ); // ...and refilled here
    let again = h.call(Operation::read_resource("user://me"));
    assert!(
        !h.ended.contains_key(&again) || h.outbox.len() == 1,
        "bob got {:?} from the cache",
        h.ended.get(&again)
    );
}

/// Review finding 4: -32020 ("list the tools again, the schema may have changed"): the
/// re-list the client does is answered from the cache, learning nothing.
#[test]
fn a_header_mismatch_drops_the_cached_listing() {
    let mut h = stateless_token(None);
    h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.result(
        &s,
        json!({"tools": [{"name": "sql", "inputSchema": {"type": "object"}}],
        "resultType": "complete", "ttlMs": 60000, "cacheScope": "public"}),
    );
    let c = h.call(Operation::call_tool("sql", json!({"region": "eu"})));
    let s = h.take("tools/call");
    error_400(
        &mut h,
        &s,
        -32020,
        "Mcp-Param-Region header is missing but the request body's 'region' argument is present",
    );
    assert!(matches!(h.error(c), CallError::HeaderMismatch { .. }));
    // What client/src/drive.rs does next: list the tools.
    let relist = h.call(Operation::list_tools(None));
    assert!(
        !h.ended.contains_key(&relist),
        "re-list served from cache: no new schema learned"
    );
}

/// Review finding 5: Two transport failures of the probe are taken as a verdict (handshake
/// wire), against the module doc ("a transport failure is never a verdict")
/// and the Python client (network errors propagate).
#[test]
fn two_transport_failures_of_the_probe_are_no_verdict() {
    let mut h = Harness::negotiating(Config::new(URL));
    h.call(Operation::list_tools(None));
    let p = h.take("server/discover");
    h.reset_after_send(&p);
    let p = h.take("server/discover");
    h.reset_after_send(&p);
    assert_eq!(
        h.sent_count("initialize"),
        0,
        "fell back to the handshake: {:?}",
        h.outbox
    );
}

/// Review finding 6: A server may not answer tools/list with input_required; the engine
/// hands its elicitation to the application anyway.
#[test]
fn only_calls_reads_and_prompts_may_ask_for_input() {
    let mut h = stateless_token(None);
    let c = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.result(
        &s,
        json!({"resultType": "input_required", "inputRequests": {"k": {
        "method": "elicitation/create", "params": {"message": "your password?"}}}}),
    );
    let asked = h.count(|a| matches!(a, Action::ServerMessage { call: Some(x), .. } if *x == c));
    assert_eq!(asked, 0, "a listing asked the user for input");
}

/// Review finding 7: The server's input-request key goes unsanitized into the error text.
#[test]
fn a_refused_input_key_is_cleaned_for_messages() {
    let mut h = stateless_token(None);
    let c = h.call(Operation::call_tool("t", json!({})));
    let s = h.take("tools/call");
    h.result(
        &s,
        json!({"resultType": "input_required", "inputRequests": {"\u{1b}]0;pwned\u{7}\r\nk": {
        "method": "elicitation/create", "params": {}}}}),
    );
    let id = h
        .events
        .iter()
        .find_map(|a| match a {
            Action::ServerMessage {
                message: mcp_recovery_core::Message::Request { id, .. },
                ..
            } => Some(id.clone()),
            _ => None,
        })
        .unwrap();
    let now = h.now;
    h.engine.reply(
        id,
        Err(mcp_recovery_core::RpcError::new(-32601, "no handler")),
        now,
    );
    h.pump();
    let text = h.error(c).to_string();
    assert!(!text.chars().any(|ch| ch.is_control()), "{text:?}");
}

/// Review finding 8: Quadratic duplicate check in param_headers: one tool with N declared
/// headers costs O(N^2) under the engine (and the client's dispatcher lock).
#[test]
fn a_tool_declaring_more_than_64_headers_is_left_out() {
    // A schema with hundreds of thousands of declarations would cost
    // seconds of CPU under the client's lock: past 64 the tool is out.
    let tool = |name: &str, n: usize| {
        let props: serde_json::Map<String, Value> = (0..n)
            .map(|i| {
                (
                    format!("p{i}"),
                    json!({"type": "string", "x-mcp-header": format!("h{i}")}),
                )
            })
            .collect();
        json!({"name": name, "inputSchema": {"type": "object", "properties": props}})
    };
    let mut h = stateless_token(None);
    let list = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.result(
        &s,
        json!({"resultType": "complete",
        "tools": [tool("many", 64), tool("too-many", 65), tool("huge", 5_000)]}),
    );
    let kept: Vec<&str> = h.ok(list)["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["many"]);
    assert_eq!(h.count(|a| matches!(a, Action::Warning { .. })), 2);
}

#[test]
fn a_32022_answer_after_progress_is_not_replayed() {
    let mut h = stateless_token(None);
    let c = h.call(Operation::call_tool("relay_write", json!({})));
    let s = h.take("tools/call");
    let stream = format!(
        "event: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}),
        json!({"jsonrpc":"2.0","id":s.json["id"],"error":{"code":-32022,"message":"Unsupported protocol version",
               "data":{"supported":[MODERN_VERSION],"requested":MODERN_VERSION}}})
    );
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        &stream,
    );
    assert_eq!(
        h.sent_count("tools/call"),
        1,
        "re-sent after it ran: {:?}",
        h.ended.get(&c)
    );
}

/// Review finding 10: A stateless stream cut after an event id is "resumed" with a GET the
/// 2026 wire does not have (servers answer 405).
#[test]
fn no_resume_get_on_the_stateless_wire() {
    let mut h = stateless_token(None);
    h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        "id: 1\ndata: \n\n",
    );
    h.advance(std::time::Duration::from_secs(2));
    let gets = h
        .sent
        .iter()
        .filter(|x| x.request.method == mcp_recovery_core::Method::Get)
        .count();
    assert_eq!(gets, 0, "GET with Last-Event-ID on the 2026 wire");
}

/// Review finding 1c: The whole sequence: tools/call sent twice, SessionLost instead of the
/// server's answer, and a breaker failure per call (three open the circuit).
#[test]
fn a_session_word_in_a_tool_error_never_ends_as_session_lost() {
    let mut h = stateless_token(None);
    let call = h.call(Operation::call_tool(
        "open_browser_tab",
        json!({"url": "x"}),
    ));
    let s = h.take("tools/call");
    error_400(&mut h, &s, -32602, "Browser session not found");
    if let Some(p) = h.outbox.pop_front() {
        h.result(&p, discover_result());
        let s = h.take("tools/call");
        error_400(&mut h, &s, -32602, "Browser session not found");
    }
    assert!(
        !matches!(h.ended.get(&call), Some(Err(CallError::SessionLost { .. }))),
        "{:?}; tools/call sent {}; breaker {:?}",
        h.ended.get(&call),
        h.sent_count("tools/call"),
        h.engine.breaker()
    );
}

/// Review finding 11: A half-open breaker's probe that gets "input required" keeps the
/// breaker half-open (probing) while the human answers: every other call
/// fails with CircuitOpen although the server just answered.
#[test]
fn a_probe_answered_input_required_closes_the_breaker() {
    let mut h = stateless_token(None);
    for _ in 0..3 {
        h.call(Operation::list_tools(Some("x")));
        let s = h.take("tools/list");
        h.respond(s.exchange, 500, &[], "boom");
    }
    assert!(matches!(
        h.engine.breaker(),
        mcp_recovery_core::BreakerState::Open { .. }
    ));
    h.advance(std::time::Duration::from_secs(61));
    let probe = h.call(Operation::call_tool("deploy", json!({})));
    let s = h.take("tools/call");
    h.result(
        &s,
        json!({"resultType": "input_required", "requestState": "st", "inputRequests": {"ok": {
        "method": "elicitation/create", "params": {"message": "sure?"}}}}),
    );
    assert!(!h.ended.contains_key(&probe));
    // The user takes a while; meanwhile another caller:
    let other = h.call(Operation::list_tools(None));
    assert!(
        !matches!(
            h.ended.get(&other),
            Some(Err(CallError::CircuitOpen { .. }))
        ),
        "{:?} / breaker {:?}",
        h.ended.get(&other),
        h.engine.breaker()
    );
}

#[test]
fn a_probe_never_answered_falls_back_after_the_probe_timeout() {
    // A server (or a proxy in front of it) that never answers an unknown
    // method: after 10 s the handshake is tried, once, not forever.
    let mut h = auto();
    let call = h.call(Operation::list_tools(None));
    let probe = h.take("server/discover");
    h.advance(std::time::Duration::from_millis(9_999));
    assert!(h.outbox.is_empty());
    h.advance(std::time::Duration::from_millis(1));
    assert!(h
        .events
        .iter()
        .any(|a| matches!(a, Action::Abort { exchange } if *exchange == probe.exchange)));
    h.handshake("s1");
    let s = h.take("tools/list");
    h.result(&s, json!({"tools": []}));
    h.ok(call);
    assert!(
        negotiated(&h)[0].2.contains("unanswered"),
        "{:?}",
        negotiated(&h)
    );
}

#[test]
fn the_cache_is_bounded_and_drops_an_updated_resource() {
    // Two entries at most here: the oldest goes first.
    let mut config = Config::new(URL);
    config.cache_entries = 2;
    let mut h = Harness::negotiating(config);
    h.engine.connect(h.now);
    h.pump();
    let probe = h.take("server/discover");
    h.result(&probe, discover_result());
    let read = |h: &mut Harness, uri: &str, answer: bool| {
        let c = h.call(Operation::read_resource(uri));
        if answer {
            let s = h.take("resources/read");
            h.result(
                &s,
                json!({"contents": [{"uri": uri, "text": uri}], "ttlMs": 60_000}),
            );
        }
        h.ok(c)["contents"][0]["text"].clone()
    };
    read(&mut h, "a://1", true);
    read(&mut h, "a://2", true);
    read(&mut h, "a://3", true);
    assert_eq!(read(&mut h, "a://2", false), "a://2", "kept");
    assert_eq!(read(&mut h, "a://3", false), "a://3", "kept");
    assert_eq!(read(&mut h, "a://1", true), "a://1", "evicted: asked again");
    // `resources/updated` for a://1 arrives on a call's stream.
    let call = h.call(Operation::call_tool("t", json!({})));
    let s = h.take("tools/call");
    let stream = format!(
        "event: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "a://1"}}),
        json!({"jsonrpc": "2.0", "id": s.json["id"], "result": {"content": []}})
    );
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        &stream,
    );
    h.ok(call);
    assert_eq!(read(&mut h, "a://1", true), "a://1", "updated: asked again");
    assert_eq!(
        read(&mut h, "a://3", false),
        "a://3",
        "another resource kept"
    );
}
