//! A parsed request, owned and zero-copy.
//!
//! The head is one `Bytes` cut from the connection's read buffer; method, target and header
//! fields are offsets into it, kept inline (no heap) for up to 4 fields. The whole lives in a
//! box the thread recycles, so a `Request` moves (to the router, to a `pool` worker) as one
//! pointer, and the plaintext path allocates nothing per request once the read buffer has
//! been promoted to shared storage.

use crate::recycle::{Recycle, Recycled, Spares};
use crate::Extensions;
use bytes::Bytes;
use smallvec::SmallVec;
use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

/// The request method (RFC 9110 §9). Extension methods keep their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD: a GET whose response carries no body.
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH (RFC 5789)
    Patch,
    /// OPTIONS
    Options,
    /// CONNECT
    Connect,
    /// TRACE
    Trace,
    /// Any other token.
    Other(Bytes),
}

impl Method {
    pub(crate) fn from_token(token: &[u8], head: &Bytes) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other(head.slice_ref(token)),
        }
    }

    /// The method's token, e.g. `"GET"`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            // httparse admits only tchar bytes in a method, all ASCII.
            Method::Other(token) => std::str::from_utf8(token).unwrap_or(""),
        }
    }
}

/// HTTP/1.0 or HTTP/1.1; the decoder answers any other version with 505.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless keep-alive is asked.
    Http10,
    /// HTTP/1.1: persistent unless `Connection: close`.
    Http11,
}

/// A byte range inside the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    pub(crate) fn of(inner: &[u8], outer: &[u8]) -> Span {
        let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
        Span {
            start: start as u32,
            len: inner.len() as u32,
        }
    }
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }

    pub(crate) fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.range()]
    }

    /// These bytes of `buf`, sharing its allocation.
    pub(crate) fn shared(&self, buf: &Bytes) -> Bytes {
        buf.slice(self.range())
    }

    /// The part of this span at `range` of its own bytes.
    fn sub(self, range: std::ops::Range<usize>) -> Span {
        Span {
            start: self.start + range.start as u32,
            len: range.len() as u32,
        }
    }
}

/// Where a target's path and query lie: found once by the decoder, since a router and a
/// handler ask for both on every request and searching the target each time (with a UTF-8
/// check of the whole of it) cost a keep-alive request ~10% of its instructions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TargetSpans {
    pub(crate) whole: Span,
    pub(crate) path: Span,
    /// After the `?`, when there is one.
    pub(crate) query: Option<Span>,
}

impl TargetSpans {
    /// The spans of `target`, which lies at `whole` in the head, its path starting at
    /// `path_from` as the decoder's check of the target found it: origin-form (`/a?b`) is a
    /// path from 0 and a query; absolute-form (`http://h/a?b`) the same after scheme and
    /// authority (`/` when the path is empty); authority-form and `*` (`None`) are their own
    /// path.
    pub(crate) fn of(target: &[u8], whole: Span, path_from: Option<usize>) -> TargetSpans {
        let Some(from) = path_from else {
            return TargetSpans {
                whole,
                path: whole,
                query: None,
            };
        };
        let q = target[from..]
            .iter()
            .position(|&b| b == b'?')
            .map(|i| from + i);
        let path_end = q.unwrap_or(target.len());
        TargetSpans {
            whole,
            path: whole.sub(from..path_end),
            query: q.map(|q| whole.sub(q + 1..target.len())),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldSpan {
    pub(crate) name: Span,
    pub(crate) value: Span,
}

/// A request's fields as spans of its head. Four inline: curl sends three, load generators
/// one to three, HttpArena's POSTs three (a browser's dozen spills to the heap, one
/// allocation); every request is moved several times between the parser and the handler,
/// so each inline slot costs every request its copy.
pub(crate) type Fields = SmallVec<[FieldSpan; 4]>;

/// One request: head, fields and a fully read body.
///
/// One pointer wide: a request travels by value from the decoder through the connection,
/// the panic guard and the router to the handler, and each of those moves copied the whole
/// of it (~270 bytes; a fifth of a pipelined request's instructions went to such copies)
/// before it lived behind a box. The box is recycled: a request dropped on a thread leaves
/// its (emptied) box for the next request decoded there, so the keep-alive path still
/// allocates nothing per request.
#[derive(Clone, Debug)]
pub struct Request(Recycled<Parts>);

/// What a [`Request`] holds.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub(crate) head: Bytes,
    pub(crate) method: Method,
    pub(crate) target: TargetSpans,
    pub(crate) version: Version,
    pub(crate) fields: Fields,
    pub(crate) body: Bytes,
    pub(crate) keep_alive: bool,
    /// Path parameters a router matched (`/items/{id}`), percent-decoded.
    pub(crate) params: Vec<(Box<str>, Box<str>)>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) extensions: Extensions,
    /// The application's shared state, set by the router that holds it.
    pub(crate) state: Option<Arc<dyn Any + Send + Sync>>,
}

thread_local! {
    static SPARE: Spares<Parts> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Recycle for Parts {
    fn spares() -> &'static std::thread::LocalKey<Spares<Self>> {
        &SPARE
    }

    /// The head (and an extension method's token) pins the connection's read buffer; the
    /// state and extensions are the application's. The params' room stays. What is left is
    /// what a fresh request starts from ([`Request::fresh`]).
    fn empty(&mut self) {
        self.head = Bytes::new();
        self.method = Method::Get;
        self.body = Bytes::new();
        self.fields.clear();
        self.params.clear();
        self.extensions.clear();
        self.state = None;
        self.peer = None;
    }
}

impl Default for Parts {
    fn default() -> Self {
        Parts {
            head: Bytes::new(),
            method: Method::Get,
            target: TargetSpans::default(),
            version: Version::Http11,
            fields: Fields::new(),
            body: Bytes::new(),
            keep_alive: true,
            params: Vec::new(),
            peer: None,
            extensions: Extensions::default(),
            state: None,
        }
    }
}

impl Request {
    /// An empty request to fill in place, in a recycled box when this thread has one.
    pub(crate) fn fresh() -> Request {
        Request(Recycled::fresh())
    }

    pub(crate) fn parts(&self) -> &Parts {
        &self.0
    }

    pub(crate) fn parts_mut(&mut self) -> &mut Parts {
        &mut self.0
    }
}

/// A path parameter that is missing or does not parse as the type asked for: 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path parameter {name:?}: {reason}")]
pub struct ParamError {
    /// The parameter's name.
    pub name: String,
    /// Why it was refused.
    pub reason: String,
}

impl Request {
    /// The method.
    pub fn method(&self) -> &Method {
        &self.parts().method
    }

    /// The request target as sent: origin-form (`/a?b`), absolute-form, authority-form
    /// (CONNECT) or `*` (OPTIONS). The decoder admits only visible ASCII here.
    pub fn target(&self) -> &str {
        self.text(self.parts().target.whole)
    }

    /// The path: the target without its query, and for absolute-form without scheme and
    /// authority (`http://h/a?b` → `/a`, `http://h?b` → `/`).
    pub fn path(&self) -> &str {
        std::str::from_utf8(self.path_bytes()).unwrap_or("")
    }

    /// [`path`](Self::path) as the bytes it is: for a lookup that needs no `&str`, without
    /// the UTF-8 check (the decoder admitted only visible ASCII).
    pub fn path_bytes(&self) -> &[u8] {
        let path = self.parts().target.path.get(&self.parts().head);
        if path.is_empty() {
            b"/"
        } else {
            path
        }
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.parts().target.query.map(|q| self.text(q))
    }

    /// [`query`](Self::query) as the bytes it is: for a handler that reads numbers or
    /// tokens from it, without the UTF-8 check (a third of what summing two small numbers
    /// from a query cost).
    pub fn query_bytes(&self) -> Option<&[u8]> {
        self.parts().target.query.map(|q| q.get(&self.parts().head))
    }

    /// A span of the head the decoder admitted as visible ASCII, as text.
    fn text(&self, span: Span) -> &str {
        std::str::from_utf8(span.get(&self.parts().head)).unwrap_or("")
    }

    /// The value of query parameter `name`, as sent (see [`percent_decode`] to decode it).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.raw_query_pairs()
            .find_map(|(k, v)| (k == name).then_some(v))
    }

    /// The query's `key=value` pairs in order, as sent (a pair without `=` has an empty
    /// value; empty pairs are skipped): what a handler that reads numbers or tokens needs,
    /// without decoding.
    pub fn raw_query_pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        // Byte searches: `str::split(char)` sets up a memchr per piece, which on a query
        // of a few bytes cost more than the rest of a small handler.
        let mut rest = self.query();
        std::iter::from_fn(move || loop {
            let query = rest?;
            let (pair, next) = match query.bytes().position(|b| b == b'&') {
                Some(i) => (&query[..i], Some(&query[i + 1..])),
                None => (query, None),
            };
            rest = next;
            if !pair.is_empty() {
                return Some(match pair.bytes().position(|b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, ""),
                });
            }
        })
    }

    /// The query's `key=value` pairs in order, percent-decoded (`+` is a space); a pair that
    /// does not decode to UTF-8 is left out.
    pub fn query_pairs(
        &self,
    ) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> + '_ {
        self.raw_query_pairs()
            .filter_map(|(k, v)| Some((percent_decode(k, true)?, percent_decode(v, true)?)))
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.parts().version
    }

    /// The first field named `name` (ASCII case-insensitive), its value without surrounding
    /// whitespace.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The first field named `name` as text, when its value is visible ASCII (and spaces);
    /// `None` when absent or not text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.header(name)?).ok()
    }

    /// Every header field in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.parts().fields.iter().map(move |f| {
            let name = std::str::from_utf8(f.name.get(&self.parts().head)).unwrap_or("");
            (name, f.value.get(&self.parts().head))
        })
    }

    /// The body, decoded from its transfer coding; empty when there was none.
    pub fn body(&self) -> &Bytes {
        &self.parts().body
    }

    /// Whether the connection stays open after this request's response (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        self.parts().keep_alive
    }

    /// The path parameter `name` a router matched (`/items/{id}` → `param("id")`),
    /// percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.parts()
            .params
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }

    /// The path parameter `name`, parsed as `T` (`req.param_as::<u32>("id")?`): a missing or
    /// unparsable one is a [`ParamError`], which a handler returns as 400.
    pub fn param_as<T: std::str::FromStr>(&self, name: &str) -> Result<T, ParamError>
    where
        T::Err: std::fmt::Display,
    {
        let value = self.param(name).ok_or_else(|| ParamError {
            name: name.into(),
            reason: "missing".into(),
        })?;
        value.parse().map_err(|e: T::Err| ParamError {
            name: name.into(),
            reason: format!("{value:?}: {e}"),
        })
    }

    /// The application's shared state of type `T`, as the router that routed this request
    /// holds it (`Router::with_state` in `backlog_server`): one value for every request,
    /// not an `Arc` cloned into every closure.
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.parts().state.as_deref()?.downcast_ref()
    }

    /// Set the shared state a handler reads with [`Request::state`] (what a router does).
    pub fn set_state(&mut self, state: Arc<dyn Any + Send + Sync>) {
        self.parts_mut().state = Some(state);
    }

    /// Set the path parameters (what a router does when a pattern matches).
    pub fn set_params(&mut self, params: Vec<(Box<str>, Box<str>)>) {
        self.parts_mut().params = params;
    }

    /// The client's address, as `accept` reported it (`None` for a request built in a test
    /// without [`RequestBuilder::peer`]).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.parts().peer
    }

    /// Record the client's address (what the server does for every request it reads).
    pub fn set_peer_addr(&mut self, peer: Option<SocketAddr>) {
        self.parts_mut().peer = peer;
    }

    /// Values earlier layers attached to this request (see [`Extensions`]).
    pub fn extensions(&self) -> &Extensions {
        &self.parts().extensions
    }

    /// Attach values for later layers and the handler.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.parts_mut().extensions
    }

    /// The request head exactly as received (request line and fields, with the blank line).
    pub fn raw_head(&self) -> &Bytes {
        &self.parts().head
    }
}

/// Builds a [`Request`] without a socket, for testing handlers: the request is written as
/// HTTP/1.1 text and read back by the server's own decoder, so a handler test sees exactly
/// what the server would hand it — and a request the server would refuse is an error here.
///
/// ```
/// use h1::Request;
/// let req = Request::builder()
///     .method("PUT")
///     .target("/items/7?dry_run=1")
///     .header("Content-Type", "application/json")
///     .body(r#"{"name":"x"}"#)
///     .build()
///     .unwrap();
/// assert_eq!(req.path(), "/items/7");
/// assert_eq!(req.query_param("dry_run"), Some("1"));
/// assert_eq!(&req.body()[..], br#"{"name":"x"}"#);
/// ```
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    peer: Option<SocketAddr>,
    extensions: Extensions,
}

impl Request {
    /// A [`RequestBuilder`]: `GET /`, no fields, no body.
    pub fn builder() -> RequestBuilder {
        RequestBuilder {
            method: "GET".into(),
            target: "/".into(),
            headers: Vec::new(),
            body: Bytes::new(),
            peer: None,
            extensions: Extensions::default(),
        }
    }
}

impl RequestBuilder {
    /// The method (`GET`, `POST`, any token).
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.to_string();
        self
    }

    /// The request target: a path with its query (`/a/b?c=d`), or another RFC 9112 form.
    pub fn target(mut self, target: &str) -> Self {
        self.target = target.to_string();
        self
    }

    /// Add a field. `Host` is added when none is given, and `Content-Length` for the body.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The client's address ([`Request::peer_addr`]).
    pub fn peer(mut self, addr: SocketAddr) -> Self {
        self.peer = Some(addr);
        self
    }

    /// Attach a value, as a layer before the handler would ([`Request::extensions`]).
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// The request, as the server's decoder reads it; its refusal if it would refuse it.
    pub fn build(self) -> Result<Request, crate::Error> {
        let mut text = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("host") {
            text.push_str("Host: localhost\r\n");
        }
        let framed = has("content-length") || has("transfer-encoding");
        if !framed && !self.body.is_empty() {
            text.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        for (n, v) in &self.headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        let mut buf = bytes::BytesMut::from(text.as_bytes());
        buf.extend_from_slice(&self.body);
        let limits = crate::Limits {
            max_header_bytes: buf.len().max(crate::Limits::default().max_header_bytes),
            max_uri_bytes: self
                .target
                .len()
                .max(crate::Limits::default().max_uri_bytes),
            max_body_bytes: (self.body.len() as u64).max(crate::Limits::default().max_body_bytes),
            ..crate::Limits::default()
        };
        let mut decoder = crate::RequestDecoder::new(limits);
        loop {
            match decoder.decode(&mut buf)? {
                crate::Decoded::Request(mut req) => {
                    req.parts_mut().peer = self.peer;
                    req.parts_mut().extensions = self.extensions;
                    return Ok(req);
                }
                crate::Decoded::Continue => continue,
                crate::Decoded::Partial => {
                    return Err(crate::Error::Framing(
                        "the body is shorter than its framing",
                    ))
                }
            }
        }
    }
}

/// `%XX` sequences decoded (and, in a query, `+` as a space when `plus_is_space`); `None` when
/// the result is not UTF-8 or a `%` is not followed by two hex digits.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<std::borrow::Cow<'_, str>> {
    if !(s.contains('%') || plus_is_space && s.contains('+')) {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_request_is_what_the_decoder_reads() {
        let req = Request::builder()
            .method("POST")
            .target("/x?y=1")
            .header("X-Id", "7")
            .body("hello")
            .build()
            .unwrap();
        assert_eq!(req.method().as_str(), "POST");
        assert_eq!(req.header("x-id"), Some(&b"7"[..]));
        assert_eq!(req.header("host"), Some(&b"localhost"[..]));
        assert_eq!(&req.body()[..], b"hello");
        // What the server would refuse, the builder refuses.
        let refused = Request::builder().header("X", "a\rb").build();
        assert!(refused.is_err());
        let refused = Request::builder().header("Host", "a b").build();
        assert_eq!(refused.unwrap_err().status(), 400);
    }

    /// The path and query the decoder located, for every target form (RFC 9112 §3.2).
    #[test]
    fn path_and_query_of_every_target_form() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("GET", "/", "/", None),
            ("GET", "/a/b?x=1&y=2", "/a/b", Some("x=1&y=2")),
            ("GET", "/a?", "/a", Some("")),
            ("GET", "/a?b?c", "/a", Some("b?c")),
            ("GET", "/q?u=http://x/y", "/q", Some("u=http://x/y")),
            ("GET", "http://h/x?q", "/x", Some("q")),
            ("GET", "http://h:8080", "/", None),
            ("GET", "https://h?q=1", "/", Some("q=1")),
            ("GET", "HTTP://h/a/b", "/a/b", None),
            ("OPTIONS", "*", "*", None),
            ("CONNECT", "h:443", "h:443", None),
        ];
        for &(method, target, path, query) in cases {
            let req = Request::builder()
                .method(method)
                .target(target)
                .build()
                .unwrap();
            assert_eq!(req.target(), target);
            assert_eq!(req.path(), path, "{target}");
            assert_eq!(req.path_bytes(), path.as_bytes(), "{target}");
            assert_eq!(req.query(), query, "{target}");
        }
    }

    /// A dropped request's box serves the next request decoded on the thread, emptied: it
    /// keeps nothing of the old request (not its head, which would pin a read buffer).
    #[test]
    fn a_dropped_requests_box_is_reused_and_keeps_nothing() {
        std::thread::spawn(|| {
            let mut first = Request::builder()
                .method("POST")
                .target("/a")
                .header("X-Old", "1")
                .peer("127.0.0.1:9".parse().unwrap())
                .extension(7u32)
                .body("old body")
                .build()
                .unwrap();
            first.set_params(vec![("id".into(), "1".into())]);
            let head = first.parts().head.clone();
            let at = first.parts() as *const Parts;
            drop(first);
            assert!(head.is_unique(), "the dropped request let go of its head");
            let second = Request::builder().target("/b").build().unwrap();
            assert_eq!(second.parts() as *const Parts, at, "the box was reused");
            assert_eq!(second.target(), "/b");
            assert_eq!(second.header("x-old"), None);
            assert_eq!(second.param("id"), None);
            assert_eq!(second.peer_addr(), None);
            assert_eq!(second.extensions().get::<u32>(), None);
            assert!(second.body().is_empty());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn query_pairs_are_decoded() {
        let req = Request::builder()
            .target("/s?q=a+b%21&empty=&flag&bad=%zz&x=%C3%A9")
            .build()
            .unwrap();
        let pairs: Vec<(String, String)> = req
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = [("q", "a b!"), ("empty", ""), ("flag", ""), ("x", "é")];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn raw_query_pairs_are_as_sent() {
        let req = Request::builder()
            .target("/s?a=1&&b=%32&flag&=v&a=x=y&")
            .build()
            .unwrap();
        let pairs: Vec<(&str, &str)> = req.raw_query_pairs().collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("b", "%32"),
                ("flag", ""),
                ("", "v"),
                ("a", "x=y")
            ]
        );
        assert_eq!(req.query_param("a"), Some("1"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query_param("c"), None);
        let none = Request::builder().target("/s").build().unwrap();
        assert_eq!(none.raw_query_pairs().count(), 0);
    }
}
