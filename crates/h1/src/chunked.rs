//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally, and encoded for
//! responses streamed without a length.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size   = 1*HEXDIG
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//! Chunk extensions and trailer fields are accepted and skipped. Lines must end in CRLF: a
//! decoder that also took a bare LF here would disagree with stricter proxies about where the
//! body ends, which is what chunked smuggling exploits.

use crate::Error;
use bytes::{Buf, BufMut, BytesMut};

/// The longest chunk-size line (size and extensions) we wait for.
const MAX_SIZE_LINE: usize = 4096;

/// Chunk-extension bytes skipped per message before it is refused. A per-line limit alone
/// lets a client make us scan megabytes of extensions around a tiny body (2,000 chunks of
/// 4 KB of extensions each); hyper caps the total at the same 16 KiB.
pub const MAX_EXTENSION_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Decodes one chunked body, fed as bytes arrive.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    body: BytesMut,
    total: u64,
    max_body: u64,
    /// Trailer section bytes we skip before refusing with 431: the head's limit, since a
    /// trailer is header fields sent late.
    max_trailer: u32,
    trailer_bytes: u32,
    /// Chunk-extension bytes seen so far in this message (see [`MAX_EXTENSION_BYTES`]).
    extension_bytes: u32,
}

impl ChunkedDecoder {
    /// A decoder refusing bodies over `max_body` decoded bytes (413) and trailer sections
    /// over `max_trailer` bytes (431).
    pub fn new(max_body: u64, max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: State::Size,
            body: BytesMut::new(),
            total: 0,
            max_body,
            // u32 keeps the decoder (inside every connection) small; a head limit past 4 GiB
            // means none.
            max_trailer: u32::try_from(max_trailer).unwrap_or(u32::MAX),
            trailer_bytes: 0,
            extension_bytes: 0,
        }
    }

    /// Change the body limit before any chunk is read (a route's own limit).
    pub fn set_max_body(&mut self, max_body: u64) {
        self.max_body = max_body;
    }

    /// Consume what it can of `input`. `Ok(true)` when the body is complete (the bytes after it
    /// stay in `input`), `Ok(false)` when it needs more.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<bool, Error> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line_len) =
                        find_crlf(input, MAX_SIZE_LINE).map_err(|err| match err {
                            Line::BareLf => Error::Chunked("bare LF"),
                            Line::TooLong => Error::Chunked("chunk-size line too long"),
                        })?
                    else {
                        return Ok(false);
                    };
                    let (size, extensions) = parse_size_line(&input[..line_len])?;
                    // A size line is at most MAX_SIZE_LINE long: no overflow before the check.
                    self.extension_bytes += extensions as u32;
                    if self.extension_bytes as usize > MAX_EXTENSION_BYTES {
                        return Err(Error::Chunked("chunk extensions too large"));
                    }
                    input.advance(line_len + 2);
                    self.total = self
                        .total
                        .checked_add(size)
                        .ok_or(Error::Chunked("size overflow"))?;
                    if self.total > self.max_body {
                        return Err(Error::BodyTooLarge);
                    }
                    self.state = if size == 0 {
                        State::Trailer
                    } else {
                        self.body.reserve(size.min(64 * 1024) as usize);
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let take = (left.min(input.len() as u64)) as usize;
                    self.body.extend_from_slice(&input[..take]);
                    input.advance(take);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => {
                    if input.len() < 2 {
                        return Ok(false);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(Error::Chunked("chunk data not followed by CRLF"));
                    }
                    input.advance(2);
                    self.state = State::Size;
                }
                State::Trailer => {
                    let room = self.max_trailer.saturating_sub(self.trailer_bytes) as usize;
                    // Only a trailer section that is too large is 431; a malformed one is 400.
                    let Some(line_len) = find_crlf(input, room).map_err(|err| match err {
                        Line::BareLf => Error::Chunked("bare LF in trailer"),
                        Line::TooLong => Error::HeadTooLarge,
                    })?
                    else {
                        return Ok(false);
                    };
                    if line_len == 0 {
                        input.advance(2);
                        self.state = State::Done;
                        return Ok(true);
                    }
                    check_trailer_line(&input[..line_len])?;
                    self.trailer_bytes += (line_len + 2) as u32;
                    input.advance(line_len + 2);
                }
                State::Done => return Ok(true),
            }
        }
    }

    /// The decoded body so far (all of it once `decode` returned true).
    pub fn take_body(&mut self) -> BytesMut {
        std::mem::take(&mut self.body)
    }
}

/// The chunk that ends a chunked body (no trailer fields).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Append `data` as one chunk. Empty data is skipped: an empty chunk would end the body.
pub fn encode_chunk(data: &[u8], out: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    out.reserve(data.len() + 20);
    let mut size = [0u8; 16];
    let mut n = data.len();
    let mut i = size.len();
    while n > 0 || i == size.len() {
        i -= 1;
        size[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
    }
    out.put_slice(&size[i..]);
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Why a line of chunked framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// A line ending in LF without CR.
    BareLf,
    /// No line end within the limit.
    TooLong,
}

/// Length of the line before its CRLF, `None` if no full line yet. Decided on at most
/// `max + 2` bytes, so the answer never depends on how much has arrived past them.
fn find_crlf(input: &[u8], max: usize) -> Result<Option<usize>, Line> {
    let window = &input[..input.len().min(max + 2)];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(Line::BareLf),
        Some(i) if window[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err(Line::BareLf),
        None if input.len() > max + 1 => Err(Line::TooLong),
        None => Ok(None),
    }
}

/// The chunk's size, and how many bytes of extensions follow it on the line.
fn parse_size_line(line: &[u8]) -> Result<(u64, usize), Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Error::Chunked("missing chunk size"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(d))
            .ok_or(Error::Chunked("chunk size overflow"))?;
    }
    let rest = &line[digits..];
    // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    let rest_trimmed = trim_start_ws(rest);
    if !rest_trimmed.is_empty() && rest_trimmed[0] != b';' {
        return Err(Error::Chunked("invalid chunk size"));
    }
    if rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::Chunked("control byte in chunk extension"));
    }
    Ok((size, rest.len()))
}

fn check_trailer_line(line: &[u8]) -> Result<(), Error> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(Error::Chunked("obs-fold in trailer"));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(Error::Chunked("trailer field without colon"));
    };
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::Chunked("invalid trailer field name"));
    }
    if line[colon..]
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(Error::Chunked("control byte in trailer"));
    }
    Ok(())
}

fn trim_start_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// RFC 9110 §5.6.2 token characters, as a table: checked for every byte of every field
/// name a handler sets.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// RFC 9110 §5.6.2 token character.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let mut dec = ChunkedDecoder::new(1 << 20, 8192);
        let mut buf = BytesMut::from(input);
        assert!(dec.decode(&mut buf)?, "incomplete");
        Ok((dec.take_body().to_vec(), buf.to_vec()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let (body, rest) =
            decode_all(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT").unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_bytes() {
        let mut out = BytesMut::new();
        let pieces: [&[u8]; 4] = [b"a", b"", &[7u8; 300], b"0123456789abcdef!"];
        for piece in pieces {
            encode_chunk(piece, &mut out);
        }
        assert!(out.starts_with(b"1\r\na\r\n12c\r\n"), "{out:?}");
        out.extend_from_slice(LAST_CHUNK);
        let (body, rest) = decode_all(&out).unwrap();
        assert_eq!(body, pieces.concat());
        assert!(rest.is_empty());
    }

    #[test]
    fn refuses_bad_sizes() {
        assert!(decode_all(b"x\r\n").is_err());
        assert!(decode_all(b"\r\n").is_err());
        assert!(decode_all(b"-1\r\n").is_err());
        assert!(decode_all(b"11111111111111111\r\n").is_err());
        assert!(decode_all(b"5\nhello\r\n0\r\n\r\n").is_err());
        assert!(decode_all(b"5\r\nhelloXX0\r\n\r\n").is_err());
        assert!(decode_all(b"5 x\r\nhello\r\n0\r\n\r\n").is_err());
    }

    #[test]
    fn the_tchar_table_matches_the_grammar() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), expected, "{b}");
        }
    }

    #[test]
    fn a_malformed_trailer_is_400_and_only_a_large_one_431() {
        let bare_lf = decode_all(b"0\r\nX: 1\n\r\n").unwrap_err();
        assert_eq!(bare_lf.status(), 400, "{bare_lf:?}");
        assert_eq!(decode_all(b"0\r\nX 1\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(decode_all(b"0\r\n\n").unwrap_err().status(), 400);
        // The limit is the one given (the server passes --max-header-bytes).
        let trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(200));
        let mut dec = ChunkedDecoder::new(100, 100);
        let mut buf = BytesMut::from(trailer.as_bytes());
        assert_eq!(dec.decode(&mut buf), Err(Error::HeadTooLarge));
        let mut dec = ChunkedDecoder::new(100, 300);
        let mut buf = BytesMut::from(trailer.as_bytes());
        assert_eq!(dec.decode(&mut buf), Ok(true));
    }

    #[test]
    fn extensions_are_bounded_per_message_not_only_per_line() {
        // The issue's case: 2,000 one-byte chunks, each with a 4,000-byte extension.
        let ext = format!(";x={}", "e".repeat(3_996));
        let mut body = String::new();
        for _ in 0..2_000 {
            body.push_str(&format!("1{ext}\r\na\r\n"));
        }
        body.push_str("0\r\n\r\n");
        let err = decode_all(body.as_bytes()).unwrap_err();
        assert_eq!(err, Error::Chunked("chunk extensions too large"));
        assert_eq!(err.status(), 400);
        // Just under the total is still fine.
        let small = format!(";x={}", "e".repeat(1_000));
        let mut body = String::new();
        for _ in 0..16 {
            body.push_str(&format!("1{small}\r\na\r\n"));
        }
        body.push_str("0\r\n\r\n");
        assert_eq!(decode_all(body.as_bytes()).unwrap().0.len(), 16);
    }

    #[test]
    fn refuses_bodies_over_the_limit() {
        let mut dec = ChunkedDecoder::new(4, 8192);
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
        assert_eq!(dec.decode(&mut buf), Err(Error::BodyTooLarge));
    }

    #[test]
    fn waits_for_more_bytes_at_any_split() {
        let whole = b"3\r\nabc\r\n0\r\nT: v\r\n\r\n";
        for split in 0..whole.len() {
            let mut dec = ChunkedDecoder::new(100, 8192);
            let mut buf = BytesMut::from(&whole[..split]);
            assert!(!dec.decode(&mut buf).unwrap(), "split {split}");
            buf.extend_from_slice(&whole[split..]);
            assert!(dec.decode(&mut buf).unwrap());
            assert_eq!(&dec.take_body()[..], b"abc");
        }
    }
}
