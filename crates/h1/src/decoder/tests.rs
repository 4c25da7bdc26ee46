use super::*;
use proptest::prelude::*;

fn decoder() -> RequestDecoder {
    RequestDecoder::new(Limits::default())
}

/// Decode every request in `input` in one pass; the error, if any, ends the list.
fn decode_stream(input: &[u8]) -> (Vec<Request>, Option<Error>) {
    let mut dec = decoder();
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Decoded::Request(r)) => out.push(r),
            Ok(Decoded::Continue) => continue,
            Ok(Decoded::Partial) => return (out, None),
            Err(err) => return (out, Some(err)),
        }
    }
}

fn status_of(input: &[u8]) -> u16 {
    match decode_stream(input).1 {
        Some(err) => err.status(),
        None => 0,
    }
}

/// A control byte (but tab) or DEL in a field value, a byte that is not a token character
/// in a field name, and one that is not visible ASCII in the target, are refused wherever
/// they sit: httparse scans values 32 bytes
/// at a time with AVX2 and 8 with SWAR before its byte loop, and the decoder relies on
/// every one of those paths.
#[test]
fn control_bytes_in_values_and_non_token_bytes_in_names_are_refused_anywhere() {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for b in 0..=255u8 {
        for at in [0usize, 3, 9, 31, 32, 40, 70] {
            let mut value = vec![b'v'; 72];
            value[at] = b;
            let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ".to_vec();
            req.extend_from_slice(&value);
            req.extend_from_slice(b"\r\n\r\n");
            let refused = (b < 0x20 && b != b'\t') || b == 0x7f;
            // A bare LF ends the field early; what follows is no field: refused too.
            assert_eq!(
                status_of(&req) == 400,
                refused,
                "value byte {b:#04x} at {at}"
            );
        }
        for at in [1usize, 9, 33] {
            let mut target = vec![b'a'; 40];
            target[0] = b'/';
            target[at] = b;
            assert_eq!(
                status_of_target(&target) == 400,
                !(0x21..0x7f).contains(&b),
                "target byte {b:#04x} at {at}"
            );
        }
        if b == b':' {
            // An empty name: the line starts with its colon.
            assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"), 400);
            continue;
        }
        for at in [0usize, 5, 20] {
            let mut name = vec![b'n'; 24];
            name[at] = b;
            let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            req.extend_from_slice(&name);
            req.extend_from_slice(b": v\r\n\r\n");
            // CR or LF at the name's start is the head's end or a bare line; both leave
            // the rest as junk, refused as well.
            assert_eq!(
                status_of(&req) == 400,
                !tchar(b),
                "name byte {b:#04x} at {at}"
            );
        }
    }
}

#[test]
fn parses_a_get_with_fields() {
    let (reqs, err) = decode_stream(b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-A:  v \r\n\r\n");
    assert!(err.is_none());
    let r = &reqs[0];
    assert_eq!(r.method(), &Method::Get);
    assert_eq!(r.target(), "/a/b?x=1&y=2");
    assert_eq!(r.path(), "/a/b");
    assert_eq!(r.query_param("y"), Some("2"));
    assert_eq!(r.header("x-a"), Some(&b"v"[..]));
    assert_eq!(r.version(), Version::Http11);
    assert!(r.keep_alive());
    assert!(r.body().is_empty());
}

#[test]
fn pipelined_requests_with_bodies_are_split_exactly() {
    let stream = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\nHost: h\r\n\r\n\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /last HTTP/1.1\r\nHost: h\r\n\r\n";
    let (reqs, err) = decode_stream(stream);
    assert!(err.is_none());
    let seen: Vec<_> = reqs
        .iter()
        .map(|r| (r.path().to_string(), r.body().clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/p".into(), Bytes::from_static(b"hello")),
            ("/n".into(), Bytes::new()),
            ("/c".into(), Bytes::from_static(b"abc")),
            ("/last".into(), Bytes::new()),
        ]
    );
}

#[test]
fn keep_alive_rules_for_1_0_and_close() {
    let (r, _) = decode_stream(b"GET / HTTP/1.0\r\n\r\n");
    assert!(!r[0].keep_alive());
    let (r, _) = decode_stream(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(r[0].keep_alive());
    let (r, _) = decode_stream(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert!(!r[0].keep_alive());
}

#[test]
fn absolute_form_and_special_forms_are_accepted() {
    let (r, e) = decode_stream(b"GET http://example.com/x?q HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert!(e.is_none());
    assert_eq!(r[0].path(), "/x");
    assert_eq!(status_of(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    assert_eq!(
        status_of(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"),
        0
    );
}

/// The status of `GET TARGET HTTP/1.1` with a valid Host (0: accepted).
fn status_of_target(target: &[u8]) -> u16 {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    status_of(&req)
}

#[test]
fn an_absolute_form_authority_gets_the_checks_host_gets() {
    let good: &[&[u8]] = &[
        b"http://a/",
        b"HTTP://a:80/x",
        b"https://[::1]:8080/x?q",
        b"http://a?q",
        b"http://a",
        b"http://xn--bcher-kva.example:8080/",
    ];
    let bad: &[&[u8]] = &[
        b"http://a:abc/",
        b"http://u@a/",
        b"http://u:p@a/",
        b"http://a,b/",
        b"http:///",
        b"http://:80/",
        b"http://[::1/",
        b"http://a b/",
        b"ftp://a/",
        b"h2c://a/",
    ];
    let cases = good
        .iter()
        .map(|t| (t, 0))
        .chain(bad.iter().map(|t| (t, 400)));
    for (target, status) in cases {
        let shown = String::from_utf8_lossy(target);
        assert_eq!(status_of_target(target), status, "{shown}");
    }
}

#[test]
fn refusals_carry_the_rfc_status() {
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", 400),
        (b"GET /\r\nHost: h\r\n\r\n", 400),
        (b"GET nope HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n", 417),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,,chunked,,\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n", 400),
        (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"GET / HTTP/2\r\nHost: h\r\n\r\n", 400),
        (b"GET / HTTP/1.1.1\r\nHost: h\r\n\r\n", 400),
    ];
    for (input, status) in cases {
        assert_eq!(
            status_of(input),
            *status,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// Byte by byte, a one-byte host (and the same byte inside an IP literal) is valid exactly
/// when RFC 3986 lets it stand for itself there: unreserved or a sub-delim but the comma
/// (and `:` in a literal).
#[test]
fn every_byte_of_a_host_is_judged_by_rfc_3986() {
    for b in 0..=255u8 {
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&b);
        assert_eq!(valid_host(&[b]), plain, "host {:?}", b as char);
        let literal = plain || b == b':';
        assert_eq!(
            valid_host(&[b'[', b, b']']),
            literal,
            "literal {:?}",
            b as char
        );
    }
}

#[test]
fn valid_host_values_are_accepted() {
    for host in [
        "h",
        "example.com",
        "example.com:8080",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:443",
        "a-b_c~d.e",
        "x%41y",
        "h:",
        "",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(status_of(req.as_bytes()), 0, "{host:?}");
    }
}

#[test]
fn limits_map_to_414_431_413() {
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000));
    assert_eq!(status_of(long_uri.as_bytes()), 414);
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(status_of(big_field.as_bytes()), 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..101 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status_of(many.as_bytes()), 431);
    assert_eq!(
        status_of(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n"),
        413
    );
    // A partial head that can no longer fit is refused before it completes.
    let endless = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(9000));
    assert_eq!(status_of(endless.as_bytes()), 431);
}

#[test]
fn expect_continue_is_asked_once_then_the_body_completes() {
    let mut dec = decoder();
    let mut buf = BytesMut::from(
        &b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"[..],
    );
    assert!(matches!(dec.decode(&mut buf), Ok(Decoded::Continue)));
    assert!(matches!(dec.decode(&mut buf), Ok(Decoded::Partial)));
    buf.extend_from_slice(b"ok");
    match dec.decode(&mut buf) {
        Ok(Decoded::Request(r)) => assert_eq!(&r.body()[..], b"ok"),
        other => panic!("{other:?}"),
    }
    // Body already there: no 100 Continue.
    let (reqs, _) = decode_stream(
        b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    );
    assert_eq!(reqs.len(), 1);
}

/// Method, target, fields, body, keep-alive.
type Summary = (String, String, Vec<(String, Vec<u8>)>, Bytes, bool);

fn summary(reqs: &[Request]) -> Vec<Summary> {
    reqs.iter()
        .map(|r| {
            (
                r.method().as_str().to_string(),
                r.target().to_string(),
                r.headers()
                    .map(|(n, v)| (n.to_string(), v.to_vec()))
                    .collect(),
                r.body().clone(),
                r.keep_alive(),
            )
        })
        .collect()
}

/// Feed `input` in pieces cut at `cuts`.
fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> (Vec<Request>, Option<Error>) {
    let mut dec = decoder();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut last = 0;
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    points.sort_unstable();
    points.push(input.len());
    for p in points {
        buf.extend_from_slice(&input[last..p]);
        last = p;
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Request(r)) => out.push(r),
                Ok(Decoded::Continue) => continue,
                Ok(Decoded::Partial) => break,
                Err(err) => return (out, Some(err)),
            }
        }
    }
    (out, None)
}

const STREAM: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n\
POST /x?y HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody\
PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nab\r\n1\r\nc\r\n0\r\nT: 1\r\n\r\n\
GET /close HTTP/1.0\r\n\r\n";

#[test]
fn a_stream_split_at_every_boundary_yields_the_same_requests() {
    let (whole, err) = decode_stream(STREAM);
    assert!(err.is_none());
    assert_eq!(whole.len(), 4);
    let expected = summary(&whole);
    for cut in 0..=STREAM.len() {
        let (reqs, err) = decode_in_pieces(STREAM, &[cut]);
        assert!(err.is_none(), "cut {cut}");
        assert_eq!(summary(&reqs), expected, "cut {cut}");
    }
}

proptest! {
    #[test]
    fn any_split_parses_the_same(cuts in proptest::collection::vec(0..STREAM.len(), 0..12)) {
        let (reqs, err) = decode_in_pieces(STREAM, &cuts);
        prop_assert!(err.is_none());
        prop_assert_eq!(summary(&reqs), summary(&decode_stream(STREAM).0));
    }

    #[test]
    fn no_input_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_stream(&input);
    }

    #[test]
    fn accepted_requests_reserialise_to_the_same_meaning(
        path in "/[a-z0-9/]{0,20}",
        fields in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,20}"), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        chunked in any::<bool>(),
    ) {
        let mut text = format!("POST {path} HTTP/1.1\r\nHost: h\r\n").into_bytes();
        for (n, v) in &fields {
            let lower = n.to_ascii_lowercase();
            if ["host", "content-length", "transfer-encoding", "expect", "connection"].contains(&lower.as_str()) {
                continue;
            }
            text.extend_from_slice(format!("X-{n}: {v}\r\n").as_bytes());
        }
        if chunked {
            text.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for part in body.chunks(7) {
                text.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                text.extend_from_slice(part);
                text.extend_from_slice(b"\r\n");
            }
            text.extend_from_slice(b"0\r\n\r\n");
        } else {
            text.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            text.extend_from_slice(&body);
        }
        let (reqs, err) = decode_stream(&text);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        // Re-serialise with Content-Length framing and parse again: same meaning.
        let mut again = format!("{} {} HTTP/1.1\r\n", r.method().as_str(), r.target()).into_bytes();
        for (n, v) in r.headers() {
            if n.eq_ignore_ascii_case("transfer-encoding") || n.eq_ignore_ascii_case("content-length") {
                continue;
            }
            again.extend_from_slice(n.as_bytes());
            again.extend_from_slice(b": ");
            again.extend_from_slice(v);
            again.extend_from_slice(b"\r\n");
        }
        again.extend_from_slice(format!("Content-Length: {}\r\n\r\n", r.body().len()).as_bytes());
        again.extend_from_slice(r.body());
        let (reqs2, err2) = decode_stream(&again);
        prop_assert!(err2.is_none());
        prop_assert_eq!(reqs2[0].body(), r.body());
        prop_assert_eq!(reqs2[0].target(), r.target());
        prop_assert_eq!(&reqs2[0].body()[..], &body[..]);
    }
}

#[test]
fn expect_continue_is_not_sent_for_a_request_refused_first() {
    let mut dec = decoder();
    let mut buf = BytesMut::from(
        &b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n"[..],
    );
    assert_eq!(dec.decode(&mut buf).unwrap_err().status(), 413);
    let mut dec = decoder();
    let mut buf = BytesMut::from(
        &b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"[..],
    );
    assert_eq!(dec.decode(&mut buf).unwrap_err().status(), 400, "no Host");
}

/// Found by fuzzing: a request line made long by its method was accepted whole but refused
/// when it arrived in pieces. Both must now give the same answer.
#[test]
fn a_long_request_line_is_refused_however_it_arrives() {
    let line = format!(
        "{} / HTTP/1.1\r\nHost: h\r\n\r\n",
        "M".repeat(8 * 1024 + 100)
    );
    assert_eq!(status_of(line.as_bytes()), 414);
    let cuts: Vec<usize> = (0..line.len()).step_by(3).collect();
    let status = decode_in_pieces(line.as_bytes(), &cuts)
        .1
        .map(|e| e.status());
    assert_eq!(status, Some(414));
    let ok = format!("{} / HTTP/1.1\r\nHost: h\r\n\r\n", "M".repeat(60));
    assert_eq!(status_of(ok.as_bytes()), 0);
}

/// Refused requests of every kind, each with something valid before it so that a refusal can
/// also land mid-stream.
fn refused_corpus() -> Vec<Vec<u8>> {
    let long = |n: usize, c: &str| c.repeat(n);
    let mut cases: Vec<Vec<u8>> = [
        "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        "GET / HTTP/3.0\r\nHost: h\r\n\r\n",
        "GET / HTTP/0.9\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: h\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/2\r\nHost: h\r\n\r\n",
        "GET / HTTX/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    cases.push(format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", long(9000, "a")).into_bytes());
    cases.push(format!("{} / HTTP/1.1\r\nHost: h\r\n\r\n", long(8300, "M")).into_bytes());
    cases.push(
        format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            long(9000, "v")
        )
        .into_bytes(),
    );
    cases.push(format!("GET /{}\x01 HTTP/1.1\r\n\r\n", long(8250, "a")).into_bytes());
    cases.push(long(9000, "\r\n").into_bytes());
    cases.push(
        format!(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: {}\r\n\r\n",
            long(9000, "t")
        )
        .into_bytes(),
    );
    cases
        .into_iter()
        .map(|case| [&b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"[..], &case].concat())
        .collect()
}

fn status_in_pieces(input: &[u8], cuts: &[usize]) -> Option<u16> {
    decode_in_pieces(input, cuts).1.map(Error::status)
}

/// A refusal's status depends on the bytes, never on where a read ended: every refused
/// request, cut at every byte, earns the status it earns whole.
#[test]
fn a_refused_request_gets_the_same_status_at_every_split() {
    for case in refused_corpus() {
        let whole = status_of(&case);
        assert_ne!(
            whole,
            0,
            "{:?}",
            String::from_utf8_lossy(&case[..80.min(case.len())])
        );
        let step = if case.len() > 2000 { 7 } else { 1 };
        for cut in (0..=case.len()).step_by(step) {
            assert_eq!(
                status_in_pieces(&case, &[cut]),
                Some(whole),
                "cut {cut} of {:?}",
                String::from_utf8_lossy(&case[..80.min(case.len())])
            );
        }
        // Byte by byte, the way a slow client sends.
        let every: Vec<usize> = (0..case.len()).collect();
        assert_eq!(status_in_pieces(&case, &every), Some(whole));
    }
}

proptest! {
    #[test]
    fn refusals_do_not_depend_on_the_split(
        which in 0usize..24,
        cuts in proptest::collection::vec(0usize..20_000, 0..16),
    ) {
        let corpus = refused_corpus();
        let case = &corpus[which % corpus.len()];
        prop_assert_eq!(status_in_pieces(case, &cuts), Some(status_of(case)));
    }
}

#[test]
fn a_per_request_body_limit_replaces_the_global_one() {
    let limit = |req: &Request| (req.path() == "/small").then_some(4);
    let decode = |input: &[u8]| {
        let mut dec = RequestDecoder::new(Limits {
            max_body_bytes: 8,
            ..Limits::default()
        });
        let mut buf = BytesMut::from(input);
        dec.decode_with(&mut buf, limit).map(|d| match d {
            Decoded::Request(r) => r.body().len(),
            _ => usize::MAX,
        })
    };
    let sized = |path: &str, n: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n{}",
            "x".repeat(n)
        )
    };
    let chunked = |path: &str, n: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{}\r\n0\r\n\r\n",
            "x".repeat(n)
        )
    };
    assert_eq!(decode(sized("/small", 4).as_bytes()), Ok(4));
    assert_eq!(
        decode(sized("/small", 5).as_bytes()),
        Err(Error::BodyTooLarge)
    );
    assert_eq!(
        decode(chunked("/small", 5).as_bytes()),
        Err(Error::BodyTooLarge)
    );
    assert_eq!(decode(sized("/other", 8).as_bytes()), Ok(8));
    assert_eq!(
        decode(sized("/other", 9).as_bytes()),
        Err(Error::BodyTooLarge)
    );
    // A route may also allow more than the server-wide limit.
    let mut dec = RequestDecoder::new(Limits {
        max_body_bytes: 8,
        ..Limits::default()
    });
    let mut buf = BytesMut::from(chunked("/big", 100).as_bytes());
    assert!(matches!(
        dec.decode_with(&mut buf, |_| Some(1000)),
        Ok(Decoded::Request(r)) if r.body().len() == 100
    ));
}

/// Feed `input` in pieces cut at `cuts`, streaming bodies over `over` bytes: what each
/// request looks like (method, target, body as gathered from its pieces).
fn stream_in_pieces(input: &[u8], cuts: &[usize], over: u64) -> Vec<(String, Vec<u8>, bool)> {
    let mut dec = decoder();
    let mut buf = BytesMut::new();
    let mut out: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().copied().chain([input.len()]).collect();
    cuts.sort_unstable();
    let mut at = 0;
    for cut in cuts {
        buf.extend_from_slice(&input[at..cut.max(at)]);
        at = cut.max(at);
        loop {
            match dec
                .decode_streaming(&mut buf, |_| None, Some(over))
                .unwrap()
            {
                Streamed::Decoded(Decoded::Request(r)) => {
                    out.push((r.target().into(), r.body().to_vec(), false))
                }
                Streamed::Head { req, .. } => out.push((req.target().into(), Vec::new(), true)),
                Streamed::Data { bytes, .. } => out.last_mut().unwrap().1.extend_from_slice(&bytes),
                Streamed::Decoded(Decoded::Continue) => continue,
                Streamed::Decoded(Decoded::Partial) => break,
            }
        }
    }
    out
}

const STREAMED: &[u8] = b"POST /small HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n01234567890123456789\
POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n\
GET /after HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn a_streamed_body_arrives_whole_in_pieces_at_every_split() {
    let want = vec![
        ("/small".to_string(), b"abc".to_vec(), false),
        ("/big".to_string(), b"01234567890123456789".to_vec(), true),
        ("/chunked".to_string(), b"abcde".to_vec(), true),
        ("/after".to_string(), Vec::new(), false),
    ];
    assert_eq!(stream_in_pieces(STREAMED, &[], 10), want);
    for cut in 0..=STREAMED.len() {
        assert_eq!(stream_in_pieces(STREAMED, &[cut], 10), want, "cut at {cut}");
    }
}

proptest! {
    #[test]
    fn streamed_bodies_do_not_depend_on_the_split(
        cuts in proptest::collection::vec(0..STREAMED.len(), 0..12)
    ) {
        prop_assert_eq!(stream_in_pieces(STREAMED, &cuts, 10), stream_in_pieces(STREAMED, &[], 10));
    }
}

#[test]
fn a_streamed_body_keeps_the_limits_and_asks_for_100_continue() {
    let mut dec = decoder();
    let mut buf = BytesMut::from(
        &b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n"[..],
    );
    let limit = |_: &Request| Some(1000);
    assert!(matches!(
        dec.decode_streaming(&mut buf, limit, Some(10)),
        Ok(Streamed::Decoded(Decoded::Continue))
    ));
    assert!(matches!(
        dec.decode_streaming(&mut buf, limit, Some(10)),
        Ok(Streamed::Head {
            length: Some(100),
            ..
        })
    ));
    assert!(dec.in_body());
    assert!(matches!(
        dec.decode_streaming(&mut buf, limit, Some(10)),
        Ok(Streamed::Decoded(Decoded::Partial))
    ));
    // Larger than the limit: refused before any of it is read, streamed or not.
    let mut dec = decoder();
    let mut buf =
        BytesMut::from(&b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n"[..]);
    assert_eq!(
        dec.decode_streaming(&mut buf, limit, Some(10))
            .unwrap_err()
            .status(),
        413
    );
    // Chunked past the limit: refused when the limit is crossed.
    let mut dec = decoder();
    let mut buf =
        BytesMut::from(&b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"[..]);
    let small = |_: &Request| Some(4);
    assert!(matches!(
        dec.decode_streaming(&mut buf, small, Some(1)),
        Ok(Streamed::Head { length: None, .. })
    ));
    buf.extend_from_slice(b"3\r\nabc\r\n3\r\ndef\r\n");
    let mut got = Vec::new();
    let err = loop {
        match dec.decode_streaming(&mut buf, small, Some(1)) {
            Ok(Streamed::Data { bytes, .. }) => got.extend_from_slice(&bytes),
            Ok(other) => panic!("{other:?}"),
            Err(err) => break err,
        }
    };
    assert_eq!(err.status(), 413);
    assert!(got.len() <= 4);
}
