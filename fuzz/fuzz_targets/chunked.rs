//! The chunked body decoder on arbitrary bytes: no panic, and the same body and leftover
//! bytes whether fed whole or a byte at a time.

#![no_main]

use bytes::BytesMut;
use h1::chunked::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], step: usize) -> Result<Option<(Vec<u8>, Vec<u8>)>, h1::Error> {
    let mut dec = ChunkedDecoder::new(1 << 16, 8192);
    let mut buf = BytesMut::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        if dec.decode(&mut buf)? {
            return Ok(Some((dec.take_body().to_vec(), buf.to_vec())));
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let whole = run(data, data.len());
    let bytewise = run(data, 1);
    match (&whole, &bytewise) {
        (Ok(Some((b1, _))), Ok(Some((b2, _)))) => assert_eq!(b1, b2),
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} vs bytewise {bytewise:?}"),
    }
});
