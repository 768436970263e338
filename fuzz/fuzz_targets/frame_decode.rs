//! Wire decoding on arbitrary bytes: frame headers, frame streams, postcard
//! messages of the types protocols exchange, and packed u64 vectors must give
//! a value or a typed error, never a panic, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppml_sharing::{Fp, RingTensor, ShamirShare};

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
enum Message {
    Tensor(RingTensor),
    Shares(Vec<ShamirShare>),
    Field(Fp),
    Text(String),
    Floats(Vec<f32>),
}

fuzz_target!(|data: &[u8]| {
    const MAX: usize = 1 << 20;
    let _ = ppml_net::decode_frame_header(data, MAX);
    let mut stream = data;
    // Every read consumes bytes or errors, so this loop ends.
    while !stream.is_empty() {
        match ppml_net::read_frame(&mut stream, MAX, "fuzz") {
            Ok(frame) => {
                let _ = ppml_net::decode::<Message>(&frame);
            }
            Err(_) => break,
        }
    }
    let _ = ppml_net::decode::<Message>(data);
    let _ = ppml_net::decode::<RingTensor>(data);
    let _ = ppml_net::decode_u64s(data);
    if let Ok(t) = postcard::from_bytes::<RingTensor>(data) {
        assert_eq!(t.len(), t.shape().iter().product::<usize>());
    }
});
