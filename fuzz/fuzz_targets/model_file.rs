//! .ppml model files (versions 1 and 2) on arbitrary bytes: a validated
//! model or a typed error; sizes a file announces are checked before use.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut framed = ppml_nn::model::FILE_MAGIC.to_vec();
    framed.extend_from_slice(data);
    for bytes in [data, &framed[..]] {
        if let Ok(f) = ppml_nn::Model::decode_file(bytes) {
            let m = f.model;
            assert!(m.validate().is_ok());
            let _ = m.sizes();
            let _ = m.num_params();
            if m.sizes().iter().all(|&s| s <= 1 << 20) && m.num_params() <= 1 << 20 {
                let y = m.forward(&vec![0.5; m.input_size()], 1);
                assert_eq!(y.len(), m.output_size());
            }
        }
    }
});
