//! Hot paths of the HTTP core: decoding a typical request head, encoding a response.
//! Run with `cargo bench -p backlog-h1`; compare as ratios within one run.

// criterion_group!/criterion_main! generate undocumented items.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use h1::{DateCache, Decoded, EncodeContext, Limits, RequestDecoder, Response, Version};
use std::time::SystemTime;

const HEAD: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: server.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\
Accept: text/plain,text/html;q=0.9\r\nAccept-Language: en-US,en;q=0.5\r\nConnection: keep-alive\r\n\r\n";

fn decode(c: &mut Criterion) {
    let mut dec = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::with_capacity(16 * 1024);
    c.bench_function("decode a typical request head", |b| {
        b.iter(|| {
            buf.extend_from_slice(HEAD);
            match dec.decode(&mut buf) {
                Ok(Decoded::Request(r)) => black_box(r),
                other => panic!("{other:?}"),
            };
        })
    });
    let mut pipelined = Vec::new();
    for _ in 0..16 {
        pipelined.extend_from_slice(HEAD);
    }
    c.bench_function("decode 16 pipelined heads", |b| {
        b.iter(|| {
            buf.extend_from_slice(&pipelined);
            for _ in 0..16 {
                if let Ok(Decoded::Request(r)) = dec.decode(&mut buf) {
                    black_box(r);
                }
            }
        })
    });
}

fn encode(c: &mut Criterion) {
    let date = DateCache::new(SystemTime::now());
    let mut out = BytesMut::with_capacity(16 * 1024);
    let ctx = EncodeContext {
        head: false,
        keep_alive: true,
        version: Version::Http11,
        connect: false,
    };
    c.bench_function("encode the plaintext response", |b| {
        b.iter(|| {
            let resp = Response::text(200, "Hello, World!\n");
            black_box(resp.encode(ctx, &date, &mut out));
            out.clear();
        })
    });
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
