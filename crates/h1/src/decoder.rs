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
//!
//! A caller that can take a body as it arrives ([`RequestDecoder::decode_streaming`]) gets a
//! large or chunked body that way: the request first ([`Streamed::Head`], its body empty),
//! then its bytes as they come ([`Streamed::Data`]), the last piece marked — the same framing
//! checks and limits, only not held in memory.

use crate::chunked::ChunkedDecoder;
use crate::limits::HEADER_SLOTS;
use crate::request::{FieldSpan, Span, TargetSpans};
use crate::{Error, Limits, Method, Request, Version};
use bytes::{Bytes, BytesMut};
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

/// What one call to [`RequestDecoder::decode_streaming`] produced: what
/// [`RequestDecoder::decode`] does, or a streamed body's head or piece.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Streamed {
    /// A whole request, or no request yet, as from [`RequestDecoder::decode`].
    Decoded(Decoded),
    /// A request whose body follows in [`Streamed::Data`] pieces; its own body is empty.
    /// `length`: the body's length when the head states it (Content-Length), `None` when
    /// chunked.
    Head {
        /// The request, its body to come.
        req: Request,
        /// The body's length, if known.
        length: Option<u64>,
    },
    /// The next piece of the body a [`Streamed::Head`] announced, decoded (chunk framing
    /// removed); `last`: the body ends with it (then the piece may be empty).
    Data {
        /// The bytes.
        bytes: Bytes,
        /// The body is complete.
        last: bool,
    },
}

#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
}

#[derive(Debug)]
enum State {
    Head,
    /// (A request is one pointer; the framing is kept beside it: a body that spans reads is
    /// the rare case, but every idle connection carries a decoder.)
    Body {
        req: Request,
        framing: Framing,
    },
    /// A body to be given as it arrives, its request not handed out yet (a `100 Continue`
    /// went first).
    /// (The framing boxed: every idle connection carries a decoder.)
    StreamHead {
        req: Request,
        framing: Box<Framing>,
    },
    /// A body given as it arrives.
    Stream(Box<Framing>),
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
        matches!(
            self.state,
            State::Body { .. } | State::StreamHead { .. } | State::Stream(_)
        )
    }

    /// Whether a streamed body is under way whose request was handed out
    /// ([`Streamed::Head`]): an error from here on is the body's, and its request already
    /// has someone to answer it.
    pub fn streaming_body(&self) -> bool {
        matches!(self.state, State::Stream(_))
    }

    /// Take the next request out of `buf`, consuming exactly its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        self.decode_with(buf, |_| None)
    }

    /// [`decode`](Self::decode), asking `body_limit` once per request, when its head is
    /// complete and before any of its body is read, for a limit that replaces
    /// [`Limits::max_body_bytes`] for that request (a route's own limit, larger or smaller).
    pub fn decode_with(
        &mut self,
        buf: &mut BytesMut,
        body_limit: impl FnOnce(&Request) -> Option<u64>,
    ) -> Result<Decoded, Error> {
        let result = self.step(buf, body_limit);
        if let Err(err) = result {
            self.state = State::Failed(err);
        }
        result
    }

    /// [`decode_with`](Self::decode_with), giving a body longer than `stream_over` bytes, or
    /// chunked, as it arrives: [`Streamed::Head`], then [`Streamed::Data`] pieces. `None`:
    /// every body whole.
    pub fn decode_streaming(
        &mut self,
        buf: &mut BytesMut,
        body_limit: impl FnOnce(&Request) -> Option<u64>,
        stream_over: Option<u64>,
    ) -> Result<Streamed, Error> {
        let Some(over) = stream_over else {
            return self.decode_with(buf, body_limit).map(Streamed::Decoded);
        };
        let result = self.step_streaming(buf, body_limit, over);
        if let Err(err) = result {
            self.state = State::Failed(err);
        }
        result
    }

    /// One step for a caller that takes every body whole (the per-request path: a request
    /// moves through it without being wrapped again).
    fn step(
        &mut self,
        buf: &mut BytesMut,
        body_limit: impl FnOnce(&Request) -> Option<u64>,
    ) -> Result<Decoded, Error> {
        match std::mem::replace(&mut self.state, State::Head) {
            State::Failed(err) => Err(err),
            State::Body { req, framing } => self.read_body(req, framing, buf, false),
            // Only a streaming caller starts a streamed body.
            State::StreamHead { .. } | State::Stream(_) => {
                Err(Error::Framing("a streamed body read as a whole one"))
            }
            State::Head => {
                if buf.is_empty() {
                    return Ok(Decoded::Partial);
                }
                let Some(mut head) = parse_head(buf, &self.limits)? else {
                    return Ok(Decoded::Partial);
                };
                self.limit_body(&mut head, body_limit)?;
                let expect = head.expect_continue;
                self.read_body(head.req, head.framing, buf, expect)
            }
        }
    }

    /// The body limit for this request (the application's, else the server's): a stated
    /// length past it is refused now; a chunked body is refused when it crosses it.
    fn limit_body(
        &self,
        head: &mut Head,
        body_limit: impl FnOnce(&Request) -> Option<u64>,
    ) -> Result<(), Error> {
        // No body, no limit to look up (the application's is a call per request).
        if matches!(head.framing, Framing::Length(0)) {
            return Ok(());
        }
        let max = body_limit(&head.req).unwrap_or(self.limits.max_body_bytes);
        match &mut head.framing {
            Framing::Length(n) if *n > max => Err(Error::BodyTooLarge),
            Framing::Length(_) => Ok(()),
            Framing::Chunked(dec) => {
                dec.set_max_body(max);
                Ok(())
            }
        }
    }

    /// One step for a caller that takes large bodies as they arrive.
    fn step_streaming(
        &mut self,
        buf: &mut BytesMut,
        body_limit: impl FnOnce(&Request) -> Option<u64>,
        over: u64,
    ) -> Result<Streamed, Error> {
        match std::mem::replace(&mut self.state, State::Head) {
            State::StreamHead { req, framing } => Ok(self.stream_head(req, framing)),
            State::Stream(framing) => self.stream_body(framing, buf),
            State::Head if !buf.is_empty() => {
                let Some(mut head) = parse_head(buf, &self.limits)? else {
                    return Ok(Streamed::Decoded(Decoded::Partial));
                };
                self.limit_body(&mut head, body_limit)?;
                let expect = head.expect_continue;
                let streams = match &head.framing {
                    Framing::Length(n) => *n > over,
                    Framing::Chunked(_) => true,
                };
                if !streams {
                    return self
                        .read_body(head.req, head.framing, buf, expect)
                        .map(Streamed::Decoded);
                }
                let req = head.req;
                let framing = Box::new(head.framing);
                if expect && buf.is_empty() && req.parts().version == Version::Http11 {
                    self.state = State::StreamHead { req, framing };
                    return Ok(Streamed::Decoded(Decoded::Continue));
                }
                Ok(self.stream_head(req, framing))
            }
            other => {
                self.state = other;
                self.step(buf, body_limit).map(Streamed::Decoded)
            }
        }
    }

    /// The request of a streamed body; its bytes follow.
    fn stream_head(&mut self, req: Request, framing: Box<Framing>) -> Streamed {
        let length = match &*framing {
            Framing::Length(n) => Some(*n),
            Framing::Chunked(_) => None,
        };
        self.state = State::Stream(framing);
        Streamed::Head { req, length }
    }

    /// A streamed body's bytes, as they come.
    fn stream_body(
        &mut self,
        mut framing: Box<Framing>,
        buf: &mut BytesMut,
    ) -> Result<Streamed, Error> {
        let (bytes, last) = match &mut *framing {
            Framing::Length(n) => {
                let take = (*n).min(buf.len() as u64);
                *n -= take;
                (buf.split_to(take as usize).freeze(), *n == 0)
            }
            Framing::Chunked(dec) => {
                let done = dec.decode(buf)?;
                (dec.take_body().freeze(), done)
            }
        };
        if !last {
            self.state = State::Stream(framing);
            if bytes.is_empty() {
                return Ok(Streamed::Decoded(Decoded::Partial));
            }
        }
        Ok(Streamed::Data { bytes, last })
    }

    fn read_body(
        &mut self,
        mut req: Request,
        mut framing: Framing,
        buf: &mut BytesMut,
        expect_continue: bool,
    ) -> Result<Decoded, Error> {
        let body = match &mut framing {
            // A fresh request's body is already empty: nothing to put in its place.
            Framing::Length(0) => return Ok(Decoded::Request(req)),
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
                req.parts_mut().body = body;
                Ok(Decoded::Request(req))
            }
            None => {
                let send_continue = expect_continue && req.parts().version == Version::Http11;
                self.state = State::Body { req, framing };
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
    // Fast path: a buffer shorter than any window is its own.
    let window = if buf.len() <= limits.max_header_bytes.min(max_request_line(limits)) {
        None
    } else {
        Some(Window::of(buf, limits))
    };
    let view = &buf[..window.map_or(buf.len(), |w| w.len.min(buf.len()))];
    let full = window.is_some_and(|w| buf.len() >= w.len);
    let head_len = match parsed.parse_with_uninit_headers(view, &mut slots[..n_slots]) {
        Ok(httparse::Status::Partial) if full => {
            return Err(window.map_or(Error::HeadTooLarge, |w| w.refusal(buf, limits)));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
        Err(httparse::Error::Version) => {
            // httparse stops at the first byte that cannot be HTTP/1.x; whether the line is a
            // well-formed other version (505) or garbage (400) shows only once it has ended.
            let w = window.unwrap_or_else(|| Window::of(buf, limits));
            return match w.line {
                Some(line) => Err(version_error(&buf[line.0..line.0 + line.1])),
                None if buf.len() >= w.len => Err(w.refusal(buf, limits)),
                None => Ok(None),
            };
        }
        Err(err) => return Err(Error::Malformed(httparse_reason(err))),
    };
    let version = match parsed.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
        return Err(Error::Malformed("incomplete request line"));
    };
    // httparse accepted `method SP target SP HTTP/1.x [CR]` (one space each: the default
    // config), so the line is at most this long; it is measured only when that could pass
    // the limit (a method of 50-odd bytes), not on every request.
    let line_at_most = method.len() + target.len() + 11;
    if target.len() > limits.max_uri_bytes
        || (line_at_most > max_request_line(limits)
            && request_line_len(buf) > max_request_line(limits))
    {
        return Err(Error::UriTooLong);
    }
    if head_len > limits.max_header_bytes {
        return Err(Error::HeadTooLarge);
    }
    let path_from = check_target(method, target)?;

    // The request's recycled box, filled in place (a refused head gives it back).
    let mut req = Request::fresh();
    let mut facts = FieldFacts::default();
    let fields = &mut req.parts_mut().fields;
    for field in parsed.headers.iter() {
        let value = trim_ows(field.value);
        check_field(field.name.as_bytes(), value, &mut facts)?;
        fields.push(FieldSpan {
            name: Span::of(field.name.as_bytes(), buf),
            value: Span::of(value, buf),
        });
    }
    let method_span = Span::of(method.as_bytes(), buf);
    let target = TargetSpans::of(
        target.as_bytes(),
        Span::of(target.as_bytes(), buf),
        path_from,
    );
    let framing = decide_framing(&facts, version, limits)?;
    let keep_alive = match version {
        Version::Http11 => !facts.close,
        Version::Http10 => facts.keep_alive && !facts.close,
    };

    let head = buf.split_to(head_len).freeze();
    let method_token =
        &head[method_span.start as usize..(method_span.start + method_span.len) as usize];
    let method = Method::from_token(method_token, &head);
    let parts = req.parts_mut();
    parts.method = method;
    parts.target = target;
    parts.version = version;
    parts.keep_alive = keep_alive;
    parts.head = head;
    Ok(Some(Head {
        req,
        framing,
        expect_continue: facts.expect_continue,
    }))
}

/// The request line is the method, the target and " HTTP/1.1": the target limit plus room
/// for a long method.
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

/// The prefix of the stream that decides a head's fate.
///
/// A head is refused (or accepted) on a prefix whose length depends only on the bytes in
/// it, never on how many have arrived: the request line is judged within
/// `max_request_line` bytes of its start, the whole head within `max_header_bytes` (or the
/// request line, if that is longer). httparse is run on that prefix only, so a request that
/// TCP splits anywhere gets exactly the status it gets whole (found by fuzzing and by a
/// differential probe: `HTTP/2` then `.0` used to earn 400 where the whole line earned 505).
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Bytes of the prefix.
    len: usize,
    /// Start and length (without CRLF) of the request line, once its LF is inside the prefix.
    line: Option<(usize, usize)>,
    /// Where the request line starts (after leading empty lines).
    start: usize,
}

impl Window {
    fn of(buf: &[u8], limits: &Limits) -> Window {
        let head_cap = limits.max_header_bytes + 1;
        let start = buf[..buf.len().min(head_cap)]
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(head_cap);
        if start >= head_cap {
            // Nothing but empty lines past the head limit.
            return Window {
                len: head_cap,
                line: None,
                start,
            };
        }
        let line_cap = start + max_request_line(limits) + 1;
        let scan = &buf[start..buf.len().min(line_cap)];
        match scan.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let len = if lf > 0 && scan[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                Window {
                    len: head_cap.max(start + lf + 1),
                    line: Some((start, len)),
                    start,
                }
            }
            None => Window {
                len: line_cap,
                line: None,
                start,
            },
        }
    }

    /// Why a head that has not ended within the window is refused.
    fn refusal(self, buf: &[u8], limits: &Limits) -> Error {
        match self.line {
            None if self.start > limits.max_header_bytes => Error::HeadTooLarge,
            None => Error::UriTooLong,
            Some((start, len)) => {
                let line = &buf[start..start + len];
                let target = line.split(|&b| b == b' ').nth(1).unwrap_or(b"");
                if target.len() > limits.max_uri_bytes || len > max_request_line(limits) {
                    Error::UriTooLong
                } else {
                    Error::HeadTooLarge
                }
            }
        }
    }
}

/// httparse says "Version" both for `HTTP/2.0` (a version we do not speak: 505) and for
/// garbage where a version should be (400). `line` is the whole request line, without CRLF.
fn version_error(line: &[u8]) -> Error {
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
/// (OPTIONS only); visible ASCII only. Returns where the path starts in the two forms that
/// have one (origin-form: 0; absolute-form: after the authority), found here once.
fn check_target(method: &str, target: &str) -> Result<Option<usize>, Error> {
    // httparse admits `!`..`~` and every byte from 0x80 in a target; the latter are not
    // visible ASCII (a test sends every byte).
    if target.is_empty() || !target.is_ascii() {
        return Err(Error::Malformed("invalid request target"));
    }
    if method == "CONNECT" {
        return if target.contains('/') || !target.contains(':') {
            Err(Error::Malformed("CONNECT needs authority-form"))
        } else {
            Ok(None)
        };
    }
    if target.starts_with('/') {
        return Ok(Some(0));
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(None)
        } else {
            Err(Error::Malformed("asterisk-form outside OPTIONS"))
        };
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(Error::Malformed("invalid request target"));
    };
    // Absolute-form: RFC 9112 §3.2.2 has the target's authority replace Host, so it gets
    // Host's checks, and a server of `http` and `https` resources answers no other scheme
    // (nginx refuses the same targets with 400).
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(Error::Malformed(
            "request target scheme is not http or https",
        ));
    }
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let path_from = target.len() - rest.len() + authority.len();
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is an error to treat as such (it is how
    // `http://trusted@evil/` phishing reads), and the host may not be empty.
    if authority.contains('@') {
        return Err(Error::Host);
    }
    if authority.is_empty() || !valid_host(authority.as_bytes()) {
        return Err(Error::Host);
    }
    Ok(Some(path_from))
}

fn check_field(name: &[u8], value: &[u8], facts: &mut FieldFacts) -> Result<(), Error> {
    // httparse has checked the name's token characters and the value's bytes; these are the
    // fields that decide framing and connection handling.
    if name.eq_ignore_ascii_case(b"host") {
        facts.hosts += 1;
        if !valid_host(value) {
            return Err(Error::Host);
        }
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
                // RFC 9110 §5.6.1 lets a recipient skip empty list items, but a front proxy
                // that refuses them (as every reference server does) would frame this body
                // differently: refuse too.
                return Err(Error::Framing("empty item in Transfer-Encoding"));
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
    }
    // Names of token characters and values without control bytes (but tab) or DEL are
    // httparse's own rules, so they are not checked again here: a test sends every other
    // byte, at offsets its scalar and SIMD paths both see, and expects 400.
    Ok(())
}

/// RFC 9112 §3.2: `Host = uri-host [ ":" port ]` (RFC 3986), or empty. An invalid value
/// "MUST" get 400. A comma, though a sub-delim in RFC 3986, is refused: it is how two Host
/// fields look once a proxy has joined them into one.
fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let port = if value[0] == b'[' {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        let ok = !literal.is_empty() && literal.iter().all(|&b| IP_LITERAL[b as usize]);
        if !ok {
            return false;
        }
        &value[close + 1..]
    } else {
        // One pass for what every client sends, a name and maybe a port: the table holds
        // neither `:` nor `%`, so the first byte outside it ends the name or needs a look.
        let name_end = value
            .iter()
            .position(|&b| !REG_NAME[b as usize])
            .unwrap_or(value.len());
        match value.get(name_end) {
            None => return name_end > 0,
            Some(b':') if name_end > 0 => {
                return value[name_end + 1..].iter().all(u8::is_ascii_digit);
            }
            _ => {}
        }
        let colon = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let host = &value[..colon];
        if host.is_empty() || !valid_reg_name(host) {
            return false;
        }
        &value[colon..]
    };
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// The bytes a reg-name holds as themselves: RFC 3986's unreserved and sub-delims, less the
/// comma. A table, because Host is checked on every request and a per-byte search of the
/// sub-delims cost more than the rest of the field's handling.
const REG_NAME: [bool; 256] = byte_set(b"-._~!$&'()*+;=");
/// The bytes of an IP literal between `[` and `]` (IPv6 or IPvFuture), as loosely as RFC
/// 3986's grammar allows them.
const IP_LITERAL: [bool; 256] = byte_set(b":._~-!$&'()*+;=");

/// ASCII letters and digits, and `extra`.
const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut b = 0;
    while b < 256 {
        set[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        set[extra[i] as usize] = true;
        i += 1;
    }
    set
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, without the comma.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'%' {
            let hex = name.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !REG_NAME[b as usize] {
            return false;
        }
        i += 1;
    }
    true
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
        return Ok(Framing::Chunked(ChunkedDecoder::new(
            limits.max_body_bytes,
            limits.max_header_bytes,
        )));
    }
    // The length is checked against the body limit by the caller, which may hold a
    // route's own limit.
    Ok(Framing::Length(facts.content_length.unwrap_or(0)))
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
