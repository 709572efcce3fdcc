//! The failure classifier over arbitrary statuses, bodies, JSON-RPC errors
//! and transport failures: it never panics, a cancel never recovers, the
//! session path needs a session id on a sessionful protocol, only 401 is
//! the auth path, a transport failure keeps its ambiguity, messages
//! surfaced are bounded and clean, a JSON-RPC error is an expired session
//! only when its whole message is a phrase, and a phrase added to the
//! allow-list matches itself in any ASCII case.
//!
//! Input: `[flags][status hi][status lo][code: 8 bytes][rest...]`, where the
//! rest is a body or a message, optionally `phrase\0message`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_recovery_core::classify::{classify, Class, Context, Failure, SessionPatterns};
use mcp_recovery_core::{FailureKind, RpcError, TransportFailure};

const KINDS: [FailureKind; 5] = [
    FailureKind::Connect,
    FailureKind::Reset,
    FailureKind::Timeout,
    FailureKind::Cancelled,
    FailureKind::Other,
];

fn check_message(m: &str) {
    assert!(m.len() <= 512 + '…'.len_utf8(), "message not bounded");
    assert!(!m.chars().any(char::is_control), "control character kept");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let flags = data[0];
    let status = u16::from_be_bytes([data[1], data[2]]);
    let code = i64::from_be_bytes(data[3..11].try_into().unwrap());
    let rest = &data[11..];
    let ctx = Context {
        sent_session_id: flags & 1 != 0,
        sessionless: flags & 2 != 0,
    };
    let session_possible = ctx.sent_session_id && !ctx.sessionless;

    let mut patterns = SessionPatterns::default();
    let (phrase, rest) = match rest.iter().position(|b| *b == 0) {
        Some(i) if flags & 4 != 0 => (Some(&rest[..i]), &rest[i + 1..]),
        _ => (None, rest),
    };
    if let Some(phrase) = phrase {
        let phrase = String::from_utf8_lossy(phrase);
        patterns.add(&phrase);
        let p = phrase.trim();
        if !p.is_empty() {
            // The phrase in another ASCII case, inside a longer message.
            let flipped: String = p
                .chars()
                .map(|c| {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            assert!(patterns.matches(&format!("x {flipped} y")), "{p:?}");
            // Alone, it is a whole session message (a phrase of words; one
            // with a label or a colon in it reads as a label and an id).
            if p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') {
                assert!(patterns.is_session_message(&flipped), "{p:?}");
            }
        }
    }
    let text = String::from_utf8_lossy(rest);

    let class = match (flags >> 3) % 3 {
        0 => {
            let failure = Failure::Status { status, body: rest };
            let class = classify(ctx, failure, &patterns);
            match &class {
                Class::Auth => assert_eq!(status, 401),
                Class::SessionExpired => {
                    assert!(session_possible);
                    assert!(matches!(status, 400 | 401 | 404), "{status}");
                }
                Class::Http { status: s, message } => {
                    assert_eq!(*s, status);
                    check_message(message);
                }
                Class::Application(_) => assert!(matches!(status, 400 | 404)),
                other => panic!("a status gave {other:?}"),
            }
            class
        }
        1 => {
            let e = RpcError::new(code, text.as_ref());
            let class = classify(ctx, Failure::Rpc(&e), &patterns);
            match &class {
                Class::SessionExpired => {
                    assert!(session_possible);
                    // The whole message is a phrase, never one among words.
                    assert!(patterns.is_session_message(&e.message));
                    assert!(patterns.matches(&e.message));
                }
                Class::Application(got) => assert_eq!(got, &e),
                other => panic!("a JSON-RPC error gave {other:?}"),
            }
            class
        }
        _ => {
            let kind = KINDS[usize::from(flags >> 5) % KINDS.len()];
            let t = TransportFailure {
                kind,
                sent: flags & 4 != 0,
                message: text.clone().into_owned(),
            };
            let class = classify(ctx, Failure::Transport(&t), &patterns);
            if kind == FailureKind::Cancelled {
                assert_eq!(class, Class::Cancelled, "a cancel recovered");
                assert!(!class.counts_as_unreachable());
            } else {
                assert_eq!(class, Class::Transport { ambiguous: t.sent });
                assert!(class.counts_as_unreachable());
            }
            class
        }
    };
    if !session_possible {
        assert_ne!(
            class,
            Class::SessionExpired,
            "session path without a session"
        );
    }
    if matches!(
        class,
        Class::Application(_) | Class::Auth | Class::SessionExpired
    ) {
        assert!(!class.counts_as_unreachable());
    }
});
