//! Private inference of a model on MNIST test images, all roles in-process.
//!
//! `cargo run --release -p ppml-smpc --example private_infer -- [arch|model.ppml] [count] [batch]`

use ppml_nn::{Model, Normalization, mnist};
use ppml_smpc::{InferConfig, run_in_process};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PPML_NO_TUNE").is_none() {
        ppml_smpc::tune_allocator();
    }
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("mlp500");
    let count: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let batch: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let model = if Path::new(which).exists() {
        Model::load(Path::new(which))?
    } else {
        Model::from_arch(which, 1)?
    };
    let data = mnist::load(&mnist::default_data_dir(), Normalization::Standard)?;
    let test = data.test.slice(0..count.min(data.test.len()));
    let cfg = InferConfig {
        batch,
        // Secrets (shares, masks, dealer seeds) come from the OS (the default).
        ..Default::default()
    };
    let r = run_in_process(&model, &test.images, &test.labels, &cfg)?;
    println!(
        "{}: {} images in {:.3} s = {:.0} images/s; accuracy {:.4} (plaintext {:.4}), agreement {:.4}; {:.1} KB/image, {} rounds",
        r.arch,
        r.images,
        r.seconds,
        r.images_per_second,
        r.accuracy,
        r.plaintext_accuracy,
        r.plaintext_agreement,
        r.bytes_per_image / 1000.0,
        r.rounds
    );
    for p in &r.parties {
        println!(
            "  {:12} sent {:>12} B  received {:>12} B  rounds {}",
            p.party, p.bytes_sent, p.bytes_received, p.rounds
        );
    }
    Ok(())
}
