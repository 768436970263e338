//! IDX images and labels (raw or gzipped) on arbitrary bytes: the decoded
//! sizes agree with the header, or a typed error; gzip output is capped.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(im) = ppml_nn::input::images_from_idx(data) {
        let px = match &im.pixels {
            ppml_nn::input::Pixels::U8(v) => v.len(),
            ppml_nn::input::Pixels::F32(v) => v.len(),
        };
        assert_eq!(px, im.count * im.sample_size());
    }
    let _ = ppml_nn::mnist::parse_idx_labels(data);
    if let Ok(raw) = ppml_nn::input::gunzip_if_gz(data.to_vec(), 1 << 20) {
        assert!(raw.len() <= (1 << 20).max(data.len()));
        let _ = ppml_nn::input::images_from_idx(&raw);
    }
});
