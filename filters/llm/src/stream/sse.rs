//! Incremental Server-Sent Events decoder (the WHATWG `text/event-stream` parsing rules).
//!
//! Input may be split at any byte. Complete lines are read straight from the caller's slice;
//! only an unfinished line is copied into a carry-over buffer. Buffers are reused, so a
//! long stream allocates only while an event is larger than any event before it.
//!
//! Rules applied: lines end with CRLF, LF or a lone CR (a CR at the end of one chunk and an LF
//! at the start of the next are one line end); `:` starts a comment; `field: value` loses one
//! space after the colon; `data` lines of one event are joined with `\n`; a blank line
//! dispatches the event if it has data; `id` and `retry` are read and ignored; an event not
//! closed by a blank line when the input ends is discarded (it is never dispatched).

use super::StreamError;

/// Default bound on one event (its `data` lines together) and on one line.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// One dispatched event, borrowed from the decoder until the callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field; empty when absent (the default type `message`).
    pub event: &'a [u8],
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

#[derive(Debug)]
pub struct SseDecoder {
    /// An unfinished line carried over from an earlier chunk.
    line: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    /// At least one `data` field was seen in the current event.
    has_data: bool,
    /// The previous chunk ended with CR: a leading LF of the next chunk belongs to it.
    after_cr: bool,
    max_event: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::with_limit(MAX_EVENT_BYTES)
    }

    pub fn with_limit(max_event: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            data: Vec::new(),
            event: Vec::new(),
            has_data: false,
            after_cr: false,
            max_event,
        }
    }

    /// Bytes held back because their line or event is not finished yet.
    pub fn pending(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// Feeds bytes; calls `on_event` for every event completed by them, in order. Stops at the
    /// first error (from the callback, or [`StreamError::TooLarge`]).
    pub fn feed<F>(&mut self, mut input: &[u8], mut on_event: F) -> Result<(), StreamError>
    where
        F: FnMut(SseEvent<'_>) -> Result<(), StreamError>,
    {
        if input.is_empty() {
            return Ok(());
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = input.strip_prefix(b"\n") {
                input = rest;
            }
        }
        while !input.is_empty() {
            let Some(end) = input.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.line.len() + input.len() > self.max_event {
                    return Err(StreamError::TooLarge);
                }
                self.line.extend_from_slice(input);
                return Ok(());
            };
            let is_cr = input[end] == b'\r';
            let mut next = end + 1;
            if is_cr {
                if next < input.len() {
                    if input[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.after_cr = true;
                }
            }
            if self.line.is_empty() {
                self.process_line(&input[..end], &mut on_event)?;
            } else {
                if self.line.len() + end > self.max_event {
                    return Err(StreamError::TooLarge);
                }
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&input[..end]);
                let result = self.process_line(&line, &mut on_event);
                line.clear();
                self.line = line;
                result?;
            }
            input = &input[next..];
        }
        Ok(())
    }

    /// The input ended. Returns whether an unfinished event (or line) was discarded.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.line.is_empty() || self.has_data;
        self.line.clear();
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        self.after_cr = false;
        discarded
    }

    fn process_line<F>(&mut self, line: &[u8], on_event: &mut F) -> Result<(), StreamError>
    where
        F: FnMut(SseEvent<'_>) -> Result<(), StreamError>,
    {
        if line.is_empty() {
            let result = if self.has_data {
                on_event(SseEvent { event: &self.event, data: &self.data })
            } else {
                Ok(())
            };
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return result;
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                let extra = usize::from(self.has_data) + value.len();
                if self.data.len() + extra > self.max_event {
                    return Err(StreamError::TooLarge);
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // `id`, `retry` and unknown fields carry nothing a translator needs.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn collect(chunks: &[&[u8]]) -> (Vec<(String, String)>, bool) {
        let mut d = SseDecoder::new();
        let mut got = Vec::new();
        for c in chunks {
            d.feed(c, |e| {
                got.push((
                    String::from_utf8(e.event.to_vec()).unwrap(),
                    String::from_utf8(e.data.to_vec()).unwrap(),
                ));
                Ok(())
            })
            .unwrap();
        }
        let discarded = d.finish();
        (got, discarded)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    const MIXED: &[u8] = b": keep-alive\r\ndata: one\r\n\r\nevent: error\ndata:two\ndata:  three\n\nid: 7\nretry: 10\n\ndata\n\ndata: four\r\rdata: x";

    #[test]
    fn parses_fields_comments_line_ends_and_discards_the_unfinished_event() {
        let want = pairs(&[("", "one"), ("error", "two\n three"), ("", ""), ("", "four")]);
        let (got, discarded) = collect(&[MIXED]);
        assert_eq!(got, want);
        assert!(discarded, "`data: x` had no blank line");
    }

    #[test]
    fn every_split_point_and_byte_by_byte_give_the_same_events() {
        let (whole, _) = collect(&[MIXED]);
        for i in 0..=MIXED.len() {
            let (a, b) = MIXED.split_at(i);
            assert_eq!(collect(&[a, b]).0, whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = MIXED.chunks(1).collect();
        assert_eq!(collect(&bytes).0, whole);
    }

    #[test]
    fn cr_at_chunk_end_followed_by_lf_is_one_line_end() {
        let (got, _) = collect(&[b"data: a\r", b"\n\r", b"\ndata: b\n\n"]);
        assert_eq!(got, pairs(&[("", "a"), ("", "b")]));
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_changes_nothing() {
        let (got, _) = collect(&[b"data: a\r", b"", b"\ndata: b\n\n"]);
        assert_eq!(got, pairs(&[("", "a\nb")]));
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing_and_reset_the_event_type() {
        let (got, discarded) = collect(&[b"\n\nevent: x\n\ndata: y\n\n"]);
        assert_eq!(got, pairs(&[("", "y")]));
        assert!(!discarded);
    }

    #[test]
    fn oversized_lines_and_events_are_refused() {
        let mut d = SseDecoder::with_limit(8);
        assert_eq!(d.feed(b"data: 0123456789", |_| Ok(())), Err(StreamError::TooLarge));
        let mut d = SseDecoder::with_limit(8);
        assert_eq!(d.feed(b"data: 1234\ndata: 5678\n", |_| Ok(())), Err(StreamError::TooLarge));
        let mut d = SseDecoder::with_limit(8);
        assert_eq!(d.feed(b"data: 123\ndata: 456\n\n", |_| Ok(())), Ok(()));
    }

    #[test]
    fn a_callback_error_stops_the_feed() {
        let mut d = SseDecoder::new();
        let mut n = 0;
        let r = d.feed(b"data: a\n\ndata: b\n\n", |_| {
            n += 1;
            Err(StreamError::Malformed("stop"))
        });
        assert_eq!(r, Err(StreamError::Malformed("stop")));
        assert_eq!(n, 1);
    }
}
