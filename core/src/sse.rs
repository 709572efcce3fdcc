//! Server-Sent Events parser (WHATWG HTML, "interpreting an event stream"),
//! sans-IO: feed bytes as they arrive, pull dispatched events. Chunks may be
//! cut anywhere, including between the CR and LF of a line ending or inside
//! a UTF-8 character. One deliberate deviation: an event whose data is
//! empty is not dispatched (its id still counts), since MCP uses such
//! events only to prime `Last-Event-ID`.

use std::collections::VecDeque;
use std::time::Duration;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Event type; "message" when the stream gave none.
    pub event: String,
    /// The data lines joined with '\n' (trailing newline removed).
    pub data: String,
    /// The last-event-id in force when this event was dispatched ("" when none).
    pub id: String,
}

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line or an event's buffered data exceeded the configured limit.
    #[error("event stream line or event exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// An incremental event-stream parser.
#[derive(Debug, Clone)]
pub struct SseParser {
    limit: usize,
    /// Bytes of the line being read (no terminator).
    line: Vec<u8>,
    /// The previous chunk ended in CR: a leading LF is part of that ending.
    after_cr: bool,
    /// Still at the start of the stream, where one BOM is dropped.
    at_start: bool,
    /// BOM bytes matched so far at the start.
    bom_seen: usize,
    data: String,
    event_type: String,
    id_buffer: String,
    last_event_id: String,
    retry: Option<Duration>,
    ready: VecDeque<SseEvent>,
    poisoned: Option<SseError>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// Default limit for one line / one event's buffered data: 16 MiB.
    pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

    /// A parser with the default limit.
    pub fn new() -> Self {
        Self::with_max_event_size(Self::DEFAULT_MAX_EVENT_SIZE)
    }

    /// A parser refusing lines or events larger than `limit` bytes.
    pub fn with_max_event_size(limit: usize) -> Self {
        SseParser {
            limit,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            bom_seen: 0,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
            ready: VecDeque::new(),
            poisoned: None,
        }
    }

    /// Feeds the next chunk. After an error the parser is poisoned: every
    /// later feed returns the same error.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), SseError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        if self.at_start {
            // The BOM may arrive split over chunks; hold back its prefix.
            while self.bom_seen < BOM.len() {
                match chunk.first() {
                    None => return Ok(()),
                    Some(b) if *b == BOM[self.bom_seen] => {
                        self.bom_seen += 1;
                        chunk = &chunk[1..];
                    }
                    Some(_) => {
                        // Not a BOM after all: what looked like one is data.
                        let held = BOM[..self.bom_seen].to_vec();
                        self.at_start = false;
                        self.bom_seen = 0;
                        self.scan(&held)?;
                        break;
                    }
                }
            }
            self.at_start = false;
        }
        self.scan(chunk)
    }

    fn scan(&mut self, mut chunk: &[u8]) -> Result<(), SseError> {
        // An empty chunk says nothing about the byte after the CR.
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
                None => {
                    self.push_line(chunk)?;
                    return Ok(());
                }
                Some(i) => {
                    self.push_line(&chunk[..i])?;
                    let cr = chunk[i] == b'\r';
                    chunk = &chunk[i + 1..];
                    if cr {
                        match chunk.first() {
                            Some(b'\n') => chunk = &chunk[1..],
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                    let line = std::mem::take(&mut self.line);
                    let r = self.process_line(&line);
                    self.line = line;
                    self.line.clear();
                    r?;
                }
            }
        }
        Ok(())
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(self.poison());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn poison(&mut self) -> SseError {
        let e = SseError::TooLarge { limit: self.limit };
        self.poisoned = Some(e.clone());
        e
    }

    fn process_line(&mut self, line: &[u8]) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &line[..0]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&value);
            }
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(self.poison());
                }
                self.data.push_str(&value);
                self.data.push('\n');
            }
            b"id" if !value.contains('\0') => {
                self.id_buffer.clear();
                self.id_buffer.push_str(&value);
            }
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        // The id sticks even when nothing is dispatched: priming events
        // (id, empty data) exist so a client can resume after them.
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the trailing '\n'
                    // WHATWG dispatches `data:` with an empty value as an empty message;
                    // MCP servers send exactly that as a "priming" event that only
                    // carries an id. It holds no JSON-RPC, so it is not dispatched.
        if data.is_empty() {
            self.data = data;
            self.event_type.clear();
            return;
        }
        let event = if self.event_type.is_empty() {
            "message".to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        self.ready.push_back(SseEvent {
            event,
            data,
            id: self.last_event_id.clone(),
        });
    }

    /// Next dispatched event, in order; `None` when none is ready.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// End of stream: an incomplete event is discarded, per WHATWG.
    pub fn finish(&mut self) {
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.after_cr = false;
    }

    /// The last event ID ("" when none), updated on dispatch, including for
    /// events not dispatched because their data was empty.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the stream asked for with `retry:`, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<SseEvent>, SseParser) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c).unwrap();
            while let Some(e) = p.poll_event() {
                out.push(e);
            }
        }
        (out, p)
    }

    fn parse(s: &str) -> Vec<SseEvent> {
        parse_chunks(&[s.as_bytes()]).0
    }

    fn ev(event: &str, data: &str, id: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.into(),
        }
    }

    #[test]
    fn every_line_ending() {
        for s in [
            "data: a\n\n",
            "data: a\r\n\r\n",
            "data: a\r\r",
            "data: a\r\n\n",
        ] {
            assert_eq!(parse(s), vec![ev("message", "a", "")], "{s:?}");
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_ending() {
        let (events, _) = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(events, vec![ev("message", "a\nb", "")]);
    }

    #[test]
    fn bom_stripped_only_at_start_even_when_split() {
        let (events, _) = parse_chunks(&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"]);
        assert_eq!(events, vec![ev("message", "x", "")]);
        // A BOM later is part of the data; a partial BOM at the start is data too.
        let (events, _) = parse_chunks(&[b"data: \xEF\xBB\xBFy\n\n"]);
        assert_eq!(events, vec![ev("message", "\u{feff}y", "")]);
        let (events, _) = parse_chunks(&[b"\xEF", b"data: z\n\n"]);
        assert_eq!(events.len(), 0, "garbled field name: no data field");
    }

    #[test]
    fn comments_fields_and_spaces() {
        assert_eq!(parse(": keep-alive\n\n"), vec![]);
        assert_eq!(parse("data:  two\n\n"), vec![ev("message", " two", "")]);
        assert_eq!(parse("data:x\n\n"), vec![ev("message", "x", "")]);
        assert_eq!(parse("data\n\n"), vec![], "empty data, nothing dispatched");
        assert_eq!(parse("data\ndata\n\n"), vec![ev("message", "\n", "")]);
        assert_eq!(
            parse("data: a\ndata: b\n\n"),
            vec![ev("message", "a\nb", "")]
        );
        assert_eq!(parse("event: ping\ndata: 1\n\n"), vec![ev("ping", "1", "")]);
        assert_eq!(
            parse("unknown: 1\ndata: 2\n\n"),
            vec![ev("message", "2", "")]
        );
    }

    #[test]
    fn ids_nul_reset_and_priming_events() {
        let (events, p) = parse_chunks(&[b"id: p0\ndata:\n\n"]);
        assert!(events.is_empty());
        assert_eq!(p.last_event_id(), "p0", "priming id kept");
        let (events, p) = parse_chunks(&[b"id: 7\n\ndata: a\n\n"]);
        assert_eq!(events, vec![ev("message", "a", "7")]);
        assert_eq!(p.last_event_id(), "7");
        let (events, p) = parse_chunks(&[b"id: 1\ndata: a\n\nid: b\0c\ndata: b\n\n"]);
        assert_eq!(events[1].id, "1", "id with NUL ignored");
        assert_eq!(p.last_event_id(), "1");
        let (_, p) = parse_chunks(&[b"id: 1\ndata: a\n\nid\ndata: b\n\n"]);
        assert_eq!(p.last_event_id(), "", "empty id resets");
    }

    #[test]
    fn retry_numeric_only() {
        let retry = |s: &str| parse_chunks(&[s.as_bytes()]).1.retry();
        assert_eq!(retry("retry: 1500\n\n"), Some(Duration::from_millis(1500)));
        for bad in [
            "retry: 12a\n\n",
            "retry:\n\n",
            "retry:  5\n\n",
            "retry: -1\n\n",
        ] {
            assert_eq!(retry(bad), None, "{bad:?}");
        }
        assert_eq!(retry("retry: 99999999999999999999999\n\n"), None);
    }

    #[test]
    fn incomplete_event_discarded_at_end() {
        let mut p = SseParser::new();
        p.feed(b"data: a\n\ndata: partial\n").unwrap();
        p.finish();
        assert_eq!(p.poll_event(), Some(ev("message", "a", "")));
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn utf8_split_across_chunks() {
        let s = "data: héllo ✓\n\n".as_bytes();
        let (events, _) = parse_chunks(&[&s[..8], &s[8..16], &s[16..]]);
        assert_eq!(events, vec![ev("message", "héllo ✓", "")]);
    }

    #[test]
    fn real_server_streams() {
        let py =
            "event: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n";
        let node = "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
        for s in [py, node] {
            assert_eq!(
                parse(s),
                vec![ev(
                    "message",
                    r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                    "1"
                )]
            );
        }
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let inputs: [&[u8]; 4] = [
            b"\xEF\xBB\xBFid: 0\r\ndata: \r\n\r\nevent: message\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\n",
            b": c\ndata: a\ndata: b\n\nretry: 10\nid: x\ndata: \xC3\xA9\r\r",
            b"data: 1\r\rdata: 2\r\n\r\ndata: 3\n\n",
            b"event: e\ndata\n\nid\0x\ndata: q\n\n",
        ];
        for input in inputs {
            let (whole, _) = parse_chunks(&[input]);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(parse_chunks(&bytes).0, whole);
            let mut seed: u32 = 12345;
            for _ in 0..50 {
                let mut chunks = Vec::new();
                let mut rest = input;
                while !rest.is_empty() {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let n = 1 + (seed >> 16) as usize % 7;
                    let (a, b) = rest.split_at(n.min(rest.len()));
                    chunks.push(a);
                    rest = b;
                }
                assert_eq!(parse_chunks(&chunks).0, whole);
            }
        }
    }

    #[test]
    fn too_large_lines_and_data_poison_the_parser() {
        let mut p = SseParser::with_max_event_size(16);
        assert_eq!(
            p.feed(b"data: 0123456789abcdef"),
            Err(SseError::TooLarge { limit: 16 })
        );
        assert_eq!(p.feed(b"\n\n"), Err(SseError::TooLarge { limit: 16 }));
        let mut p = SseParser::with_max_event_size(16);
        p.feed(b"data: 0123456\ndata: 0123456\n").unwrap_or(());
        assert_eq!(
            p.feed(b"data: 0123456\n"),
            Err(SseError::TooLarge { limit: 16 })
        );
    }
}
