//! The authorization flow as a state machine: every step is a value, every
//! answer an input, so each path runs here without a socket or a clock.

use mcp_recovery_core::oauth::{
    redirect_head_done, redirect_query, redirect_reply, Flow, FlowError, FlowParams, FlowStep,
    OAuthError,
};
use mcp_recovery_core::{FailureKind, HttpRequest, TransportFailure};
use serde_json::{json, Value};

const SERVER: &str = "http://127.0.0.1:8000/mcp";
const REDIRECT: &str = "http://127.0.0.1:5555/callback";
const AS: &str = "http://127.0.0.1:9000";

fn params() -> FlowParams {
    FlowParams::new(SERVER, REDIRECT).pkce("verifier-123", "challenge-456", "state-789")
}

fn fetch(step: FlowStep) -> HttpRequest {
    match step {
        FlowStep::Fetch(r) => r,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

fn json(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn prm() -> Vec<u8> {
    json(json!({"resource": SERVER, "authorization_servers": [AS], "scopes_supported": ["mcp"]}))
}

fn asm(extra: Value) -> Vec<u8> {
    let mut m = json!({
        "issuer": AS,
        "authorization_endpoint": format!("{AS}/authorize"),
        "token_endpoint": format!("{AS}/token"),
        "registration_endpoint": format!("{AS}/register"),
        "code_challenge_methods_supported": ["S256"],
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json(m)
}

/// Runs discovery (the first resource URL fails, the second answers) and
/// returns the flow at its registration request.
fn to_registration(extra: Value) -> (Flow, HttpRequest) {
    let (mut flow, step) = Flow::start(params());
    let first = fetch(step);
    assert!(first
        .url
        .starts_with("http://127.0.0.1:8000/.well-known/oauth-protected-resource"));
    let second =
        fetch(flow.on_failure(TransportFailure::not_sent(FailureKind::Connect, "refused")));
    assert_ne!(first.url, second.url, "the next discovery URL");
    let server = fetch(flow.on_response(200, &prm()));
    assert!(server.url.starts_with(AS), "{}", server.url);
    let register = fetch(flow.on_response(200, &asm(extra)));
    (flow, register)
}

#[test]
fn the_whole_flow_discovery_registration_redirect_token() {
    let (mut flow, register) = to_registration(json!({}));
    assert_eq!(&*register.url, format!("{AS}/register"));
    let body: Value = serde_json::from_slice(&register.body).unwrap();
    assert_eq!(body["redirect_uris"][0], REDIRECT);
    let url = match flow.on_response(201, &json(json!({"client_id": "c1"}))) {
        FlowStep::Open(url) => url,
        other => panic!("expected the authorization URL, got {other:?}"),
    };
    assert!(url.starts_with(&format!("{AS}/authorize?")), "{url}");
    for part in [
        "client_id=c1",
        "code_challenge=challenge-456",
        "code_challenge_method=S256",
        "state=state-789",
        "scope=mcp",
    ] {
        assert!(url.contains(part), "{part} in {url}");
    }
    assert!(!url.contains("verifier-123"), "the verifier stays secret");
    let token = fetch(flow.on_redirect("code=the-code&state=state-789"));
    // Neither the flow nor its requests show their secrets in Debug.
    for shown in [format!("{flow:?}"), format!("{token:?}")] {
        for secret in ["verifier-123", "state-789", "the-code"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    assert_eq!(&*token.url, format!("{AS}/token"));
    let form = String::from_utf8(token.body.clone()).unwrap();
    assert!(form.contains("code=the-code"), "{form}");
    assert!(form.contains("code_verifier=verifier-123"), "{form}");
    let answer = json(json!({"access_token": "at", "token_type": "Bearer",
        "refresh_token": "rt", "expires_in": 60}));
    match flow.on_response(200, &answer) {
        FlowStep::Done(done) => {
            assert_eq!(done.tokens.access_token.header_value(), "Bearer at");
            assert_eq!(done.token_endpoint, format!("{AS}/token"));
            assert_eq!(done.client.id, "c1");
            assert_eq!(done.resource, SERVER);
            assert_eq!(done.scope.as_deref(), Some("mcp"));
        }
        other => panic!("expected Done, got {other:?}"),
    }
    // Over: any further input is a failure, never a panic or a new step.
    assert!(matches!(
        flow.on_redirect("code=x&state=state-789"),
        FlowStep::Failed(_)
    ));
    assert!(matches!(flow.on_response(200, b"{}"), FlowStep::Failed(_)));
}

#[test]
fn a_redirect_with_another_state_or_issuer_ends_the_flow() {
    for (query, iss_required) in [
        ("code=c&state=forged", false),
        (
            "code=c&state=state-789&iss=http%3A%2F%2Fevil.example",
            false,
        ),
        ("code=c&state=state-789", true),
    ] {
        let extra = json!({"authorization_response_iss_parameter_supported": iss_required});
        let (mut flow, _) = to_registration(extra);
        let step = flow.on_response(201, &json(json!({"client_id": "c1"})));
        assert!(matches!(step, FlowStep::Open(_)));
        match flow.on_redirect(query) {
            FlowStep::Failed(FlowError::OAuth(OAuthError::Redirect(_))) => {}
            other => panic!("{query}: expected a redirect error, got {other:?}"),
        }
    }
}

#[test]
fn a_server_without_pkce_or_a_client_is_refused() {
    let (mut flow, step) = Flow::start(params());
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let no_pkce = asm(json!({"code_challenge_methods_supported": ["plain"]}));
    assert!(matches!(
        flow.on_response(200, &no_pkce),
        FlowStep::Failed(FlowError::OAuth(OAuthError::NoPkce))
    ));
    // No registration endpoint and no client id: nothing to authorize as.
    let (mut flow, step) = Flow::start(params());
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let mut md: Value = serde_json::from_slice(&asm(json!({}))).unwrap();
    md.as_object_mut().unwrap().remove("registration_endpoint");
    assert!(matches!(
        flow.on_response(200, &json(md)),
        FlowStep::Failed(FlowError::OAuth(OAuthError::Discovery(_)))
    ));
}

#[test]
fn a_pre_registered_client_skips_registration_and_step_up_adds_scope() {
    let mut p = params();
    p.client_id = Some("pre".into());
    p.scope = Some("read".into());
    p.step_up = true;
    p.challenge = Some(r#"Bearer error="insufficient_scope", scope="write""#.into());
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    match flow.on_response(200, &asm(json!({}))) {
        FlowStep::Open(url) => {
            assert!(url.contains("client_id=pre"), "{url}");
            assert!(url.contains("scope=read%20write"), "{url}");
        }
        other => panic!("expected the authorization URL, got {other:?}"),
    }
}

#[test]
fn every_discovery_url_failing_ends_in_the_last_reason() {
    let (mut flow, mut step) = Flow::start(params());
    let mut fetches = 0;
    loop {
        match step {
            FlowStep::Fetch(_) => {
                fetches += 1;
                assert!(fetches < 10, "discovery must end");
                step = flow.on_response(404, b"not here");
            }
            FlowStep::Failed(FlowError::OAuth(OAuthError::Discovery(m))) => {
                assert!(m.contains("HTTP 404"), "{m}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(fetches >= 2, "path and root well-known URIs");
}

#[test]
fn the_loopback_answers_only_its_callback_path() {
    let head = b"GET /callback?code=a&state=b HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(redirect_query(head).as_deref(), Some("code=a&state=b"));
    assert!(String::from_utf8(redirect_reply(head))
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    for other in [
        &b"GET /favicon.ico HTTP/1.1\r\n\r\n"[..],
        b"GET /callbackXYZ?code=a HTTP/1.1\r\n\r\n",
        b"POST /callback?code=a HTTP/1.1\r\n\r\n",
        b"\xff\xfe garbage",
        b"",
    ] {
        assert_eq!(redirect_query(other), None);
        assert!(String::from_utf8(redirect_reply(other))
            .unwrap()
            .starts_with("HTTP/1.1 404"));
    }
    // The listener reads up to the blank line, or 16 KiB at most.
    assert!(!redirect_head_done(b"GET /callback?code=a HTTP/1.1\r\n"));
    assert!(redirect_head_done(head));
    assert!(redirect_head_done(&vec![b'a'; 16 * 1024]));
}
