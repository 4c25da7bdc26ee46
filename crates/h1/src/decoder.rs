//! From a connection's byte stream to requests: RFC 9112 message parsing and framing.
//!
//! httparse reads the request line and fields (and already refuses obs-fold, whitespace
//! before a colon, control bytes and bare CR in requests). This module adds what httparse
//! leaves to its caller: the limits, the request-target forms, Host, and above all message
//! framing — one unambiguous answer to "where does this body end", or a refusal. Every
//! refusal is final for the connection.
//!
//! Three outcomes, as in httparse: a complete [`Request`], [`Decoded::Partial`] ("need more
//! bytes", not an error), or an [`Error`]. A fourth, [`Decoded::Continue`], asks the caller to
//! send `100 Continue` before the client will send the body.

use crate::chunked::{is_tchar, ChunkedDecoder};
use crate::limits::HEADER_SLOTS;
use crate::request::{FieldSpan, Span};
use crate::{Error, Limits, Method, Request, Version};
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use std::mem::MaybeUninit;

/// What one call to [`RequestDecoder::decode`] produced.
// Boxing the request would cost a heap allocation per request, which the plaintext path avoids.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    /// A whole request, body included; its bytes have left the buffer.
    Request(Request),
    /// Not enough bytes yet.
    Partial,
    /// The head is in, it carries `Expect: 100-continue`, and the body has not arrived:
    /// send `HTTP/1.1 100 Continue` and call again when more bytes come.
    Continue,
}

#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
}

#[derive(Debug)]
enum State {
    Head,
    /// Boxed: a body that spans reads is the rare case, and every idle connection carries a
    /// decoder, so its size is per-connection memory.
    Body {
        req: Box<Request>,
        framing: Framing,
    },
    Failed(Error),
}

/// Per-connection request decoder.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
}

impl RequestDecoder {
    /// A decoder applying `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Head,
        }
    }

    /// Whether a request has started but not finished: a head waiting for its body. (A
    /// partial head is visible to the caller as a non-empty buffer.)
    pub fn in_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// Take the next request out of `buf`, consuming exactly its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        let result = self.step(buf);
        if let Err(err) = result {
            self.state = State::Failed(err);
        }
        result
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        match std::mem::replace(&mut self.state, State::Head) {
            State::Failed(err) => Err(err),
            State::Body { req, framing } => self.read_body(*req, framing, buf, false),
            State::Head => {
                if buf.is_empty() {
                    return Ok(Decoded::Partial);
                }
                let Some(head) = parse_head(buf, &self.limits)? else {
                    return Ok(Decoded::Partial);
                };
                let expect = head.expect_continue;
                self.read_body(head.req, head.framing, buf, expect)
            }
        }
    }

    fn read_body(
        &mut self,
        mut req: Request,
        mut framing: Framing,
        buf: &mut BytesMut,
        expect_continue: bool,
    ) -> Result<Decoded, Error> {
        let body = match &mut framing {
            Framing::Length(0) => Some(Bytes::new()),
            Framing::Length(n) => {
                if buf.len() as u64 >= *n {
                    Some(buf.split_to(*n as usize).freeze())
                } else {
                    None
                }
            }
            Framing::Chunked(dec) => {
                if dec.decode(buf)? {
                    Some(dec.take_body().freeze())
                } else {
                    None
                }
            }
        };
        match body {
            Some(body) => {
                req.body = body;
                Ok(Decoded::Request(req))
            }
            None => {
                let send_continue = expect_continue && req.version == Version::Http11;
                self.state = State::Body {
                    req: Box::new(req),
                    framing,
                };
                Ok(if send_continue {
                    Decoded::Continue
                } else {
                    Decoded::Partial
                })
            }
        }
    }
}

struct Head {
    req: Request,
    framing: Framing,
    expect_continue: bool,
}

/// What the field loop learned about framing and connection handling.
#[derive(Default)]
struct FieldFacts {
    hosts: u32,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: u32,
    chunked_last: bool,
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

fn parse_head(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Head>, Error> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
    let n_slots = limits.max_headers.clamp(1, HEADER_SLOTS);
    let mut parsed = httparse::Request::new(&mut []);
    let head_len = match parsed.parse_with_uninit_headers(&buf[..], &mut slots[..n_slots]) {
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            return Ok(None);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(err) => return Err(Error::Malformed(httparse_reason(err))),
    };
    let version = match parsed.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(Error::Malformed("incomplete request line"));
    };
    if target.len() > limits.max_uri_bytes || request_line_len(buf) > max_request_line(limits) {
        return Err(Error::UriTooLong);
    }
    if head_len > limits.max_header_bytes {
        return Err(Error::HeadTooLarge);
    }
    check_target(method, target)?;

    let mut facts = FieldFacts::default();
    let mut fields: SmallVec<[FieldSpan; 16]> = SmallVec::new();
    for field in parsed.headers.iter() {
        let value = trim_ows(field.value);
        check_field(field.name.as_bytes(), value, &mut facts)?;
        fields.push(FieldSpan {
            name: Span::of(field.name.as_bytes(), buf),
            value: Span::of(value, buf),
        });
    }
    let method_span = Span::of(method.as_bytes(), buf);
    let target_span = Span::of(target.as_bytes(), buf);
    let framing = decide_framing(&facts, version, limits)?;
    let keep_alive = match version {
        Version::Http11 => !facts.close,
        Version::Http10 => facts.keep_alive && !facts.close,
    };

    let head = buf.split_to(head_len).freeze();
    let method_token =
        &head[method_span.start as usize..(method_span.start + method_span.len) as usize];
    let method = Method::from_token(method_token, &head);
    let req = Request {
        method,
        target: target_span,
        version,
        fields,
        body: Bytes::new(),
        keep_alive,
        head,
    };
    Ok(Some(Head {
        req,
        framing,
        expect_continue: facts.expect_continue,
    }))
}

/// The request line is the method, the target and " HTTP/1.1": the target limit plus room
/// for a long method. The same bound applies to complete and partial heads, so whether a
/// request is refused never depends on how TCP split it (found by fuzzing).
fn max_request_line(limits: &Limits) -> usize {
    limits.max_uri_bytes + 64
}

/// Length of the request line (after the empty lines RFC 9112 lets a server skip), up to
/// its LF or to the end of what has arrived.
fn request_line_len(buf: &[u8]) -> usize {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())
}

/// A head still incomplete: refuse it as soon as it can no longer fit.
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), Error> {
    if request_line_len(buf) > max_request_line(limits) {
        return Err(Error::UriTooLong);
    }
    if buf.len() > limits.max_header_bytes {
        return Err(Error::HeadTooLarge);
    }
    Ok(())
}

/// httparse says "Version" both for `HTTP/2.0` (a version we do not speak: 505) and for
/// garbage where a version should be (400).
fn version_error(buf: &[u8]) -> Error {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    let well_formed = version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    if well_formed && line.split(|&b| b == b' ').count() == 3 {
        Error::Version
    } else {
        Error::Malformed("invalid HTTP version")
    }
}

fn httparse_reason(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid header field name",
        httparse::Error::HeaderValue => "invalid header field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in request line",
        _ => "invalid request",
    }
}

/// RFC 9112 §3.2: origin-form, absolute-form, authority-form (CONNECT only) or asterisk-form
/// (OPTIONS only); visible ASCII only.
fn check_target(method: &str, target: &str) -> Result<(), Error> {
    if target.is_empty() || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(Error::Malformed("invalid request target"));
    }
    if method == "CONNECT" {
        return if target.contains('/') || !target.contains(':') {
            Err(Error::Malformed("CONNECT needs authority-form"))
        } else {
            Ok(())
        };
    }
    if target.starts_with('/') {
        return Ok(());
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(Error::Malformed("asterisk-form outside OPTIONS"))
        };
    }
    match target.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && scheme.as_bytes()[0].is_ascii_alphabetic()
                && !rest.is_empty() =>
        {
            Ok(())
        }
        _ => Err(Error::Malformed("invalid request target")),
    }
}

fn check_field(name: &[u8], value: &[u8], facts: &mut FieldFacts) -> Result<(), Error> {
    // httparse has checked the name's token characters and the value's bytes; these are the
    // fields that decide framing and connection handling.
    if name.eq_ignore_ascii_case(b"host") {
        facts.hosts += 1;
    } else if name.eq_ignore_ascii_case(b"content-length") {
        if facts.content_length.is_some() {
            return Err(Error::Framing("repeated Content-Length"));
        }
        facts.content_length = Some(parse_content_length(value)?);
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        facts.transfer_encoding = true;
        for coding in value.split(|&b| b == b',') {
            let coding = trim_ows(coding);
            if coding.is_empty() {
                continue;
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                facts.chunked += 1;
                facts.chunked_last = true;
            } else {
                facts.other_coding = true;
                facts.chunked_last = false;
            }
        }
    } else if name.eq_ignore_ascii_case(b"connection") {
        for option in value.split(|&b| b == b',') {
            let option = trim_ows(option);
            if option.eq_ignore_ascii_case(b"close") {
                facts.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                facts.keep_alive = true;
            }
        }
    } else if name.eq_ignore_ascii_case(b"expect") {
        if value.eq_ignore_ascii_case(b"100-continue") {
            facts.expect_continue = true;
        } else {
            return Err(Error::Expectation);
        }
    } else if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(Error::Malformed("invalid header field name"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::Malformed("control byte in field value"));
    }
    Ok(())
}

/// `Content-Length = 1*DIGIT`: no sign, no list, no whitespace inside, no overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Error::Framing("Content-Length is not a number"));
    }
    value.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add((d - b'0') as u64))
            .ok_or(Error::Framing("Content-Length overflow"))
    })
}

fn decide_framing(facts: &FieldFacts, version: Version, limits: &Limits) -> Result<Framing, Error> {
    match version {
        Version::Http11 if facts.hosts != 1 => return Err(Error::Host),
        Version::Http10 if facts.hosts > 1 => return Err(Error::Host),
        _ => {}
    }
    if facts.transfer_encoding {
        if facts.content_length.is_some() {
            return Err(Error::Framing("Content-Length with Transfer-Encoding"));
        }
        if version == Version::Http10 {
            return Err(Error::Framing("Transfer-Encoding in HTTP/1.0"));
        }
        if facts.other_coding {
            return Err(Error::TransferCoding);
        }
        if facts.chunked != 1 || !facts.chunked_last {
            return Err(Error::Framing("chunked must be the one final coding"));
        }
        return Ok(Framing::Chunked(ChunkedDecoder::new(limits.max_body_bytes)));
    }
    match facts.content_length {
        Some(n) if n > limits.max_body_bytes => Err(Error::BodyTooLarge),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Length(0)),
    }
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests;
