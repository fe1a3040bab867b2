//! Incremental decoder (and a small encoder, for tests and fakes) of AWS
//! `application/vnd.amazon.eventstream`, the framing of Bedrock's streaming answers.
//!
//! A message: `u32 total_length | u32 headers_length | u32 prelude_crc | headers | payload |
//! u32 message_crc`, big-endian; both CRCs are IEEE CRC32 (the prelude CRC over bytes 0..8, the
//! message CRC over everything before it). A header: `u8 name_len | name | u8 type | value`.
//!
//! Input may be split at any byte. Whole messages inside the caller's slice are decoded in
//! place; only a message cut by the chunk boundary is copied into a carry-over buffer. The
//! prelude is checked as soon as its 12 bytes are there, so garbage is refused before any
//! length taken from it is trusted.

use super::StreamError;

/// The smallest message: prelude (12) + message CRC (4).
const MIN_MESSAGE: usize = 16;
const PRELUDE: usize = 12;
/// Default bound on one message. Bedrock's `chunk` payloads are at most 1,000,000 bytes
/// before base64; the SDKs accept up to 24 MiB of payload and 128 KiB of headers.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
const MAX_HEADERS_BYTES: usize = 128 * 1024;

/// A header value, borrowed from the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(&'a [u8]),
    String(&'a str),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// The (already validated) header block of one message.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a> {
    raw: &'a [u8],
}

impl<'a> Headers<'a> {
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.raw }
    }

    pub fn get(&self, name: &str) -> Option<HeaderValue<'a>> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// A string header (`:message-type`, `:event-type`, `:exception-type`, ...).
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        match self.get(name) {
            Some(HeaderValue::String(s)) => Some(s),
            _ => None,
        }
    }
}

pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, HeaderValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        // The block was validated by `parse_headers`, so a failure here cannot happen; it
        // ends the iteration rather than panicking.
        let (name, value, used) = parse_header(self.rest).ok()?;
        self.rest = &self.rest[used..];
        Some((name, value))
    }
}

/// One decoded message, borrowed until the callback returns.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub headers: Headers<'a>,
    pub payload: &'a [u8],
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn take(b: &[u8], n: usize) -> Result<(&[u8], &[u8]), StreamError> {
    if b.len() < n {
        return Err(StreamError::Malformed("event-stream header runs past its block"));
    }
    Ok(b.split_at(n))
}

fn fixed<const N: usize>(b: &[u8]) -> Result<([u8; N], usize), StreamError> {
    let (v, _) = take(b, N)?;
    let mut a = [0u8; N];
    a.copy_from_slice(v);
    Ok((a, N))
}

/// Parses one header at the start of `b`: name, value and the bytes used.
fn parse_header(b: &[u8]) -> Result<(&str, HeaderValue<'_>, usize), StreamError> {
    let (len, rest) = take(b, 1)?;
    let name_len = usize::from(len[0]);
    if name_len == 0 {
        return Err(StreamError::Malformed("event-stream header with an empty name"));
    }
    let (name, rest) = take(rest, name_len)?;
    let name = std::str::from_utf8(name).map_err(|_| StreamError::Malformed("event-stream header name is not UTF-8"))?;
    let (ty, rest) = take(rest, 1)?;
    let (value, used) = match ty[0] {
        0 => (HeaderValue::Bool(true), 0),
        1 => (HeaderValue::Bool(false), 0),
        2 => {
            let (a, n) = fixed::<1>(rest)?;
            (HeaderValue::Byte(i8::from_be_bytes(a)), n)
        }
        3 => {
            let (a, n) = fixed::<2>(rest)?;
            (HeaderValue::Short(i16::from_be_bytes(a)), n)
        }
        4 => {
            let (a, n) = fixed::<4>(rest)?;
            (HeaderValue::Int(i32::from_be_bytes(a)), n)
        }
        5 => {
            let (a, n) = fixed::<8>(rest)?;
            (HeaderValue::Long(i64::from_be_bytes(a)), n)
        }
        6 | 7 => {
            let (a, _) = fixed::<2>(rest)?;
            let len = usize::from(u16::from_be_bytes(a));
            let (v, _) = take(&rest[2..], len)?;
            let value = if ty[0] == 6 {
                HeaderValue::Bytes(v)
            } else {
                HeaderValue::String(
                    std::str::from_utf8(v).map_err(|_| StreamError::Malformed("event-stream string header is not UTF-8"))?,
                )
            };
            (value, 2 + len)
        }
        8 => {
            let (a, n) = fixed::<8>(rest)?;
            (HeaderValue::Timestamp(i64::from_be_bytes(a)), n)
        }
        9 => {
            let (a, n) = fixed::<16>(rest)?;
            (HeaderValue::Uuid(a), n)
        }
        _ => return Err(StreamError::Malformed("event-stream header of an unknown type")),
    };
    Ok((name, value, 1 + name_len + 1 + used))
}

/// Checks the whole header block: every header well-formed, no name twice.
fn parse_headers(raw: &[u8]) -> Result<Headers<'_>, StreamError> {
    let mut rest = raw;
    let mut seen = 0usize;
    while !rest.is_empty() {
        let (name, _, used) = parse_header(rest)?;
        let earlier = Headers { raw: &raw[..raw.len() - rest.len()] };
        if earlier.iter().any(|(n, _)| n == name) {
            return Err(StreamError::Malformed("event-stream header appears twice"));
        }
        rest = &rest[used..];
        seen += 1;
        if seen > 1024 {
            return Err(StreamError::Malformed("too many event-stream headers"));
        }
    }
    Ok(Headers { raw })
}

/// Checks a prelude (12 bytes): its CRC and lengths. Returns `(total, headers_len)`.
fn check_prelude(p: &[u8], max_message: usize) -> Result<(usize, usize), StreamError> {
    let total = be32(p) as usize;
    let headers_len = be32(&p[4..]) as usize;
    if crc32fast::hash(&p[..8]) != be32(&p[8..]) {
        return Err(StreamError::BadPreludeCrc);
    }
    if total < MIN_MESSAGE || headers_len > total - MIN_MESSAGE || headers_len > MAX_HEADERS_BYTES {
        return Err(StreamError::Malformed("event-stream lengths are inconsistent"));
    }
    if total > max_message {
        return Err(StreamError::TooLarge);
    }
    Ok((total, headers_len))
}

/// Decodes one complete message (`m.len() == total`) whose prelude was checked.
fn decode(m: &[u8], headers_len: usize) -> Result<Message<'_>, StreamError> {
    let end = m.len() - 4;
    if crc32fast::hash(&m[..end]) != be32(&m[end..]) {
        return Err(StreamError::BadMessageCrc);
    }
    let headers = parse_headers(&m[PRELUDE..PRELUDE + headers_len])?;
    Ok(Message { headers, payload: &m[PRELUDE + headers_len..end] })
}

#[derive(Debug)]
pub struct EventStreamDecoder {
    /// A message cut by a chunk boundary (its first bytes).
    buf: Vec<u8>,
    /// `(total, headers_len)` of the buffered message once its prelude is checked.
    current: Option<(usize, usize)>,
    max_message: usize,
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventStreamDecoder {
    pub fn new() -> Self {
        Self::with_limit(MAX_MESSAGE_BYTES)
    }

    pub fn with_limit(max_message: usize) -> Self {
        EventStreamDecoder { buf: Vec::new(), current: None, max_message: max_message.max(MIN_MESSAGE) }
    }

    /// Bytes of an unfinished message held back.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; calls `on_message` for every message they complete, in order. Stops at the
    /// first error: a bad CRC, a malformed or oversized message, or the callback's own.
    pub fn feed<F>(&mut self, mut input: &[u8], mut on_message: F) -> Result<(), StreamError>
    where
        F: FnMut(Message<'_>) -> Result<(), StreamError>,
    {
        // First finish a message started in an earlier chunk.
        if !self.buf.is_empty() {
            if self.current.is_none() {
                let want = PRELUDE - self.buf.len();
                let n = want.min(input.len());
                self.buf.extend_from_slice(&input[..n]);
                input = &input[n..];
                if self.buf.len() < PRELUDE {
                    return Ok(());
                }
                self.current = Some(check_prelude(&self.buf, self.max_message)?);
            }
            let Some((total, headers_len)) = self.current else {
                return Ok(());
            };
            let n = (total - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.buf.len() < total {
                return Ok(());
            }
            let buf = std::mem::take(&mut self.buf);
            self.current = None;
            let result = decode(&buf, headers_len).and_then(&mut on_message);
            self.buf = buf;
            self.buf.clear();
            result?;
        }
        // Then whole messages straight from the input.
        while input.len() >= PRELUDE {
            let (total, headers_len) = check_prelude(&input[..PRELUDE], self.max_message)?;
            if input.len() < total {
                break;
            }
            let (m, rest) = input.split_at(total);
            on_message(decode(m, headers_len)?)?;
            input = rest;
        }
        if !input.is_empty() {
            if input.len() >= PRELUDE {
                self.current = Some(check_prelude(&input[..PRELUDE], self.max_message)?);
            }
            self.buf.extend_from_slice(input);
        }
        Ok(())
    }

    /// The input ended. Returns whether an unfinished message was discarded.
    pub fn finish(&mut self) -> bool {
        let cut = !self.buf.is_empty();
        self.buf.clear();
        self.current = None;
        cut
    }
}

/// Appends one encoded message to `out` (for tests and fake upstreams).
/// Header names longer than 255 bytes and byte/string values longer than 65,535 bytes are
/// refused.
pub fn encode_message(headers: &[(&str, HeaderValue<'_>)], payload: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; PRELUDE]);
    for (name, value) in headers {
        let name_len = u8::try_from(name.len()).map_err(|_| StreamError::TooLarge)?;
        out.push(name_len);
        out.extend_from_slice(name.as_bytes());
        match value {
            HeaderValue::Bool(true) => out.push(0),
            HeaderValue::Bool(false) => out.push(1),
            HeaderValue::Byte(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int(v) => {
                out.push(4);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                out.push(5);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(v) => {
                out.push(6);
                out.extend_from_slice(&u16::try_from(v.len()).map_err(|_| StreamError::TooLarge)?.to_be_bytes());
                out.extend_from_slice(v);
            }
            HeaderValue::String(v) => {
                out.push(7);
                out.extend_from_slice(&u16::try_from(v.len()).map_err(|_| StreamError::TooLarge)?.to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            HeaderValue::Timestamp(v) => {
                out.push(8);
                out.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(v) => {
                out.push(9);
                out.extend_from_slice(v);
            }
        }
    }
    let headers_len = out.len() - start - PRELUDE;
    out.extend_from_slice(payload);
    let total = out.len() - start + 4;
    let total32 = u32::try_from(total).map_err(|_| StreamError::TooLarge)?;
    let headers32 = u32::try_from(headers_len).map_err(|_| StreamError::TooLarge)?;
    out[start..start + 4].copy_from_slice(&total32.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&headers32.to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&prelude_crc.to_be_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Appends a Bedrock `event` message (`:event-type`, `:content-type: application/json`).
pub fn encode_event(event_type: &str, payload: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
    encode_message(
        &[
            (":event-type", HeaderValue::String(event_type)),
            (":content-type", HeaderValue::String("application/json")),
            (":message-type", HeaderValue::String("event")),
        ],
        payload,
        out,
    )
}

/// Appends a Bedrock `exception` message (`:exception-type`, payload `{"message": ...}`).
pub fn encode_exception(exception_type: &str, payload: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
    encode_message(
        &[
            (":exception-type", HeaderValue::String(exception_type)),
            (":content-type", HeaderValue::String("application/json")),
            (":message-type", HeaderValue::String("exception")),
        ],
        payload,
        out,
    )
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    type Decoded = Vec<(Vec<(String, String)>, Vec<u8>)>;

    fn describe(v: HeaderValue<'_>) -> String {
        format!("{v:?}")
    }

    fn decode_chunks(chunks: &[&[u8]]) -> Result<(Decoded, bool), StreamError> {
        let mut d = EventStreamDecoder::new();
        let mut got = Vec::new();
        for c in chunks {
            d.feed(c, |m| {
                let h = m.headers.iter().map(|(n, v)| (n.to_owned(), describe(v))).collect();
                got.push((h, m.payload.to_vec()));
                Ok(())
            })?;
        }
        let cut = d.finish();
        Ok((got, cut))
    }

    /// The worked example of AWS event-stream encoding (docs/streaming.md), written out by hand from its description.
    #[test]
    fn decodes_the_reference_frame_bit_exactly() {
        let mut frame = Vec::new();
        frame.extend_from_slice(&[0, 0, 0, 0xa0, 0, 0, 0, 0x57, 0xe0, 0x0a, 0x84, 0xa8]);
        for (name, value) in [(":event-type", "contentBlockDelta"), (":content-type", "application/json"), (":message-type", "event")] {
            frame.push(name.len() as u8);
            frame.extend_from_slice(name.as_bytes());
            frame.push(7);
            frame.extend_from_slice(&(value.len() as u16).to_be_bytes());
            frame.extend_from_slice(value.as_bytes());
        }
        frame.extend_from_slice(br#"{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"ab"}"#);
        frame.extend_from_slice(&[0xf5, 0xc1, 0x2e, 0xd8]);
        assert_eq!(frame.len(), 160);
        let (got, cut) = decode_chunks(&[&frame]).unwrap();
        assert!(!cut);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0[0], (":event-type".to_owned(), describe(HeaderValue::String("contentBlockDelta"))));
        assert!(got[0].1.starts_with(br#"{"contentBlockIndex":0"#));
        // and our encoder produces the same bytes
        let mut enc = Vec::new();
        encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Hello"},"p":"ab"}"#, &mut enc).unwrap();
        assert_eq!(enc, frame);
    }

    fn all_types_stream() -> Vec<u8> {
        let mut out = Vec::new();
        let uuid = [7u8; 16];
        encode_message(
            &[
                ("t", HeaderValue::Bool(true)),
                ("f", HeaderValue::Bool(false)),
                ("b", HeaderValue::Byte(-2)),
                ("s", HeaderValue::Short(-300)),
                ("i", HeaderValue::Int(70000)),
                ("l", HeaderValue::Long(-5_000_000_000)),
                ("y", HeaderValue::Bytes(&[0, 1, 2])),
                ("str", HeaderValue::String("héllo")),
                ("ts", HeaderValue::Timestamp(1_700_000_000_000)),
                ("u", HeaderValue::Uuid(uuid)),
            ],
            b"payload-1",
            &mut out,
        )
        .unwrap();
        encode_message(&[], b"", &mut out).unwrap();
        encode_event("x", b"{}", &mut out).unwrap();
        out
    }

    #[test]
    fn every_header_type_round_trips_and_every_split_gives_the_same_messages() {
        let stream = all_types_stream();
        let (whole, cut) = decode_chunks(&[&stream]).unwrap();
        assert!(!cut);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].0.len(), 10);
        assert_eq!(whole[0].0[5], ("l".to_owned(), describe(HeaderValue::Long(-5_000_000_000))));
        assert_eq!(whole[0].0[7], ("str".to_owned(), describe(HeaderValue::String("héllo"))));
        assert_eq!(whole[0].1, b"payload-1");
        assert_eq!(whole[1], (vec![], vec![]));
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(decode_chunks(&[a, b]).unwrap(), (whole.clone(), false), "split at {i}");
            for j in i..=stream.len() {
                let (b1, c) = b.split_at(j - i);
                assert_eq!(decode_chunks(&[a, b1, c]).unwrap().0, whole, "splits at {i}, {j}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes).unwrap().0, whole);
    }

    #[test]
    fn a_flipped_bit_anywhere_is_caught() {
        let stream = all_types_stream();
        for i in 0..stream.len() {
            let mut bad = stream.clone();
            bad[i] ^= 0x10;
            let r = decode_chunks(&[&bad]);
            assert!(r.is_err(), "flip at byte {i} went unnoticed: {r:?}");
        }
    }

    #[test]
    fn prelude_and_message_crc_errors_are_told_apart() {
        let mut frame = Vec::new();
        encode_event("messageStart", br#"{"role":"assistant"}"#, &mut frame).unwrap();
        let mut bad = frame.clone();
        bad[9] ^= 1;
        assert_eq!(decode_chunks(&[&bad]).unwrap_err(), StreamError::BadPreludeCrc);
        let mut bad = frame.clone();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert_eq!(decode_chunks(&[&bad]).unwrap_err(), StreamError::BadMessageCrc);
        // the prelude is refused as soon as it is complete, before the rest arrives
        let mut d = EventStreamDecoder::new();
        let mut bad = frame.clone();
        bad[0] = 0x7f;
        assert_eq!(d.feed(&bad[..12], |_| Ok(())), Err(StreamError::BadPreludeCrc));
        let mut d = EventStreamDecoder::new();
        assert_eq!(d.feed(&bad[..5], |_| Ok(())), Ok(()));
        assert_eq!(d.feed(&bad[5..13], |_| Ok(())), Err(StreamError::BadPreludeCrc));
    }

    #[test]
    fn truncation_is_reported_and_oversize_refused() {
        let stream = all_types_stream();
        for cut_at in [1, 11, 12, 40, stream.len() - 1] {
            let (_, cut) = decode_chunks(&[&stream[..cut_at]]).unwrap();
            assert!(cut, "cut at {cut_at}");
        }
        let mut d = EventStreamDecoder::with_limit(32);
        let mut big = Vec::new();
        encode_event("x", &[b'a'; 64], &mut big).unwrap();
        assert_eq!(d.feed(&big, |_| Ok(())), Err(StreamError::TooLarge));
    }

    #[test]
    fn duplicate_and_unknown_header_types_are_malformed() {
        let mut out = Vec::new();
        encode_message(&[("a", HeaderValue::Int(1)), ("a", HeaderValue::Int(2))], b"", &mut out).unwrap();
        assert!(matches!(decode_chunks(&[&out]), Err(StreamError::Malformed(_))));
        // header type 10 does not exist: build a frame by hand with a valid CRC
        let mut raw = vec![0u8; 12];
        raw.extend_from_slice(&[1, b'a', 10]);
        let total = (raw.len() + 4) as u32;
        raw[..4].copy_from_slice(&total.to_be_bytes());
        raw[4..8].copy_from_slice(&3u32.to_be_bytes());
        let c = crc32fast::hash(&raw[..8]);
        raw[8..12].copy_from_slice(&c.to_be_bytes());
        let c = crc32fast::hash(&raw);
        raw.extend_from_slice(&c.to_be_bytes());
        assert!(matches!(decode_chunks(&[&raw]), Err(StreamError::Malformed(_))));
    }
}
