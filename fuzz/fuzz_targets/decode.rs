//! The request decoder on arbitrary bytes: it must never panic, and feeding the same
//! stream in pieces must give the same requests and the same refusal as feeding it whole.

#![no_main]

use bytes::BytesMut;
use h1::{Decoded, Limits, RequestDecoder};
use libfuzzer_sys::fuzz_target;

/// What a stream decodes to: each request's meaning, then the error that ended it, if any.
fn decode(input: &[u8], cuts: &[usize]) -> (Vec<String>, Option<h1::Error>) {
    let limits = Limits {
        max_header_bytes: 2048,
        max_headers: 16,
        max_uri_bytes: 512,
        max_body_bytes: 4096,
    };
    let mut dec = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(last, input.len());
        buf.extend_from_slice(&input[last..cut]);
        last = cut;
        loop {
            match dec.decode(&mut buf) {
                Ok(Decoded::Request(r)) => {
                    assert!(r.body().len() as u64 <= limits.max_body_bytes);
                    assert!(!r.target().is_empty());
                    let fields: Vec<_> = r.headers().map(|(n, v)| format!("{n}={v:?}")).collect();
                    out.push(format!(
                        "{} {} {:?} {:?} {:?} {}",
                        r.method().as_str(),
                        r.target(),
                        r.version(),
                        fields,
                        r.body(),
                        r.keep_alive()
                    ));
                }
                Ok(Decoded::Continue) => continue,
                Ok(Decoded::Partial) => break,
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
    assert_eq!(whole.1.is_some(), pieces.1.is_some(), "{:?} vs {:?}", whole.1, pieces.1);
});
