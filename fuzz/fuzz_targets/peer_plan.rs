//! What a computing party receives from the model owner and the data owner
//! before anything is allocated: a model plan (every size, the ranges, every
//! layer's geometry) and the batch sizes. Arbitrary bytes must decode to a
//! value or a typed error, and a value must pass or fail validation, never
//! panic, hang or allocate what a peer announced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppml_smpc::inference::ModelPlan;
use ppml_smpc::party::ProtocolConfig;

fuzz_target!(|data: &[u8]| {
    let cfg = ProtocolConfig::default();
    if let Ok(plan) = ppml_net::decode::<ModelPlan>(data) {
        if let Ok(per_image) = plan.validate_received(&cfg) {
            assert!(per_image >= 1);
            assert!(plan.output_size >= 1);
            // Every layer's output size is computable once the plan passed.
            let mut size = plan.input_size;
            for l in &plan.layers {
                size = l.out_size(size);
            }
            assert_eq!(size, plan.output_size);
            let _ = ppml_smpc::limits::check_batches(&[1, 1000], per_image);
        }
    }
    if let Ok(batches) = ppml_net::decode::<Vec<usize>>(data) {
        let _ = ppml_smpc::limits::check_batches(&batches, 784);
    }
});
