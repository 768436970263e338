//! .npy decoding of images and labels on arbitrary bytes: an array whose
//! element count matches its shape, or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = ppml_nn::npy::NpyArray::parse(data) {
        assert_eq!(a.data.len(), a.shape.iter().product::<usize>());
    }
    if let Ok(im) = ppml_nn::input::images_from_npy(data) {
        let _ = im.to_model_input(ppml_nn::Normalization::Standard, None);
    }
    let _ = ppml_nn::input::labels_from_npy(data);
});
