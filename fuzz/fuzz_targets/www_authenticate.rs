//! The `WWW-Authenticate` parser never panics on any header, schemes and
//! parameter names it returns are tokens (names lowercase), the Bearer view
//! agrees with the challenge list, and what it returns round-trips: printed
//! back as a well-formed header (quoted values, escapes) it parses to the
//! same challenges. A second mode builds a well-formed header from the
//! input and checks the parser returns exactly what was built.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_recovery_core::oauth::{parse_www_authenticate, BearerChallenge, Challenge};

const TCHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~/";

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TCHARS.contains(&b))
}

fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn print(challenges: &[Challenge]) -> String {
    challenges
        .iter()
        .map(|c| {
            let params: Vec<String> = c
                .params
                .iter()
                .map(|(n, v)| format!("{n}={}", quote(v)))
                .collect();
            if params.is_empty() {
                c.scheme.clone()
            } else {
                format!("{} {}", c.scheme, params.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(header: &str) -> Vec<Challenge> {
    let challenges = parse_www_authenticate(header);
    for c in &challenges {
        assert!(is_token(&c.scheme), "scheme {:?}", c.scheme);
        for (n, _) in &c.params {
            assert!(is_token(n), "name {n:?}");
            assert_eq!(n, &n.to_ascii_lowercase());
        }
    }
    let bearer = BearerChallenge::from_header(header);
    let first = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
    assert_eq!(bearer.is_some(), first.is_some());
    if let (Some(b), Some(c)) = (bearer, first) {
        assert_eq!(b.error.as_deref(), c.param("error"));
        assert_eq!(b.error_description.as_deref(), c.param("error_description"));
        assert_eq!(b.scope.as_deref(), c.param("scope"));
        assert_eq!(b.resource_metadata.as_deref(), c.param("resource_metadata"));
    }
    challenges
}

/// Takes a token of 1..=8 characters from the input.
fn token(input: &mut &[u8], lowercase: bool) -> Option<String> {
    let (&n, rest) = input.split_first()?;
    let n = 1 + usize::from(n % 8);
    if rest.len() < n {
        return None;
    }
    let mut s: String = rest[..n]
        .iter()
        .map(|b| TCHARS[usize::from(*b) % TCHARS.len()] as char)
        .collect();
    if lowercase {
        s.make_ascii_lowercase();
    }
    *input = &rest[n..];
    Some(s)
}

/// Takes a value: up to a 0xFF byte, as text.
fn value(input: &mut &[u8]) -> String {
    let end = input.iter().position(|b| *b == 0xFF).unwrap_or(input.len());
    let v = String::from_utf8_lossy(&input[..end]).into_owned();
    *input = &input[(end + 1).min(input.len())..];
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // Any header.
        let header = String::from_utf8_lossy(rest);
        let challenges = check(&header);
        let printed = print(&challenges);
        assert_eq!(check(&printed), challenges, "round trip of {printed:?}");
    } else {
        // A well-formed header built from the input.
        let mut input = rest;
        let mut built = Vec::new();
        while let Some(scheme) = token(&mut input, false) {
            let mut params = Vec::new();
            while input.first().is_some_and(|b| b % 4 != 0) {
                input = &input[1..];
                let Some(name) = token(&mut input, true) else {
                    break;
                };
                params.push((name, value(&mut input)));
            }
            input = input.get(1..).unwrap_or_default();
            built.push(Challenge { scheme, params });
            if built.len() > 8 {
                break;
            }
        }
        let header = print(&built);
        assert_eq!(check(&header), built, "header {header:?}");
    }
});
