//! Responses: a small builder, and the encoding that frames them on the wire.
//!
//! The encoder, not the handler, owns framing: it writes Content-Length from the body it is
//! given, drops any framing or Connection field a handler set, adds Date (from a per-thread
//! [`DateCache`]) and Server, and decides whether the connection stays open. A handler cannot
//! produce a response that desynchronises the connection.

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
}

/// A response: status, fields and a complete body.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: SmallVec<[(Bytes, Bytes); 4]>,
    body: Bytes,
    close: bool,
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

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: SmallVec::new(),
            body: Bytes::new(),
            close: false,
        }
    }

    /// A `text/plain` response. A `&'static str` body is not copied.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
    }

    /// An `application/json` response (the body is not checked).
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// The response to a refused request: its status, a one-line reason, and close.
    pub fn for_error(err: Error) -> Self {
        let mut text = err.to_string();
        text.push('\n');
        Response::text(err.status(), text).close()
    }

    /// Add a field. Names must be tokens and values free of CR, LF and NUL: a handler that
    /// breaks that is a bug, and panics (which the server turns into a 500), rather than
    /// letting a value inject fields or a second response.
    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        let (name, value) = (name.into(), value.into());
        assert!(
            !name.is_empty() && name.iter().all(|&b| crate::chunked::is_tchar(b)),
            "invalid header name {name:?}"
        );
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "invalid header value for {name:?}"
        );
        self.headers.push((name, value));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Close the connection after this response.
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The fields the handler set.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|(n, v)| (&n[..], &v[..]))
    }

    /// The first field named `name`, case-insensitively.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &v[..])
    }

    /// The body.
    pub fn body_bytes(&self) -> &Bytes {
        &self.body
    }

    /// Whether the handler asked to close the connection.
    pub fn wants_close(&self) -> bool {
        self.close
    }

    /// Append the encoded response to `out`. Returns whether the connection stays open.
    pub fn encode(&self, ctx: EncodeContext, date: &DateCache, out: &mut BytesMut) -> bool {
        let status = StatusCode(self.status);
        // After a 2xx to CONNECT the bytes that follow are the tunnel's, not requests: the
        // answer has no Content-Length or body (RFC 9110 §9.3.6), and the connection closes.
        let tunnel = ctx.connect && (200..300).contains(&self.status);
        let keep_alive = ctx.keep_alive && !self.close && !tunnel;
        let framed = status.allows_body() && !tunnel;
        let reason = status.reason();
        out.reserve(128 + self.body.len() + self.headers.len() * 32);
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.put_u8(b' ');
        out.put_slice(reason.as_bytes());
        out.put_slice(b"\r\nServer: backlog\r\nDate: ");
        out.put_slice(date.as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in &self.headers {
            if is_hop_or_framing(name) {
                continue;
            }
            out.put_slice(name);
            out.put_slice(b": ");
            out.put_slice(value);
            out.put_slice(b"\r\n");
        }
        if framed {
            out.put_slice(b"Content-Length: ");
            out.put_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
            out.put_slice(b"\r\n");
        }
        if !keep_alive {
            out.put_slice(b"Connection: close\r\n");
        } else if ctx.version == Version::Http10 {
            out.put_slice(b"Connection: keep-alive\r\n");
        }
        out.put_slice(b"\r\n");
        if framed && !ctx.head {
            out.put_slice(&self.body);
        }
        keep_alive
    }
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
    #[should_panic]
    fn header_injection_panics() {
        let _ = Response::new(200).header("X", "a\r\nSet-Cookie: b");
    }
}
