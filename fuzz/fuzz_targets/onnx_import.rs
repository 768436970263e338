//! ONNX import on arbitrary bytes: a model or a typed error, never a panic,
//! a hang or an allocation beyond the input's size and the model size cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ppml_nn::onnx::import(data) {
        // What import accepts is a valid model that can run one sample.
        assert!(m.validate().is_ok());
        if m.sizes().iter().all(|&s| s <= 1 << 20) && m.num_params() <= 1 << 20 {
            let y = m.forward(&vec![0.5; m.input_size()], 1);
            assert_eq!(y.len(), m.output_size());
        }
    }
});
