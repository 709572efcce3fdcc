//! The event-stream parser, fed the same bytes in one chunk, in chunks the
//! fuzzer chooses (empty ones included) and one byte at a time: the events,
//! the error, the last event id and the retry must be the same every way,
//! and, when no limit is hit, the same as a plain reference reading of the
//! WHATWG algorithm over the whole stream decoded at once.
//!
//! Input: `[n][n chunk lengths][limit selector][stream...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_recovery_core::sse::{SseError, SseEvent, SseParser};
use std::time::Duration;

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<SseEvent>,
    error: Option<SseError>,
    last_event_id: String,
    retry: Option<Duration>,
}

fn run<'a>(limit: usize, chunks: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut p = SseParser::with_max_event_size(limit);
    let mut events = Vec::new();
    let mut error = None;
    for chunk in chunks {
        match p.feed(chunk) {
            Ok(()) => assert!(error.is_none(), "a poisoned parser accepted a chunk"),
            Err(e) => {
                if let Some(first) = &error {
                    assert_eq!(first, &e, "a poisoned parser changed its error");
                }
                error = Some(e);
            }
        }
        while let Some(e) = p.poll_event() {
            events.push(e);
        }
    }
    p.finish();
    assert_eq!(
        p.poll_event(),
        None,
        "finish dispatched an incomplete event"
    );
    for e in &events {
        assert!(
            !e.data.is_empty(),
            "an event with empty data was dispatched"
        );
        assert!(!e.event.is_empty());
        for s in [&e.event, &e.data, &e.id] {
            assert!(!s.contains('\r'), "CR inside a field: {e:?}");
        }
        assert!(!e.event.contains('\n') && !e.id.contains('\n'));
        assert!(!e.id.contains('\0'), "an id with NUL was kept");
    }
    Outcome {
        events,
        error,
        last_event_id: p.last_event_id().to_owned(),
        retry: p.retry(),
    }
}

/// The WHATWG algorithm, read plainly: decode the whole stream, drop one
/// leading BOM, split lines on CRLF, CR or LF, drop the unterminated tail.
/// Plus the core's one documented deviation: empty data is not dispatched.
fn reference(stream: &[u8]) -> (Vec<SseEvent>, String, Option<Duration>) {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut line));
            }
            '\n' => lines.push(std::mem::take(&mut line)),
            c => line.push(c),
        }
    }
    let (mut events, mut data, mut event_type) = (Vec::new(), String::new(), String::new());
    let (mut id_buffer, mut last_id, mut retry) = (String::new(), String::new(), None);
    for line in lines {
        if line.is_empty() {
            last_id.clone_from(&id_buffer);
            data.pop(); // the trailing LF
            if data.is_empty() {
                // WHATWG would dispatch `data:` alone; the core does not.
                event_type.clear();
                continue;
            }
            events.push(SseEvent {
                event: if event_type.is_empty() {
                    "message".into()
                } else {
                    std::mem::take(&mut event_type)
                },
                data: std::mem::take(&mut data),
                id: last_id.clone(),
            });
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line.as_str(), ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }
    (events, last_id, retry)
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16);
    if rest.len() < n + 1 {
        return;
    }
    let (lengths, rest) = rest.split_at(n);
    let (selector, stream) = (rest[0], &rest[1..]);
    // Mostly the default limit; sometimes a tiny one so the limit is hit.
    let limit = match selector % 4 {
        0 => usize::from(selector / 4),
        _ => SseParser::DEFAULT_MAX_EVENT_SIZE,
    };

    let whole = run(limit, std::iter::once(stream));

    let mut chunks = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let len = if lengths.is_empty() {
            1
        } else {
            usize::from(lengths[i % lengths.len()])
        };
        let end = (at + len).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
        i += 1;
        if i > 4 * stream.len() + 16 {
            break; // only zero lengths: the rest in one piece
        }
    }
    chunks.push(&stream[at..]);
    assert_eq!(run(limit, chunks.into_iter()), whole, "chunked differs");

    if stream.len() <= 4096 {
        assert_eq!(run(limit, stream.chunks(1)), whole, "byte by byte differs");
    }

    if whole.error.is_none() {
        let (events, last_id, retry) = reference(stream);
        assert_eq!(whole.events, events, "differs from the reference");
        assert_eq!(whole.last_event_id, last_id);
        assert_eq!(whole.retry, retry);
    } else {
        assert!(limit < SseParser::DEFAULT_MAX_EVENT_SIZE);
    }
});
