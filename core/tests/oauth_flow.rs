//! The authorization flow as a state machine: every step is a value, every
//! answer an input, so each path runs here without a socket or a clock.

use mcp_recovery_core::oauth::{
    redirect_head_done, redirect_query, redirect_reply, Enterprise, Flow, FlowError, FlowParams,
    FlowStep, Grant, OAuthError, ProofRequest,
};
use mcp_recovery_core::{FailureKind, HttpRequest, TransportFailure};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

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
fn without_any_metadata_the_2025_03_26_defaults_of_the_origin_are_used() {
    // No protected resource metadata, no authorization server metadata: a
    // 2025-03-26 server is its own authorization server, at its origin's
    // `/authorize`, `/token` and `/register`.
    let (mut flow, mut step) = Flow::start(params());
    let mut urls = Vec::new();
    let register = loop {
        match step {
            FlowStep::Fetch(r) if r.method == mcp_recovery_core::Method::Get => {
                urls.push(r.url.to_string());
                assert!(urls.len() < 10, "discovery must end");
                step = flow.on_response(404, b"not here");
            }
            FlowStep::Fetch(r) => break r,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        urls,
        [
            "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp",
            "http://127.0.0.1:8000/.well-known/oauth-protected-resource",
            "http://127.0.0.1:8000/.well-known/oauth-authorization-server",
            "http://127.0.0.1:8000/.well-known/openid-configuration",
        ]
    );
    assert_eq!(&*register.url, "http://127.0.0.1:8000/register");
    let url = match flow.on_response(201, &json(json!({"client_id": "c1"}))) {
        FlowStep::Open(url) => url,
        other => panic!("{other:?}"),
    };
    assert!(url.starts_with("http://127.0.0.1:8000/authorize?"), "{url}");
    // The resource is the server's own URL.
    assert!(
        url.contains("resource=http%3A%2F%2F127.0.0.1%3A8000%2Fmcp"),
        "{url}"
    );
    let token = fetch(flow.on_redirect("code=c&state=state-789"));
    assert_eq!(&*token.url, "http://127.0.0.1:8000/token");
    // A registration refused there ends the flow: no further guessing.
    let (mut flow, mut step) = Flow::start(params());
    while let FlowStep::Fetch(r) = &step {
        if r.method != mcp_recovery_core::Method::Get {
            break;
        }
        step = flow.on_response(404, b"not here");
    }
    assert!(matches!(flow.on_response(404, b"no"), FlowStep::Failed(_)));
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

/// Discovery up to the protected resource metadata `prm`; the next step.
fn after_resource(prm: Value) -> (Flow, FlowStep) {
    let (mut flow, step) = Flow::start(params());
    fetch(step);
    let step = flow.on_response(200, &json(prm));
    (flow, step)
}

#[test]
fn metadata_for_another_resource_is_refused() {
    // RFC 9728 §3.3: a server whose metadata names another resource would
    // send our browser, and later our tokens, to someone else's server.
    for other in [
        "http://127.0.0.1:8001/mcp",   // another port
        "https://127.0.0.1:8000/mcp",  // another scheme
        "http://127.0.0.1:8000/other", // beside it
        "http://127.0.0.1:8000/mcp/x", // under it: narrower than the server
        "http://evil.example/mcp",
    ] {
        let (_, step) = after_resource(json!({"resource": other, "authorization_servers": [AS]}));
        match step {
            FlowStep::Failed(FlowError::OAuth(OAuthError::ResourceMismatch { .. })) => {}
            other_step => panic!("{other}: expected ResourceMismatch, got {other_step:?}"),
        }
    }
}

#[test]
fn the_resource_is_sent_exactly_as_published() {
    // A pathless resource covering the server (`http://h:p` for
    // `http://h:p/mcp`): accepted, and sent as it is, no `/` added, in the
    // authorization URL, the token request and for refreshes.
    let published = "http://127.0.0.1:8000";
    let (mut flow, step) =
        after_resource(json!({"resource": published, "authorization_servers": [AS]}));
    fetch(step);
    fetch(flow.on_response(200, &asm(json!({}))));
    let url = match flow.on_response(201, &json(json!({"client_id": "c1"}))) {
        FlowStep::Open(url) => url,
        other => panic!("{other:?}"),
    };
    assert!(
        url.contains("resource=http%3A%2F%2F127.0.0.1%3A8000&")
            || url.ends_with("resource=http%3A%2F%2F127.0.0.1%3A8000"),
        "{url}"
    );
    let token = fetch(flow.on_redirect("code=c&state=state-789"));
    let form = String::from_utf8(token.body.clone()).unwrap();
    assert!(
        form.contains("resource=http%3A%2F%2F127.0.0.1%3A8000&")
            || form.ends_with("resource=http%3A%2F%2F127.0.0.1%3A8000"),
        "{form}"
    );
    match flow.on_response(
        200,
        &json(json!({"access_token": "at", "token_type": "Bearer"})),
    ) {
        FlowStep::Done(done) => {
            assert_eq!(done.resource, SERVER, "bound to the server");
            assert_eq!(done.resource_indicator, published);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn metadata_naming_another_issuer_is_a_mix_up() {
    // RFC 8414 §3.3: metadata fetched for AS that names another issuer
    // (whose redirect `iss` would then be "checked" against itself).
    let (mut flow, step) =
        after_resource(json!({"resource": SERVER, "authorization_servers": [AS]}));
    fetch(step);
    let evil = asm(json!({"issuer": "http://127.0.0.1:9999"}));
    match flow.on_response(200, &evil) {
        FlowStep::Failed(FlowError::OAuth(OAuthError::IssuerMismatch { got, .. })) => {
            assert_eq!(got, "http://127.0.0.1:9999/")
        }
        other => panic!("expected IssuerMismatch, got {other:?}"),
    }
    // A pathless issuer written with its slash is the same issuer.
    let (mut flow, step) =
        after_resource(json!({"resource": SERVER, "authorization_servers": [AS]}));
    fetch(step);
    let same = asm(json!({"issuer": format!("{AS}/")}));
    assert!(matches!(flow.on_response(200, &same), FlowStep::Fetch(_)));
}

#[test]
fn loopback_is_a_parsed_address_and_discovery_urls_obey_the_endpoint_policy() {
    use mcp_recovery_core::oauth::check_endpoint;
    for ok in [
        "http://127.0.0.1:9/token",
        "http://127.8.9.10/token",
        "http://[::1]:9/token",
        "http://localhost/token",
        "http://LOCALHOST:1/token",
        "https://auth.example/token",
    ] {
        assert!(check_endpoint(ok).is_ok(), "{ok}");
    }
    for refused in [
        "http://127.attacker.example/token",
        "http://127.0.0.1.nip.io/token",
        "http://localhost.attacker.example/token",
        "http://evil.localhost/token",
        "http://auth.example/token",
        "ftp://127.0.0.1/token",
    ] {
        assert!(check_endpoint(refused).is_err(), "{refused}");
    }
    // A challenge pointing discovery at plain HTTP on another host: not
    // followed; the server's own well-known URLs are tried instead.
    let mut p = FlowParams::new(SERVER, REDIRECT).pkce("v", "c", "s");
    p.challenge = Some(
        r#"Bearer resource_metadata="http://evil.example/.well-known/oauth-protected-resource""#
            .into(),
    );
    let (_, step) = Flow::start(p);
    let first = fetch(step);
    assert!(
        first.url.starts_with("http://127.0.0.1:8000/"),
        "{}",
        first.url
    );
    // An authorization server over plain HTTP elsewhere: refused before
    // any request goes to it.
    let (_, step) = after_resource(json!({"resource": SERVER,
        "authorization_servers": ["http://auth.example"]}));
    assert!(
        matches!(
            step,
            FlowStep::Failed(FlowError::OAuth(OAuthError::Endpoint(_)))
        ),
        "{step:?}"
    );
}

#[test]
fn the_client_credentials_grant_needs_no_person() {
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.grant = Grant::ClientCredentials;
    p.client_id = Some("svc".into());
    p.client_secret = Some("s3cret".into());
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let extra = json!({"token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "grant_types_supported": ["client_credentials"]});
    let token = fetch(flow.on_response(200, &asm(extra)));
    assert_eq!(&*token.url, format!("{AS}/token"));
    let form = String::from_utf8(token.body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=mcp"), "{form}");
    assert!(
        !form.contains("s3cret"),
        "the secret goes in the Basic header"
    );
    assert!(token
        .header("authorization")
        .is_some_and(|h| h.starts_with("Basic ")));
    assert!(!format!("{token:?}").contains("s3cret"));
    match flow.on_response(
        200,
        &json(json!({"access_token": "cc", "token_type": "Bearer"})),
    ) {
        FlowStep::Done(done) => {
            assert_eq!(done.client.id, "svc");
            assert_eq!(done.resource, SERVER);
        }
        other => panic!("{other:?}"),
    }
    // Without a client id there is nobody to be.
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.grant = Grant::ClientCredentials;
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    assert!(matches!(
        flow.on_response(200, &asm(json!({}))),
        FlowStep::Failed(_)
    ));
}

#[test]
fn a_client_assertion_is_signed_for_the_issuer_and_sent_instead_of_a_secret() {
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.grant = Grant::ClientCredentials;
    p.client_id = Some("svc".into());
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    p.client_assertion = Some(std::sync::Arc::new(move |aud: &str| {
        seen.lock().unwrap().push(aud.to_owned());
        Ok("header.claims.signature".to_owned())
    }));
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let token = fetch(flow.on_response(
        200,
        &asm(json!({
        "token_endpoint_auth_methods_supported": ["private_key_jwt"]})),
    ));
    assert_eq!(
        *asked.lock().unwrap(),
        [AS.to_owned()],
        "signed for the issuer"
    );
    let form = String::from_utf8(token.body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains(
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    ), "{form}");
    assert!(
        form.contains("client_assertion=header.claims.signature"),
        "{form}"
    );
    assert!(token.header("authorization").is_none());
    assert!(
        !format!("{token:?}").contains("signature"),
        "the assertion is a secret"
    );
}

#[test]
fn a_server_in_trouble_is_not_a_2025_03_26_server() {
    // 502 on the metadata (not 404): no fallback to the server's own
    // origin, so no credential goes to endpoints nobody advertised.
    let (mut flow, mut step) = Flow::start(params());
    let mut fetched = Vec::new();
    let end = loop {
        match step {
            FlowStep::Fetch(r) => {
                fetched.push(r.url.to_string());
                assert!(fetched.len() < 10);
                step = flow.on_response(502, b"bad gateway");
            }
            other => break other,
        }
    };
    assert!(matches!(end, FlowStep::Failed(_)), "{end:?}");
    assert!(
        fetched
            .iter()
            .all(|u| u.contains("oauth-protected-resource")),
        "{fetched:?}"
    );
}

/// An unsigned compact JWT whose claims name `aud` (the flow reads it,
/// never verifies it).
fn jwt_for(aud: Value) -> String {
    use mcp_recovery_core::oauth::base64;
    let claims = json!({"iss": "https://idp.example", "sub": "workload", "aud": aud});
    format!(
        "{}.{}.sig",
        base64(br#"{"alg":"ES256"}"#, true),
        base64(claims.to_string().as_bytes(), true)
    )
}

fn form_of(r: &HttpRequest) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}

#[test]
fn a_workload_assertion_is_asked_for_the_issuer_and_a_refusal_ends_the_flow() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.client_id = Some("workload".into());
    p.grant = Grant::JwtBearer(Arc::new(move |aud: &str| {
        seen.lock().unwrap().push(aud.to_owned());
        Ok(jwt_for(json!(aud)))
    }));
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let extra = json!({"grant_types_supported": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "token_endpoint_auth_methods_supported": ["none"]});
    let token = fetch(flow.on_response(200, &asm(extra.clone())));
    assert_eq!(*asked.lock().unwrap(), [AS.to_owned()]);
    let form = form_of(&token);
    assert!(
        form.starts_with(&format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            jwt_for(json!(AS))
        )),
        "{form}"
    );
    assert!(
        form.contains("resource=http%3A%2F%2F127.0.0.1%3A8000%2Fmcp"),
        "{form}"
    );
    assert!(form.contains("client_id=workload"), "{form}");
    assert!(
        !format!("{token:?}").contains(&jwt_for(json!(AS))),
        "the assertion is a secret"
    );
    // A refusal is the end: no second request, no other grant.
    match flow.on_response(400, &json(json!({"error": "invalid_grant"}))) {
        FlowStep::Failed(FlowError::OAuth(e)) => assert!(e.needs_reauth(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(flow.on_response(200, b"{}"), FlowStep::Failed(_)));

    // No client id: the assertion alone names the workload.
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.grant = Grant::JwtBearer(Arc::new(|_: &str| {
        Ok(jwt_for(json!(["x", format!("{AS}/")])))
    }));
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let form = form_of(&fetch(flow.on_response(200, &asm(extra))));
    assert!(!form.contains("client_id"), "{form}");
    // A token made for another server (what a resource naming a hostile
    // authorization server would collect), or no JWT at all: never sent.
    for wrong in [
        jwt_for(json!("https://elsewhere.example")),
        "opaque".to_owned(),
    ] {
        let mut p = FlowParams::new(SERVER, REDIRECT);
        p.grant = Grant::JwtBearer(Arc::new(move |_: &str| Ok(wrong.clone())));
        let (mut flow, step) = Flow::start(p);
        fetch(step);
        fetch(flow.on_response(200, &prm()));
        assert!(matches!(
            flow.on_response(200, &asm(json!({}))),
            FlowStep::Failed(_)
        ));
    }
    // A source that cannot give one: a typed failure, nothing sent.
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.grant = Grant::JwtBearer(Arc::new(|_: &str| Err("token file missing".to_owned())));
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    assert!(matches!(
        flow.on_response(200, &asm(json!({}))),
        FlowStep::Failed(_)
    ));
}

#[test]
fn enterprise_managed_exchanges_the_id_token_then_presents_the_id_jag() {
    const IDP: &str = "http://127.0.0.1:9100/token";
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.client_id = Some("mcp-client".into());
    p.client_secret = Some("mcp-secret".into());
    let mut idp = Enterprise::new(IDP, "idp-client", |_: &str| Ok("id.token.sig".to_owned()));
    idp.client_secret = None;
    p.grant = Grant::Enterprise(Arc::new(idp));
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let extra = json!({"token_endpoint_auth_methods_supported": ["client_secret_basic"]});
    let exchange = fetch(flow.on_response(200, &asm(extra)));
    assert_eq!(&*exchange.url, IDP);
    let form = form_of(&exchange);
    for part in [
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        "requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid-jag",
        "audience=http%3A%2F%2F127.0.0.1%3A9000",
        "resource=http%3A%2F%2F127.0.0.1%3A8000%2Fmcp",
        "subject_token=id.token.sig",
        "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token",
        "client_id=idp-client",
    ] {
        assert!(form.contains(part), "{part} in {form}");
    }
    assert!(
        !form.contains("mcp-secret"),
        "the MCP client's secret stays with its server"
    );
    // The identity provider's answer: an ID-JAG, no access token.
    let jag = json(json!({"access_token": "jag.jwt.sig", "token_type": "N_A",
        "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag"}));
    let token = fetch(flow.on_response(200, &jag));
    assert_eq!(&*token.url, format!("{AS}/token"));
    let form = form_of(&token);
    assert!(form.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=jag.jwt.sig"), "{form}");
    assert!(token
        .header("authorization")
        .is_some_and(|h| h.starts_with("Basic ")));
    match flow.on_response(
        200,
        &json(json!({"access_token": "at", "token_type": "Bearer"})),
    ) {
        FlowStep::Done(done) => assert_eq!(done.client.id, "mcp-client"),
        other => panic!("{other:?}"),
    }

    // Anything but an ID-JAG from the identity provider ends the flow.
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.client_id = Some("mcp-client".into());
    p.grant = Grant::Enterprise(Arc::new(Enterprise::new(IDP, "idp", |_: &str| {
        Ok("t".to_owned())
    })));
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    fetch(flow.on_response(200, &asm(json!({}))));
    let wrong = json(json!({"access_token": "x", "token_type": "Bearer",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}));
    assert!(matches!(flow.on_response(200, &wrong), FlowStep::Failed(_)));
    // An identity provider over plain HTTP elsewhere is never sent the ID token.
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.client_id = Some("c".into());
    p.grant = Grant::Enterprise(Arc::new(Enterprise::new(
        "http://idp.example/token",
        "idp",
        |_: &str| Ok("t".to_owned()),
    )));
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    assert!(matches!(
        flow.on_response(200, &asm(json!({}))),
        FlowStep::Failed(FlowError::OAuth(OAuthError::Endpoint(_)))
    ));
}

/// A prover that records what it was asked and returns a numbered proof.
fn recording_prover() -> (
    Arc<mcp_recovery_core::oauth::DpopProver>,
    Arc<Mutex<Vec<String>>>,
) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let prover = move |r: &ProofRequest<'_>| {
        let mut seen = seen.lock().unwrap();
        seen.push(format!(
            "{} {} {:?} {:?}",
            r.method, r.url, r.nonce, r.access_token
        ));
        Ok(format!("proof-{}", seen.len()))
    };
    (Arc::new(prover), asked)
}

#[test]
fn dpop_proves_each_token_request_and_takes_the_servers_nonce_once() {
    let (prover, asked) = recording_prover();
    let mut p = params();
    p.client_id = Some("c1".into());
    p.dpop = Some(prover);
    let (mut flow, step) = Flow::start(p);
    let md = fetch(step);
    assert!(md.header("dpop").is_none(), "no proof for discovery");
    fetch(flow.on_response(200, &prm()));
    let extra = json!({"dpop_signing_alg_values_supported": ["ES256"]});
    let FlowStep::Open(_) = flow.on_response(200, &asm(extra)) else {
        panic!()
    };
    let token = fetch(flow.on_redirect("code=c&state=state-789"));
    assert_eq!(token.header("dpop"), Some("proof-1"));
    // The authorization server wants a nonce: the same request, a new proof.
    let again = fetch(flow.on_answer(
        400,
        &[("DPoP-Nonce", "as-nonce")],
        &json(json!({"error": "use_dpop_nonce"})),
    ));
    assert_eq!(again.header("dpop"), Some("proof-2"));
    assert_eq!(again.body, token.body);
    assert_eq!(
        *asked.lock().unwrap(),
        [
            "POST http://127.0.0.1:9000/token None None",
            "POST http://127.0.0.1:9000/token Some(\"as-nonce\") None"
        ]
    );
    match flow.on_response(
        200,
        &json(json!({"access_token": "at", "token_type": "DPoP"})),
    ) {
        FlowStep::Done(done) => {
            assert_eq!(done.tokens.access_token.header_value(), "DPoP at");
            assert_eq!(done.tokens.access_token.dpop_token(), Some("at"));
        }
        other => panic!("{other:?}"),
    }

    // Asked for a nonce a second time: no loop, the flow fails.
    let (prover, _) = recording_prover();
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.grant = Grant::ClientCredentials;
    p.client_id = Some("svc".into());
    p.client_secret = Some("s".into());
    p.dpop = Some(prover);
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let first = fetch(flow.on_response(200, &asm(json!({}))));
    assert_eq!(first.header("dpop"), Some("proof-1"));
    let nonce = json(json!({"error": "use_dpop_nonce"}));
    fetch(flow.on_answer(400, &[("DPoP-Nonce", "n1")], &nonce));
    assert!(matches!(
        flow.on_answer(400, &[("DPoP-Nonce", "n2")], &nonce),
        FlowStep::Failed(_)
    ));

    // An authorization server that takes no ES256 proofs: said at once.
    let (prover, asked) = recording_prover();
    let mut p = params();
    p.dpop = Some(prover);
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    match flow.on_response(
        200,
        &asm(json!({"dpop_signing_alg_values_supported": ["RS256"]})),
    ) {
        FlowStep::Failed(FlowError::OAuth(OAuthError::Discovery(m))) => {
            assert!(m.contains("RS256"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(asked.lock().unwrap().is_empty());
    // Without DPoP a nonce challenge is just a failed token request.
    let mut p = FlowParams::new(SERVER, REDIRECT);
    p.grant = Grant::ClientCredentials;
    p.client_id = Some("svc".into());
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let token = fetch(flow.on_response(200, &asm(json!({}))));
    assert!(token.header("dpop").is_none());
    assert!(matches!(
        flow.on_answer(400, &[("DPoP-Nonce", "n1")], &nonce),
        FlowStep::Failed(_)
    ));
}

#[test]
fn a_client_registered_earlier_is_reused_at_its_server_only() {
    // The same authorization server: straight to the browser, no
    // registration, and the outcome says the client is a registered one.
    let mut p = params();
    p.client_id = Some("registered-1".into());
    p.registered_for = Some(format!("{AS}/token"));
    p.registered_scope = Some("mcp extra".into());
    let (mut flow, step) = Flow::start(p.clone());
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let FlowStep::Open(url) = flow.on_response(200, &asm(json!({}))) else {
        panic!("expected the browser step")
    };
    assert!(url.contains("client_id=registered-1"), "{url}");
    let token = fetch(flow.on_redirect("code=c&state=state-789"));
    assert!(form_of(&token).contains("client_id=registered-1"));
    match flow.on_response(
        200,
        &json(json!({"access_token": "at", "token_type": "Bearer"})),
    ) {
        FlowStep::Done(done) => assert!(done.registered),
        other => panic!("{other:?}"),
    }
    // The resource moved to another authorization server: a registration
    // there, never the old client id.
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let moved = json!({"token_endpoint": format!("{AS}/v2/token")});
    let register = fetch(flow.on_response(200, &asm(moved)));
    assert_eq!(&*register.url, format!("{AS}/register"));
    // Asking for more than the registration did: a new registration.
    let mut more = params();
    more.client_id = Some("registered-1".into());
    more.registered_for = Some(format!("{AS}/token"));
    more.registered_scope = Some("extra".into());
    let (mut flow, step) = Flow::start(more);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let register = fetch(flow.on_response(200, &asm(json!({}))));
    assert_eq!(
        &*register.url,
        format!("{AS}/register"),
        "mcp was not registered for"
    );
    // A pre-registered client is no registered one.
    let mut p = params();
    p.client_id = Some("configured".into());
    let (mut flow, step) = Flow::start(p);
    fetch(step);
    fetch(flow.on_response(200, &prm()));
    let FlowStep::Open(_) = flow.on_response(200, &asm(json!({}))) else {
        panic!()
    };
    fetch(flow.on_redirect("code=c&state=state-789"));
    match flow.on_response(
        200,
        &json(json!({"access_token": "at", "token_type": "Bearer"})),
    ) {
        FlowStep::Done(done) => assert!(!done.registered),
        other => panic!("{other:?}"),
    }
}
