//! Responses: a small builder, and the encoding that frames them on the wire.
//!
//! The encoder, not the handler, owns framing: it writes Content-Length from the body it is
//! given, drops any framing or Connection field a handler set, adds Date (from a per-thread
//! [`DateCache`]) and Server, and decides whether the connection stays open. A handler cannot
//! produce a response that desynchronises the connection.

use crate::recycle::{Recycle, Recycled, Spares};
use crate::{DateCache, Error, Version};
use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

/// A status code with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// The reason phrase of RFC 9110 §15 (empty for codes it does not name).
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            417 => "Expectation Failed",
            422 => "Unprocessable Content",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// 1xx, 204 and 304 responses never carry a body (RFC 9110 §6.4.1).
    pub fn allows_body(self) -> bool {
        !(self.0 < 200 || self.0 == 204 || self.0 == 304)
    }

    /// The whole status line of the statuses most answers carry, so that the encoder
    /// copies one slice instead of formatting five pieces (a 200's is in the date cache,
    /// ahead of the fields every answer has: [`DateCache::ok_line_server_and_date`]).
    fn common_line(self) -> Option<&'static [u8]> {
        Some(match self.0 {
            201 => b"HTTP/1.1 201 Created\r\n",
            204 => b"HTTP/1.1 204 No Content\r\n",
            304 => b"HTTP/1.1 304 Not Modified\r\n",
            400 => b"HTTP/1.1 400 Bad Request\r\n",
            404 => b"HTTP/1.1 404 Not Found\r\n",
            _ => return None,
        })
    }
}

impl StatusCode {
    /// 200 OK.
    pub const OK: u16 = 200;
    /// 201 Created.
    pub const CREATED: u16 = 201;
    /// 204 No Content.
    pub const NO_CONTENT: u16 = 204;
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: u16 = 401;
    /// 403 Forbidden.
    pub const FORBIDDEN: u16 = 403;
    /// 404 Not Found.
    pub const NOT_FOUND: u16 = 404;
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    /// 409 Conflict.
    pub const CONFLICT: u16 = 409;
    /// 413 Content Too Large.
    pub const CONTENT_TOO_LARGE: u16 = 413;
    /// 415 Unsupported Media Type.
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    /// 422 Unprocessable Content.
    pub const UNPROCESSABLE_CONTENT: u16 = 422;
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: u16 = 500;
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

/// A header field a handler tried to set that cannot go on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeader {
    /// The name is empty or not a token (RFC 9110 §5.1).
    #[error("invalid header name {0:?}")]
    Name(String),
    /// The value holds CR, LF or NUL: it would inject fields or a second response.
    #[error("invalid value for header {0:?}: CR, LF and NUL are not allowed")]
    Value(String),
}

/// A response: status, fields and a complete body.
///
/// One pointer wide, for the reason a [`crate::Request`] is: it is built by value (each
/// builder call takes and returns it) and travels by value back from the handler. Its box
/// is recycled on the thread that drops it.
#[derive(Clone, Debug)]
pub struct Response(Recycled<Parts>);

#[derive(Debug, Clone, Default)]
struct Parts {
    status: u16,
    /// Two inline (a content type and one more; more spill to the heap, one allocation).
    headers: SmallVec<[(Bytes, Bytes); 2]>,
    body: Body,
    close: bool,
    /// A field that could not be set: the response goes out as a 500 instead.
    invalid: Option<Box<InvalidHeader>>,
}

/// Bodies up to this long, given by [`Response::body_copied`], are kept in the response's own
/// box: a short answer computed per request (a number, an id, a small JSON object) then costs
/// no allocation of its own (about 110 instructions of malloc and free a request).
pub const INLINE_BODY: usize = 30;
const _: () = assert!(INLINE_BODY <= u8::MAX as usize);

/// A response's body: shared bytes (static, or an allocation of its own), or a short one
/// inside the response.
#[derive(Clone)]
enum Body {
    Shared(Bytes),
    Inline { len: u8, bytes: [u8; INLINE_BODY] },
}

impl Body {
    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Shared(bytes) => bytes,
            Body::Inline { len, bytes } => &bytes[..usize::from(*len)],
        }
    }

    fn copied(from: &[u8]) -> Body {
        if from.len() > INLINE_BODY {
            return Body::Shared(Bytes::copy_from_slice(from));
        }
        let mut bytes = [0; INLINE_BODY];
        bytes[..from.len()].copy_from_slice(from);
        Body::Inline {
            // At most INLINE_BODY, which a u8 holds (asserted below the constant).
            len: from.len() as u8,
            bytes,
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::Shared(Bytes::new())
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

thread_local! {
    static SPARE: Spares<Parts> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Recycle for Parts {
    fn spares() -> &'static std::thread::LocalKey<Spares<Self>> {
        &SPARE
    }

    /// The body and fields may be large or shared.
    fn empty(&mut self) {
        self.headers.clear();
        self.body = Body::default();
        self.invalid = None;
    }
}

impl Response {
    fn parts(&self) -> &Parts {
        &self.0
    }

    fn parts_mut(&mut self) -> &mut Parts {
        &mut self.0
    }
}

/// What the encoder must know about the request being answered.
#[derive(Debug, Clone, Copy)]
pub struct EncodeContext {
    /// The request was HEAD: send the fields of the GET response, no body.
    pub head: bool,
    /// The request allows the connection to stay open.
    pub keep_alive: bool,
    /// The request's version (an HTTP/1.0 keep-alive must be confirmed explicitly).
    pub version: Version,
    /// The request was CONNECT: a 2xx answer opens a tunnel (RFC 9110 §9.3.6), so it
    /// carries no framing and, since backlog does not tunnel, ends the connection.
    pub connect: bool,
}

impl EncodeContext {
    /// The context for answering `req`; `keep_alive` is whether the server, too, wants the
    /// connection to stay open (it does not while draining).
    pub fn for_request(req: &crate::Request, keep_alive: bool) -> Self {
        EncodeContext {
            head: *req.method() == crate::Method::Head,
            keep_alive: keep_alive && req.keep_alive(),
            version: req.version(),
            connect: *req.method() == crate::Method::Connect,
        }
    }
}

/// The fields the constructors add.
const TEXT_PLAIN: (&str, &str) = ("Content-Type", "text/plain; charset=utf-8");
const APPLICATION_JSON: (&str, &str) = ("Content-Type", "application/json");

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        let mut resp = Response(Recycled::fresh());
        let parts = resp.parts_mut();
        parts.status = status;
        parts.close = false;
        resp
    }

    /// A `text/plain` response. A `&'static str` body is not copied.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Response::new(status).known_header(TEXT_PLAIN).body(body)
    }

    /// An `application/json` response from already encoded bytes (not checked). With the
    /// `serde` feature, `Response::json` serializes a value.
    pub fn json_bytes(status: u16, body: impl Into<Bytes>) -> Self {
        Response::new(status)
            .known_header(APPLICATION_JSON)
            .body(body)
    }

    /// A field of our own, valid by construction (checked once, by a test), so the
    /// per-response check — a tenth of a pipelined request's own cost — is skipped.
    fn known_header(mut self, (name, value): (&'static str, &'static str)) -> Self {
        self.parts_mut().headers.push((
            Bytes::from_static(name.as_bytes()),
            Bytes::from_static(value.as_bytes()),
        ));
        self
    }

    /// The response to a refused request: its status, a one-line reason, and close.
    pub fn for_error(err: Error) -> Self {
        let mut text = err.to_string();
        text.push('\n');
        Response::text(err.status(), text).close()
    }

    /// Add a field (a second one with the same name is added, not replaced: see
    /// [`set_header`](Self::set_header)). Names must be tokens and values free of CR, LF and
    /// NUL; a field that breaks that is not sent, and the response goes out as a 500 — a
    /// value can never inject fields or a second response. [`try_header`](Self::try_header)
    /// reports the error instead.
    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        let (name, value) = (name.into(), value.into());
        match check_field(&name, &value) {
            Ok(()) => self.parts_mut().headers.push((name, value)),
            Err(err) => {
                self.parts_mut().invalid.get_or_insert(Box::new(err));
            }
        }
        self
    }

    /// Add a field, or say why it cannot be sent.
    pub fn try_header(
        mut self,
        name: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Self, InvalidHeader> {
        let (name, value) = (name.into(), value.into());
        check_field(&name, &value)?;
        self.parts_mut().headers.push((name, value));
        Ok(self)
    }

    /// Set a field, replacing every field of that name (case-insensitively): setting
    /// `Content-Type` after [`json`](Self::json) sends one, not two.
    pub fn set_header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        let name = name.into();
        self.parts_mut()
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.header(name, value)
    }

    /// The field that could not be set, if any (the response then goes out as a 500).
    pub fn invalid_header(&self) -> Option<&InvalidHeader> {
        self.parts().invalid.as_deref()
    }

    /// Change the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.parts_mut().status = status;
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.parts_mut().body = Body::Shared(body.into());
        self
    }

    /// Set the body to a copy of `body`: up to [`INLINE_BODY`] bytes are kept in the
    /// response itself, with no allocation (for a short answer made per request, where
    /// [`body`](Self::body) would take an allocation of its own); a longer one is copied into
    /// one.
    pub fn body_copied(mut self, body: &[u8]) -> Self {
        self.parts_mut().body = Body::copied(body);
        self
    }

    /// Close the connection after this response.
    pub fn close(mut self) -> Self {
        self.parts_mut().close = true;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.parts().status
    }

    /// The fields the handler set.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.parts().headers.iter().map(|(n, v)| (&n[..], &v[..]))
    }

    /// The first field named `name`, case-insensitively.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        self.parts()
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &v[..])
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        self.parts().body.as_slice()
    }

    /// The 500 a handler's bug becomes (a panic, an invalid field): it closes the
    /// connection, since what the handler left behind cannot be trusted.
    pub fn internal_error() -> Self {
        Response::text(500, "Internal Server Error\n").close()
    }

    /// Whether the handler asked to close the connection.
    pub fn wants_close(&self) -> bool {
        self.parts().close
    }

    /// Append the encoded response to `out`. Returns whether the connection stays open.
    pub fn encode(&self, ctx: EncodeContext, date: &DateCache, out: &mut BytesMut) -> bool {
        if self.parts().invalid.is_some() {
            // A handler's bug, answered as one; the connection closes like after a panic.
            return Response::internal_error().encode(ctx, date, out);
        }
        let body = self.parts().body.as_slice();
        out.reserve(128 + body.len() + self.parts().headers.len() * 32);
        let head = self.encode_head(ctx, date, Framing::Length(body.len() as u64), out);
        if head.body.is_some() {
            out.put_slice(body);
        }
        head.keep_alive
    }

    /// Append the status line and fields of a response whose body (not this one's: a
    /// stream's) is framed as `framing`, and say how that body is to be written. The body
    /// held by this response is ignored. A response that may not carry a body (1xx, 204,
    /// 304, a HEAD's answer, a 2xx to CONNECT) gets none whatever `framing` says, and a
    /// stream of unknown length to an HTTP/1.0 client is delimited by closing the
    /// connection, as it has no chunked coding.
    pub fn encode_head(
        &self,
        ctx: EncodeContext,
        date: &DateCache,
        framing: Framing,
        out: &mut BytesMut,
    ) -> Head {
        let fields = self.parts().headers.iter().map(|(n, v)| (&n[..], &v[..]));
        write_head(
            self.parts().status,
            self.parts().close,
            fields,
            ctx,
            date,
            framing,
            out,
        )
    }
}

/// The status line and fields of a response with `status` and `fields`, framed as
/// `framing`; `close`: the application asked to close the connection. Shared by
/// [`Response`] and the `http` crate's responses, whose fields need no copy to be written.
pub(crate) fn write_head<'a>(
    status: u16,
    close: bool,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ctx: EncodeContext,
    date: &DateCache,
    framing: Framing,
    out: &mut BytesMut,
) -> Head {
    let code = StatusCode(status);
    // After a 2xx to CONNECT the bytes that follow are the tunnel's, not requests: the
    // answer has no Content-Length or body (RFC 9110 §9.3.6), and the connection closes.
    let tunnel = ctx.connect && (200..300).contains(&status);
    let framed = code.allows_body() && !tunnel;
    let chunked = framed && matches!(framing, Framing::Chunked);
    let until_close = (chunked && ctx.version == Version::Http10)
        || (framed && !ctx.head && framing == Framing::Unstated);
    let keep_alive = ctx.keep_alive && !close && !tunnel && !until_close;
    out.reserve(256);
    if status == 200 {
        out.put_slice(date.ok_line_server_and_date());
    } else {
        match code.common_line() {
            Some(line) => out.put_slice(line),
            None => {
                out.put_slice(b"HTTP/1.1 ");
                out.put_slice(itoa::Buffer::new().format(status).as_bytes());
                out.put_u8(b' ');
                out.put_slice(code.reason().as_bytes());
                out.put_slice(b"\r\n");
            }
        }
        out.put_slice(date.server_and_date());
    }
    for (name, value) in fields {
        if is_hop_or_framing(name) {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) if framed => {
            out.put_slice(b"Content-Length: ");
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
            out.put_slice(b"\r\n");
        }
        Framing::Chunked if chunked && !until_close => {
            out.put_slice(b"Transfer-Encoding: chunked\r\n");
        }
        _ => {}
    }
    if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    } else if ctx.version == Version::Http10 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    let body = match framing {
        _ if !framed || ctx.head => None,
        Framing::Chunked if !until_close => Some(BodyCoding::Chunked),
        _ => Some(BodyCoding::AsIs),
    };
    Head { keep_alive, body }
}

/// How the body that follows a head is delimited: by a length the head states, or by
/// chunks (RFC 9112 §7.1) when the length is not known when the head leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`: exactly this many bytes follow.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither field. For the head of an answer to HEAD whose GET length is not known where
    /// the head is written (a service that left its `Content-Length` out, as a compressing
    /// layer does): RFC 9110 §9.3.2 lets a server omit what is determined only while
    /// generating the content, and `Content-Length: 0` would be false. Any other answer
    /// framed so is delimited by the close.
    Unstated,
}

/// What [`Response::encode_head`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Whether the connection stays open after the body.
    pub keep_alive: bool,
    /// How to write the body, or `None`: write none (HEAD, 204, 304, a tunnel).
    pub body: Option<BodyCoding>,
}

/// How a body's bytes go on the wire after [`Response::encode_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCoding {
    /// As they are (the head gave a length, or the connection's close ends the body).
    AsIs,
    /// Each piece as a chunk ([`crate::chunked::encode_chunk`]), then the last chunk.
    Chunked,
}

/// A name must be a token and a value free of CR, LF and NUL, or the field could inject
/// others (or a second response).
fn check_field(name: &[u8], value: &[u8]) -> Result<(), InvalidHeader> {
    if name.is_empty() || !name.iter().all(|&b| crate::chunked::is_tchar(b)) {
        return Err(InvalidHeader::Name(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(InvalidHeader::Value(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    Ok(())
}

fn is_hop_or_framing(name: &[u8]) -> bool {
    [
        &b"content-length"[..],
        b"transfer-encoding",
        b"connection",
        b"keep-alive",
        b"date",
        b"server",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// The interim response sent before reading a body that the client holds back for it.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The status lines kept whole are the ones the encoder would format, a 200's (kept in
    /// the date cache) too.
    #[test]
    fn common_status_lines_are_the_formatted_ones() {
        for code in 100..=599 {
            if let Some(line) = StatusCode(code).common_line() {
                let formatted = format!("HTTP/1.1 {code} {}\r\n", StatusCode(code).reason());
                assert_eq!(line, formatted.as_bytes());
            }
        }
        let ok = format!("HTTP/1.1 200 {}\r\n", StatusCode(200).reason());
        let cached = date();
        assert_eq!(
            cached.ok_line_server_and_date(),
            [ok.as_bytes(), cached.server_and_date()].concat()
        );
    }

    /// A dropped response's box serves the next response built on the thread, emptied.
    #[test]
    fn a_dropped_responses_box_is_reused_and_keeps_nothing() {
        std::thread::spawn(|| {
            let body = Bytes::from(vec![b'x'; 1000]);
            let first = Response::text(404, body.clone())
                .header("X-Old", "1")
                .close();
            let at = first.parts() as *const Parts;
            drop(first);
            assert!(body.is_unique(), "the dropped response let go of its body");
            let second = Response::new(204);
            assert_eq!(second.parts() as *const Parts, at, "the box was reused");
            assert_eq!(second.status(), 204);
            assert_eq!(second.headers().count(), 0);
            assert!(second.body_bytes().is_empty());
            assert!(!second.wants_close());
            assert!(second.invalid_header().is_none());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_fields_the_constructors_add_pass_the_field_check() {
        for (name, value) in [TEXT_PLAIN, APPLICATION_JSON] {
            assert!(
                check_field(name.as_bytes(), value.as_bytes()).is_ok(),
                "{name}: {value}"
            );
        }
    }
    use std::time::{Duration, UNIX_EPOCH};

    fn date() -> DateCache {
        DateCache::new(UNIX_EPOCH + Duration::from_secs(784_111_777))
    }

    fn ctx(keep_alive: bool) -> EncodeContext {
        EncodeContext {
            head: false,
            keep_alive,
            version: Version::Http11,
            connect: false,
        }
    }

    #[test]
    fn encodes_status_date_server_and_length() {
        let mut out = BytesMut::new();
        let open = Response::text(200, "Hello, World!\n").encode(ctx(true), &date(), &mut out);
        assert!(open);
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 200 OK\r\nServer: backlog\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\nHello, World!\n"[..]
        );
    }

    /// A copied body is the same answer on the wire as a shared one, whether it fits in the
    /// response (up to `INLINE_BODY` bytes) or not, and HEAD leaves it out either way.
    #[test]
    fn a_copied_body_encodes_as_a_shared_one_inline_or_not() {
        for len in [0, 1, 2, INLINE_BODY - 1, INLINE_BODY, INLINE_BODY + 1, 4096] {
            let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let copied = Response::text(200, Bytes::new()).body_copied(&body);
            let shared = Response::text(200, body.clone());
            assert_eq!(copied.body_bytes(), &body[..], "{len}");
            for head in [false, true] {
                let ctx = EncodeContext { head, ..ctx(true) };
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                assert!(copied.encode(ctx, &date(), &mut a));
                assert!(shared.encode(ctx, &date(), &mut b));
                assert_eq!(a, b, "{len} bytes, head {head}");
            }
        }
        // A body set after a copied one replaces it, and a recycled box keeps none.
        std::thread::spawn(|| {
            let resp = Response::new(200).body_copied(b"12345");
            assert!(
                format!("{resp:?}").contains(r#"body: b"12345""#),
                "{resp:?}"
            );
            assert_eq!(resp.clone().body("x").body_bytes(), b"x");
            drop(resp);
            assert!(Response::new(204).body_bytes().is_empty());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_streamed_head_states_its_framing_or_closes_for_http10() {
        let resp = Response::new(200).header("Transfer-Encoding", "gzip");
        let head = |ctx: EncodeContext, framing| {
            let mut out = BytesMut::new();
            let head = resp.encode_head(ctx, &date(), framing, &mut out);
            (head, String::from_utf8(out.to_vec()).unwrap())
        };
        let (h, text) = head(ctx(true), Framing::Chunked);
        assert_eq!(
            h,
            Head {
                keep_alive: true,
                body: Some(BodyCoding::Chunked)
            }
        );
        assert!(text.contains("Transfer-Encoding: chunked\r\n") && !text.contains("gzip"));
        let (h, text) = head(ctx(true), Framing::Length(1 << 40));
        assert_eq!(h.body, Some(BodyCoding::AsIs));
        assert!(text.contains("Content-Length: 1099511627776\r\n"));
        let old = EncodeContext {
            version: Version::Http10,
            ..ctx(true)
        };
        let (h, text) = head(old, Framing::Chunked);
        assert_eq!(
            h,
            Head {
                keep_alive: false,
                body: Some(BodyCoding::AsIs)
            }
        );
        assert!(!text.contains("chunked") && text.contains("Connection: close"));
        let head_req = EncodeContext {
            head: true,
            ..ctx(true)
        };
        assert_eq!(head(head_req, Framing::Chunked).0.body, None);
        // A HEAD's GET length unknown: no length stated, and the connection goes on.
        let (h, text) = head(head_req, Framing::Unstated);
        assert_eq!(
            h,
            Head {
                keep_alive: true,
                body: None
            }
        );
        assert!(!text.contains("Content-Length") && !text.contains("chunked"));
        // Anything else framed so ends with the connection.
        let (h, text) = head(ctx(true), Framing::Unstated);
        assert_eq!(
            h,
            Head {
                keep_alive: false,
                body: Some(BodyCoding::AsIs)
            }
        );
        assert!(!text.contains("Content-Length") && text.contains("Connection: close"));
        let no_content = Response::new(204);
        let mut out = BytesMut::new();
        let h = no_content.encode_head(ctx(true), &date(), Framing::Chunked, &mut out);
        assert_eq!(h.body, None);
        assert!(!String::from_utf8_lossy(&out).contains("chunked"));
    }

    #[test]
    fn head_keeps_length_drops_body_and_handler_framing_is_ignored() {
        let mut out = BytesMut::new();
        let resp = Response::new(200)
            .header("Content-Length", "999")
            .header("Transfer-Encoding", "chunked")
            .body("abc");
        let c = EncodeContext {
            head: true,
            keep_alive: false,
            version: Version::Http11,
            connect: false,
        };
        assert!(!resp.encode(c, &date(), &mut out));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(!text.contains("999") && !text.contains("chunked"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn no_body_statuses_have_no_length() {
        let mut out = BytesMut::new();
        Response::new(204)
            .body("x")
            .encode(ctx(true), &date(), &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(!text.contains("Content-Length") && text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_2xx_to_connect_has_no_framing_and_closes() {
        let c = EncodeContext {
            connect: true,
            ..ctx(true)
        };
        let mut out = BytesMut::new();
        let open = Response::text(200, "tunnel").encode(c, &date(), &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(!open);
        assert!(
            !text.contains("Content-Length") && !text.contains("tunnel"),
            "{text}"
        );
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        // A refusal of CONNECT is an ordinary framed answer.
        let mut out = BytesMut::new();
        assert!(Response::text(405, "no").encode(c, &date(), &mut out));
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .contains("Content-Length: 2"));
    }

    #[test]
    fn header_injection_is_a_500_not_a_panic() {
        let resp = Response::new(200).header("X", "a\r\nSet-Cookie: b");
        assert!(matches!(
            resp.invalid_header(),
            Some(InvalidHeader::Value(_))
        ));
        let mut out = BytesMut::new();
        assert!(!resp.encode(ctx(true), &date(), &mut out));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 500 ") && !text.contains("Set-Cookie"),
            "{text}"
        );
        assert!(Response::new(200).try_header("Bad Name", "v").is_err());
        assert!(Response::new(200).try_header("X-Ok", "v").is_ok());
    }

    #[test]
    fn set_header_replaces() {
        let resp =
            Response::json_bytes(200, "{}").set_header("content-type", "application/problem+json");
        let types: Vec<_> = resp
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .collect();
        assert_eq!(
            types,
            [(&b"content-type"[..], &b"application/problem+json"[..])]
        );
    }
}
