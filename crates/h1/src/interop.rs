//! The ecosystem's types at the edge: the `http` crate's `StatusCode`, `Method`, `HeaderMap`
//! and `Response` convert to and from backlog's own. Inside, a request stays what the parser
//! made it (its fields are spans of the head it was read in, never copied); a conversion
//! costs its copy only where an application asks for one.

use crate::response::{EncodeContext, Framing, Head};
use crate::{DateCache, Error, Method, Request, Response, StatusCode};
use bytes::{Bytes, BytesMut};

impl From<http::StatusCode> for StatusCode {
    fn from(status: http::StatusCode) -> Self {
        StatusCode(status.as_u16())
    }
}

impl TryFrom<StatusCode> for http::StatusCode {
    type Error = http::status::InvalidStatusCode;

    /// Any code from 100 to 999 (what `http` can hold).
    fn try_from(status: StatusCode) -> Result<Self, Self::Error> {
        http::StatusCode::from_u16(status.0)
    }
}

impl From<http::Method> for Method {
    fn from(method: http::Method) -> Self {
        Method::from(&method)
    }
}

impl From<&http::Method> for Method {
    fn from(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Method::Get,
            http::Method::HEAD => Method::Head,
            http::Method::POST => Method::Post,
            http::Method::PUT => Method::Put,
            http::Method::DELETE => Method::Delete,
            http::Method::PATCH => Method::Patch,
            http::Method::OPTIONS => Method::Options,
            http::Method::CONNECT => Method::Connect,
            http::Method::TRACE => Method::Trace,
            ref other => Method::Other(Bytes::copy_from_slice(other.as_str().as_bytes())),
        }
    }
}

impl TryFrom<&Method> for http::Method {
    type Error = http::method::InvalidMethod;

    /// Every method a request can carry converts: the parser admits only token bytes, which
    /// is what `http` asks of a method.
    fn try_from(method: &Method) -> Result<Self, Self::Error> {
        Ok(match method {
            Method::Get => http::Method::GET,
            Method::Head => http::Method::HEAD,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Delete => http::Method::DELETE,
            Method::Patch => http::Method::PATCH,
            Method::Options => http::Method::OPTIONS,
            Method::Connect => http::Method::CONNECT,
            Method::Trace => http::Method::TRACE,
            other => return http::Method::from_bytes(other.as_str().as_bytes()),
        })
    }
}

impl PartialEq<http::Method> for Method {
    fn eq(&self, other: &http::Method) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Entries a given-back header map may have room for and still be kept: a response's map
/// with room for a browser's request, not one that grew for a large answer.
const KEEP_MAP_CAPACITY: usize = 64;

thread_local! {
    /// A header map whose response has been encoded, emptied, kept for the next request's
    /// fields on this thread: a request converted for a tower service then allocates no map
    /// (two allocations and their frees per request otherwise; hyper keeps one per
    /// connection for the same reason).
    static SPARE_MAP: std::cell::RefCell<Option<http::HeaderMap>> =
        const { std::cell::RefCell::new(None) };
}

/// Give back the header map of a response that has been encoded, for this thread's next
/// [`Request::header_map`]. Its values are dropped now; a map with room for more than a
/// few dozen fields is freed rather than kept.
pub fn recycle_header_map(mut map: http::HeaderMap) {
    if map.capacity() > KEEP_MAP_CAPACITY {
        return;
    }
    map.clear();
    let _ = SPARE_MAP.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            *spare = Some(map);
        }
    });
}

impl Request {
    /// The request's fields as an `http::HeaderMap` (its values share the request's head;
    /// [`Request::header`] and [`Request::headers`] read them where they were received). Every field the parser
    /// admits has a token name and a value without control bytes, so each converts. The map
    /// is one [`recycle_header_map`] gave back on this thread, when there is one.
    pub fn header_map(&self) -> http::HeaderMap {
        let n = self.parts().fields.len();
        let mut map = SPARE_MAP
            .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.take()))
            .ok()
            .flatten()
            .unwrap_or_default();
        map.reserve(n);
        let head = &self.parts().head;
        for field in &self.parts().fields {
            // The name as bytes: the decoder admitted token characters only, and `http`
            // checks them again (no UTF-8 check needed before it).
            let name = http::HeaderName::from_bytes(field.name.get(head));
            // A slice of the head the request was read in: no copy, no allocation.
            let value = http::HeaderValue::from_maybe_shared(field.value.shared(head));
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        map
    }
}

impl Request {
    /// The request as an `http::Request` whose body is this one's bytes (not copied), for
    /// a service written against the `http` crate. The method, target, version and fields
    /// carry over (the fields are copied, once, here); the peer's address and the
    /// extensions layers attached stay behind, for the caller to move as it sees fit.
    ///
    /// A target the `http` crate cannot hold (one with `"`, or past its 64 KiB) is the
    /// client's fault and refused, as hyper refuses it (400): taking it as `/` would run
    /// another route than the one asked for.
    pub fn into_http(mut self) -> Result<http::Request<Bytes>, Error> {
        let uri =
            http::Uri::from_maybe_shared(self.parts().target.whole.shared(&self.parts().head))
                .map_err(|_| Error::Malformed("request target the http crate cannot hold"))?;
        let version = match self.version() {
            crate::Version::Http10 => http::Version::HTTP_10,
            crate::Version::Http11 => http::Version::HTTP_11,
        };
        let method = http::Method::try_from(&self.parts().method)
            .map_err(|_| Error::Malformed("method the http crate cannot hold"))?;
        let headers = self.header_map();
        let mut req = http::Request::new(std::mem::take(&mut self.parts_mut().body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        Ok(req)
    }
}

impl Response {
    /// The status as `http`'s type, for a code from 100 to 999.
    pub fn status_code(&self) -> Option<http::StatusCode> {
        http::StatusCode::from_u16(self.status()).ok()
    }

    /// Add every field of `map` (checked as [`Response::header`] checks them).
    pub fn headers_from(mut self, map: &http::HeaderMap) -> Self {
        for (name, value) in map {
            self = self.header(
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            );
        }
        self
    }
}

/// Append the status line and fields of an `http` response whose body is framed as
/// `framing` (see [`Response::encode_head`]); its fields are written where they are, not
/// copied into a [`Response`] first. `Connection: close` among them closes the connection
/// after the body, as from a native handler.
pub fn encode_http_head(
    parts: &http::response::Parts,
    ctx: EncodeContext,
    date: &DateCache,
    framing: Framing,
    out: &mut BytesMut,
) -> Head {
    let close = parts
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        });
    let fields = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    crate::response::write_head(
        parts.status.as_u16(),
        close,
        fields,
        ctx,
        date,
        framing,
        out,
    )
}

/// An `http::Response` whose body is bytes (`String`, `Vec<u8>`, `&'static str`, `Bytes`…):
/// its status, fields and body. Framing fields in it are the encoder's to write, as for any
/// response.
impl<B: Into<Bytes>> From<http::Response<B>> for Response {
    fn from(response: http::Response<B>) -> Self {
        let (parts, body) = response.into_parts();
        Response::new(parts.status.as_u16())
            .headers_from(&parts.headers)
            .body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_an_http_request_with_its_body_uncopied() {
        let req = Request::builder()
            .method("POST")
            .target("/items/7?x=1")
            .header("X-A", "1")
            .header("x-a", "2")
            .body("hello")
            .build()
            .unwrap();
        let body_ptr = req.body().as_ptr();
        let http = req.into_http().unwrap();
        assert_eq!(http.method(), http::Method::POST);
        assert_eq!(http.uri().path(), "/items/7");
        assert_eq!(http.uri().query(), Some("x=1"));
        assert_eq!(http.version(), http::Version::HTTP_11);
        let values: Vec<_> = http.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(http.body().as_ptr(), body_ptr);
        assert_eq!(&http.body()[..], b"hello");
    }

    #[test]
    fn a_target_the_http_crate_cannot_hold_is_refused_not_taken_as_root() {
        let req = Request::builder().target("/items?q=\"x\"").build().unwrap();
        assert!(matches!(req.into_http(), Err(Error::Malformed(_))));
    }

    #[test]
    fn an_http_response_head_is_written_like_a_native_one() {
        let date = DateCache::new(std::time::UNIX_EPOCH);
        let ctx = EncodeContext {
            head: false,
            keep_alive: true,
            version: crate::Version::Http11,
            connect: false,
        };
        let http = http::Response::builder()
            .status(201)
            .header("content-type", "text/plain")
            .header("content-length", "99")
            .body(())
            .unwrap();
        let (parts, ()) = http.into_parts();
        let mut theirs = BytesMut::new();
        let head = encode_http_head(&parts, ctx, &date, Framing::Length(2), &mut theirs);
        assert!(head.keep_alive);
        let mut ours = BytesMut::new();
        Response::new(201)
            .header("content-type", "text/plain")
            .encode_head(ctx, &date, Framing::Length(2), &mut ours);
        assert_eq!(theirs, ours);
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts
            .headers
            .insert("connection", "Keep-Alive, Close".parse().unwrap());
        let head = encode_http_head(&parts, ctx, &date, Framing::Chunked, &mut BytesMut::new());
        assert!(!head.keep_alive, "the application closes the connection");
    }

    #[test]
    fn status_codes_and_methods_go_both_ways() {
        assert_eq!(StatusCode::from(http::StatusCode::CREATED), StatusCode(201));
        assert_eq!(
            http::StatusCode::try_from(StatusCode(418)).unwrap(),
            http::StatusCode::IM_A_TEAPOT
        );
        assert!(http::StatusCode::try_from(StatusCode(1000)).is_err());
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "PURGE",
        ] {
            let theirs = http::Method::from_bytes(m.as_bytes()).unwrap();
            let ours = Method::from(&theirs);
            assert_eq!(ours.as_str(), m);
            assert!(ours == theirs);
            assert_eq!(http::Method::try_from(&ours).unwrap(), theirs);
        }
    }

    #[test]
    fn a_requests_fields_become_a_header_map_in_order() {
        let req = Request::builder()
            .method("POST")
            .target("/x")
            .header("Accept", "a")
            .header("accept", "b")
            .header("X-Obs", "caf\u{e9}")
            .build()
            .unwrap();
        let map = req.header_map();
        let accepts: Vec<_> = map.get_all("accept").iter().collect();
        assert_eq!(accepts, ["a", "b"]);
        assert_eq!(map["x-obs"].as_bytes(), "caf\u{e9}".as_bytes());
        assert!(req.method() == &http::Method::POST);
    }

    #[test]
    fn a_recycled_map_holds_only_the_next_requests_fields() {
        let mut old = http::HeaderMap::new();
        old.insert("x-old", http::HeaderValue::from_static("1"));
        old.append("accept", http::HeaderValue::from_static("stale"));
        recycle_header_map(old);
        let req = Request::builder()
            .target("/x")
            .header("Accept", "fresh")
            .build()
            .unwrap();
        let map = req.header_map();
        assert_eq!(map.len(), req.headers().count());
        assert_eq!(map.get_all("accept").iter().collect::<Vec<_>>(), ["fresh"]);
        assert!(map.get("x-old").is_none());
        // The spare went to that request; the next one gets a map of its own.
        let again = req.header_map();
        assert_eq!(again, map);
        // A map that grew large is freed, not handed to the next request.
        let mut big = http::HeaderMap::new();
        for i in 0..200 {
            let name = http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap();
            big.insert(name, http::HeaderValue::from_static("v"));
        }
        recycle_header_map(big);
        assert!(req.header_map().capacity() <= KEEP_MAP_CAPACITY);
    }

    #[test]
    fn an_http_response_keeps_status_fields_and_body() {
        let theirs = http::Response::builder()
            .status(http::StatusCode::CREATED)
            .header("Location", "/items/7")
            .header("X-Two", "1")
            .header("X-Two", "2")
            .body("made\n")
            .unwrap();
        let ours = Response::from(theirs);
        assert_eq!(ours.status(), 201);
        assert_eq!(ours.status_code(), Some(http::StatusCode::CREATED));
        assert_eq!(ours.header_value("location"), Some(&b"/items/7"[..]));
        assert_eq!(
            ours.headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"x-two"))
                .count(),
            2
        );
        assert_eq!(ours.body_bytes(), b"made\n");
    }
}
