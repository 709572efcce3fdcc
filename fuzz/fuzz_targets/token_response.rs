//! The token-response parser never panics, and no token ever shows in the
//! `Debug` of what it returns. Two modes: any status and body, where the
//! `Debug` of a parsed response must be exactly its two public non-secret
//! fields; and a JSON object built from the input with access and refresh
//! tokens carrying a marker that no other field has, where neither the
//! `Debug` nor the `Display` of the result or the error may show it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_recovery_core::oauth::{parse_token_response, TokenResponse};
use serde_json::{Map, Value};

const MARK: &str = "SeCrEtMaRk";

fn only_public_fields(r: &TokenResponse) {
    assert_eq!(
        format!("{r:?}"),
        format!(
            "TokenResponse {{ expires_in: {:?}, scope: {:?}, .. }}",
            r.expires_in, r.scope
        )
    );
    assert!(!format!("{:?} {}", r.access_token, r.access_token).contains("Bearer"));
}

/// Text for a non-secret field: anything but the marker.
fn text(bytes: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    while s.contains(MARK) {
        s = s.replace(MARK, "");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[1], data[2]]);
    let rest = &data[3..];
    if data[0] % 2 == 0 {
        if let Ok(r) = parse_token_response(status, rest) {
            assert!((200..300).contains(&status));
            only_public_fields(&r);
        }
        return;
    }
    // Fields separated by 0xFF: access, refresh, token_type, scope,
    // error, error_description, expires_in; flag bits choose which appear.
    let flags = data[0] >> 1;
    let mut parts = rest.split(|b| *b == 0xFF);
    let mut next = || parts.next().unwrap_or_default();
    let access = format!("{}{MARK}", text(next()));
    let refresh = format!("{MARK}{}", text(next()));
    let mut m = Map::new();
    m.insert("access_token".into(), access.into());
    let token_type = text(next());
    let scope = text(next());
    let error = text(next());
    let description = text(next());
    let expires = text(next());
    if flags & 1 != 0 {
        m.insert("refresh_token".into(), refresh.into());
    }
    m.insert(
        "token_type".into(),
        if flags & 2 != 0 {
            "Bearer".into()
        } else {
            token_type.into()
        },
    );
    if flags & 4 != 0 {
        m.insert("scope".into(), scope.into());
    }
    if flags & 8 != 0 {
        m.insert("error".into(), error.into());
    }
    if flags & 16 != 0 {
        m.insert("error_description".into(), description.into());
    }
    if flags & 32 != 0 {
        let v = match expires.parse::<u64>() {
            Ok(n) if flags & 64 != 0 => Value::from(n),
            _ => Value::from(expires),
        };
        m.insert("expires_in".into(), v);
    }
    let body = serde_json::to_vec(&Value::Object(m)).unwrap();
    let shown = match parse_token_response(status, &body) {
        Ok(r) => {
            assert!((200..300).contains(&status) && flags & 8 == 0);
            only_public_fields(&r);
            assert!(r.access_token.header_value().contains(MARK));
            format!("{r:?} {r:#?} {:?}", r.refresh_token)
        }
        Err(e) => format!("{e:?} {e} {e:#?}"),
    };
    assert!(!shown.contains(MARK), "a token leaked: {shown}");
});
