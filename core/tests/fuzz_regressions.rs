//! Inputs the fuzz targets in `fuzz/` found, kept as plain tests so the
//! ordinary test command guards them (see RELIABILITY.md).

use mcp_recovery_core::sse::{SseEvent, SseParser};

fn events(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c).unwrap();
        while let Some(e) = p.poll_event() {
            out.push(e);
        }
    }
    out
}

/// `sse_chunking`: an empty chunk between the CR and the LF of one CRLF
/// made the LF a second line ending, so a blank line appeared that the
/// server never sent and an unfinished event was dispatched early.
#[test]
fn empty_chunk_between_cr_and_lf_is_not_a_line_ending() {
    let stream: &[u8] = b"data:\xfe\x04r~D\r\n";
    assert_eq!(events(&[stream]), vec![]);
    assert_eq!(events(&[b"", b"data:\xfe\x04r~D\r", b"", b"\n"]), vec![]);
    // And the event that does come is the same however it is cut.
    let full: &[u8] = b"data: a\r\ndata: b\r\n\r\n";
    let whole = events(&[full]);
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].data, "a\nb");
    assert_eq!(
        events(&[
            b"data: a\r",
            b"",
            b"\ndata: b\r",
            b"",
            b"",
            b"\n\r",
            b"",
            b"\n"
        ]),
        whole
    );
}
