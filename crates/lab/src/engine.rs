//! What a minimal engine does with the bytes of a connection, for the floor's loops: either
//! count request heads and answer each with canned bytes (the physical floor), or serve
//! HttpArena's engine endpoints correctly with nothing else (the arena engine: the class of
//! the field's zero-dependency thread-per-core epoll engines, such as rust-epoll).
//!
//! The arena engine parses each request with httparse, reads its body by Content-Length or
//! chunked framing, and answers `/baseline11` (the sum of `a`, `b` and the body),
//! `/pipeline` (`ok`) and 404. It has none of a server's duties — no limits, timeouts,
//! hardening or observation — so what backlog spends above it is the price of those.

use bytes::BytesMut;

/// Which endpoints a lab server serves: set by the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoints {
    /// `GET /` (Hello, World!) and, on backlog and axum, `/work`.
    #[default]
    Demo,
    /// HttpArena's `/baseline11` (GET, POST) and `/pipeline`.
    Arena,
}

impl Endpoints {
    /// As `--app` and the anchors' `--endpoints` take it.
    pub fn name(self) -> &'static str {
        match self {
            Endpoints::Demo => "demo",
            Endpoints::Arena => "arena",
        }
    }

    /// Every value, for flag parsers.
    pub const ALL: [Endpoints; 2] = [Endpoints::Demo, Endpoints::Arena];
}

impl std::str::FromStr for Endpoints {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Endpoints::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("{s:?}: demo or arena"))
    }
}

/// What backlog's demo answers `GET /` with, byte for byte (its Date is live).
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nServer: backlog\r\nDate: Wed, 02 Dec 2026 00:00:00 GMT\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\nHello, World!\n";

/// A connection's protocol state in the floor's loops.
#[derive(Debug)]
pub enum Protocol {
    /// Count heads, answer each with the canned bytes backlog answers `GET /` with.
    Canned(Heads),
    /// Serve the arena endpoints.
    Arena(Arena),
}

impl Protocol {
    /// A new connection's state.
    pub fn new(endpoints: Endpoints) -> Protocol {
        match endpoints {
            Endpoints::Demo => Protocol::Canned(Heads::default()),
            Endpoints::Arena => Protocol::Arena(Arena::default()),
        }
    }

    /// Take `data`, append the answers it completes to `out`. `true`: close after them (a
    /// request asked to, or it cannot be parsed).
    pub fn feed(&mut self, data: &[u8], out: &mut BytesMut) -> bool {
        match self {
            Protocol::Canned(heads) => {
                let (n, close) = heads.feed(data);
                out.reserve(n * ANSWER.len());
                for _ in 0..n {
                    out.extend_from_slice(ANSWER);
                }
                close
            }
            Protocol::Arena(arena) => arena.feed(data, out),
        }
    }
}

/// Request heads seen so far on one connection: what is left of an unfinished head.
#[derive(Debug, Default)]
pub struct Heads {
    carry: Vec<u8>,
}

impl Heads {
    /// Count the heads `data` completes; whether one asked to close.
    fn feed(&mut self, data: &[u8]) -> (usize, bool) {
        if self.carry.is_empty() {
            let (n, close, used) = scan(data);
            self.carry.extend_from_slice(&data[used..]);
            (n, close)
        } else {
            self.carry.extend_from_slice(data);
            let (n, close, used) = scan(&self.carry);
            self.carry.drain(..used);
            (n, close)
        }
    }
}

/// Complete heads in `buf`, whether any says `Connection: close`, and the bytes they span.
fn scan(buf: &[u8]) -> (usize, bool, usize) {
    let (mut heads, mut close, mut start, mut i) = (0, false, 0, 0);
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        if nl >= start + 3 && &buf[nl - 3..=nl] == b"\r\n\r\n" {
            heads += 1;
            close |= asks_close(&buf[start..=nl]);
            start = nl + 1;
        }
        i = nl + 1;
    }
    (heads, close, start)
}

fn asks_close(head: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"connection: close";
    head.windows(NEEDLE.len())
        .any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

/// One connection of the arena engine: the bytes not yet a whole request.
#[derive(Debug, Default)]
pub struct Arena {
    carry: Vec<u8>,
}

/// A request read whole: its answer, how many bytes it spanned, whether it asked to close.
struct Parsed {
    status: u16,
    body: String,
    used: usize,
    close: bool,
}

impl Arena {
    fn feed(&mut self, data: &[u8], out: &mut BytesMut) -> bool {
        self.carry.extend_from_slice(data);
        let mut at = 0;
        let mut close = false;
        while !close {
            match parse(&self.carry[at..]) {
                Ok(Some(p)) => {
                    answer(out, p.status, &p.body);
                    at += p.used;
                    close = p.close;
                }
                Ok(None) => break,
                Err(()) => {
                    answer(out, 400, "bad request");
                    close = true;
                }
            }
        }
        self.carry.drain(..at);
        close
    }
}

fn answer(out: &mut BytesMut, status: u16, body: &str) {
    use std::fmt::Write;
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nServer: engine\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// One request from the front of `buf`: `None` until it is whole.
fn parse(buf: &[u8]) -> Result<Option<Parsed>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf).map_err(|_| ())? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(())?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        }
    }
    let (body, used) = if chunked {
        match dechunk(&buf[head..])? {
            Some((body, n)) => (body, head + n),
            None => return Ok(None),
        }
    } else if buf.len() >= head + length {
        (buf[head..head + length].to_vec(), head + length)
    } else {
        return Ok(None);
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, text) = match path {
        "/pipeline" => (200, "ok".to_string()),
        "/baseline11" => match sum(query, &body, req.method == Some("POST")) {
            Some(n) => (200, n.to_string()),
            None => (400, "bad request".to_string()),
        },
        _ => (404, "not found".to_string()),
    };
    Ok(Some(Parsed {
        status,
        body: text,
        used,
        close,
    }))
}

/// `a + b` (+ the body's integer for a POST).
fn sum(query: &str, body: &[u8], post: bool) -> Option<i64> {
    let total = query_sum(query)?;
    if post {
        return Some(total.wrapping_add(body_int(body)?));
    }
    Some(total)
}

/// HttpArena's `a + b` from a query string: a missing one is 0, one that is not an integer
/// is `None` (a 400). The arithmetic every lab server shares, whatever its framework.
pub(crate) fn query_sum(query: &str) -> Option<i64> {
    let mut total = 0i64;
    for pair in query.split('&') {
        if let Some(("a" | "b", v)) = pair.split_once('=') {
            total = total.wrapping_add(v.parse::<i64>().ok()?);
        }
    }
    Some(total)
}

/// The integer a POST body holds (surrounding whitespace allowed), `None` otherwise.
pub(crate) fn body_int(body: &[u8]) -> Option<i64> {
    std::str::from_utf8(body).ok()?.trim().parse().ok()
}

/// A chunked body from the front of `buf` (trailers skipped): the data and the bytes it
/// spans, `None` until it is whole.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf[at..]).map_err(|_| ())? {
            httparse::Status::Complete(c) => c,
            httparse::Status::Partial => return Ok(None),
        };
        at += start;
        if size == 0 {
            // Trailer lines until the empty one.
            loop {
                let Some(nl) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += nl + 2;
                if nl == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| ())?;
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_counted_whatever_the_split() {
        let two = b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nConnection: Close\r\n\r\n";
        for cut in 0..two.len() {
            let mut h = Heads::default();
            let (a, ca) = h.feed(&two[..cut]);
            let (b, cb) = h.feed(&two[cut..]);
            assert_eq!(a + b, 2, "cut at {cut}");
            assert!(ca || cb, "cut at {cut}: the close is seen");
            assert!(h.carry.is_empty());
        }
        let mut h = Heads::default();
        assert_eq!(h.feed(b"GET / HTTP/1.1\r\n\r"), (0, false));
        assert_eq!(h.feed(b"\n"), (1, false));
    }

    /// HttpArena's three request shapes back to back, split at every byte: the same three
    /// answers in order.
    #[test]
    fn the_arena_mix_is_answered_whatever_the_split() {
        let mix = b"GET /baseline11?a=13&b=42 HTTP/1.1\r\nHost: t\r\n\r\n\
POST /baseline11?a=13&b=42 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n20\
POST /baseline11?a=1&b=2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n20\r\n0\r\n\r\n\
GET /pipeline HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nConnection: close\r\n\r\n";
        for cut in 0..mix.len() {
            let mut p = Protocol::new(Endpoints::Arena);
            let mut out = BytesMut::new();
            let first = p.feed(&mix[..cut], &mut out);
            let second = p.feed(&mix[cut..], &mut out);
            assert!(!first && second, "cut at {cut}: closes after the last");
            let text = String::from_utf8(out.to_vec()).unwrap();
            let bodies: Vec<&str> = text
                .split("HTTP/1.1 ")
                .skip(1)
                .map(|r| r.rsplit("\r\n\r\n").next().unwrap())
                .collect();
            assert_eq!(
                bodies,
                ["55", "75", "23", "ok", "not found"],
                "cut at {cut}"
            );
            assert!(text.contains("404 Not Found"));
        }
    }
}
