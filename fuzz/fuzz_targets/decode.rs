//! The request decoder on arbitrary bytes: it must never panic, and feeding the same
//! stream in pieces must give the same requests and the same refusal as feeding it whole —
//! and taking bodies as they arrive (`decode_streaming`) must give the same requests with
//! the same bodies, gathered from their pieces.

#![no_main]

use bytes::BytesMut;
use h1::{Decoded, Limits, RequestDecoder, Streamed};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_header_bytes: 2048,
    max_headers: 16,
    max_uri_bytes: 512,
    max_body_bytes: 4096,
};

/// A request's meaning: method, target, version, fields, body, keep-alive.
fn meaning(r: &h1::Request, body: &[u8]) -> String {
    let fields: Vec<_> = r.headers().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!(
        "{} {} {:?} {:?} {:?} {}",
        r.method().as_str(),
        r.target(),
        r.version(),
        fields,
        bytes::Bytes::copy_from_slice(body),
        r.keep_alive()
    )
}

/// `input` in the pieces `cuts` split it into (out-of-order or out-of-range cuts clamped),
/// as TCP would deliver them.
fn delivered<'a>(input: &'a [u8], cuts: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut last = 0;
    cuts.iter()
        .copied()
        .chain(std::iter::once(input.len()))
        .map(move |cut| {
            let cut = cut.clamp(last, input.len());
            let piece = &input[last..cut];
            last = cut;
            piece
        })
}

/// What a stream decodes to: each request's meaning, then the error that ended it, if any.
fn decode(input: &[u8], cuts: &[usize]) -> (Vec<String>, Option<h1::Error>) {
    let limits = LIMITS;
    let mut dec = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in delivered(input, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Request(r)) => {
                    assert!(r.body().len() as u64 <= limits.max_body_bytes);
                    assert!(!r.target().is_empty());
                    out.push(meaning(&r, r.body()));
                }
                Ok(Decoded::Continue) => continue,
                Ok(Decoded::Partial) => break,
                Err(err) => return (out, Some(err)),
            }
        }
    }
    (out, None)
}

/// The same, bodies over 16 bytes (or chunked) taken as they arrive and gathered: the
/// same meaning is expected.
fn decode_streamed(input: &[u8], cuts: &[usize]) -> (Vec<String>, Option<h1::Error>) {
    let mut dec = RequestDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut open: Option<(h1::Request, Vec<u8>)> = None;
    for piece in delivered(input, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode_streaming(&mut buf, |_| None, Some(16)) {
                Ok(Streamed::Decoded(Decoded::Request(r))) => out.push(meaning(&r, r.body())),
                Ok(Streamed::Head { req, .. }) => open = Some((req, Vec::new())),
                Ok(Streamed::Data { bytes, last }) => {
                    let (_, body) = open.as_mut().expect("a piece after its head");
                    body.extend_from_slice(&bytes);
                    if last {
                        let (req, body) = open.take().expect("a head");
                        out.push(meaning(&req, &body));
                    }
                }
                Ok(Streamed::Decoded(Decoded::Continue)) => continue,
                Ok(Streamed::Decoded(Decoded::Partial)) => break,
                Err(err) => return (out, Some(err)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks where to cut the rest.
    let (seed, input) = (data[0] as usize, &data[1..]);
    let whole = decode(input, &[]);
    let step = seed % 7 + 1;
    let cuts: Vec<usize> = (0..input.len()).step_by(step).collect();
    let pieces = decode(input, &cuts);
    // A stream cut before its error can only differ in the error's kind for limits that
    // are checked on partial input; requests before it must match exactly.
    assert_eq!(whole.0, pieces.0, "requests differ when fed in pieces");
    assert_eq!(
        whole.1.is_some(),
        pieces.1.is_some(),
        "{:?} vs {:?}",
        whole.1,
        pieces.1
    );
    let streamed = decode_streamed(input, &cuts);
    assert_eq!(
        whole.0, streamed.0,
        "requests differ when their bodies stream"
    );
    assert_eq!(
        whole.1.is_some(),
        streamed.1.is_some(),
        "{:?} vs {:?}",
        whole.1,
        streamed.1
    );
});
