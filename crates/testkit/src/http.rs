//! One HTTP/1.1 test client over raw TCP. Strict on purpose: a status line that is not
//! `HTTP/1.1`, a field line without a colon or a body without its length fails the test.

use socket2::SockRef;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A loopback address nobody listens on now (bound to port 0, read, closed): for a server
/// whose address must be known before it starts, or a client that must find no server.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A connection with a 20 s read timeout and Nagle off.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A fresh connection as a writer and a buffered reader over the same socket.
pub fn open(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(addr);
    let w = s.try_clone().unwrap();
    (w, BufReader::new(s))
}

/// Close with SO_LINGER 0: the kernel sends RST instead of FIN.
pub fn reset(s: TcpStream) {
    SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
}

/// One response as the client saw it.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD, 1xx, 204, 304).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first field named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read one response. `head`: the request was HEAD (no body follows). A connection closed
/// before the status line is `UnexpectedEof`; a reset is `ConnectionReset`.
pub fn read_response<R: BufRead>(r: &mut R, head: bool) -> io::Result<HttpResponse> {
    let mut line = String::new();
    let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed");
    if r.read_line(&mut line)? == 0 {
        return Err(eof());
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    assert_eq!(version, "HTTP/1.1", "status line {line:?}");
    let status: u16 = parts.next().unwrap_or("0").parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(eof());
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("header line");
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    if !head && chunked && status >= 200 && status != 204 && status != 304 {
        resp.body = read_chunked(r)?;
    } else if !head && status >= 200 && status != 204 && status != 304 {
        let len: usize = resp
            .header("content-length")
            .expect("content-length")
            .parse()
            .unwrap();
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

/// A chunked body (RFC 9112 §7.1), its trailer section skipped.
fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut mid-body"));
        }
        let size = line.trim_end().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {line:?}"))
        })?;
        if size == 0 {
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line == "\r\n" {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk not ended by CRLF",
            ));
        }
    }
}

/// The next response, or `None` if the server closed (EOF or reset) before one began. Any
/// other failure (a timeout, a response cut short) fails the test.
pub fn next_response<R: BufRead>(r: &mut R) -> Option<HttpResponse> {
    match read_response(r, false) {
        Ok(resp) => Some(resp),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            None
        }
        Err(e) => panic!("reading a response: {e}"),
    }
}

/// Send one request (`Connection: close`, with `headers` and a `Content-Length` body) on a
/// fresh connection and read its response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if !body.is_empty() || !matches!(method, "GET" | "HEAD") {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut BufReader::new(s), method == "HEAD").expect("a response")
}

/// Send `raw` on a fresh connection and read one response.
pub fn roundtrip(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r, false).expect("response")
}

/// After a response that closes, the server must close: the next read sees EOF (or a reset).
pub fn assert_closed<R: Read>(r: &mut R) {
    let mut buf = [0u8; 64];
    match r.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected close, got {n} more bytes: {:?}", &buf[..n]),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected close, got {e}"),
    }
}
