//! Times the ring matmul kernel on 1000x784 by 784x500 (median of 7).
use ppml_random as prg;
use ppml_smpc::kernel::{PackedRhs, matmul};
use std::time::Instant;

fn main() {
    let (m, k, n) = (1000, 784, 500);
    let mut rng = prg::PublicSeed::new(1).rng("example/kernel");
    let a = prg::random_u64s(&mut rng, m * k);
    let b = prg::random_u64s(&mut rng, k * n);
    let p = PackedRhs::pack(&b, k, n).unwrap();
    let mut t = Vec::new();
    for _ in 0..7 {
        let s = Instant::now();
        let c = matmul(&a, m, &p).unwrap();
        t.push(s.elapsed().as_secs_f64());
        std::hint::black_box(c);
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut t2 = Vec::new();
    for _ in 0..5 {
        let s = Instant::now();
        let c = ppml_sharing::RingTensor::new(vec![m, k], a.clone())
            .unwrap()
            .matmul(&ppml_sharing::RingTensor::new(vec![k, n], b.clone()).unwrap())
            .unwrap();
        t2.push(s.elapsed().as_secs_f64());
        std::hint::black_box(c);
    }
    t2.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut t3 = Vec::new();
    for _ in 0..5 {
        let s = Instant::now();
        let v = prg::random_u64s(&mut rng, m * k);
        t3.push(s.elapsed().as_secs_f64());
        std::hint::black_box(v);
    }
    t3.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "smpc kernel median {:.4} s ({:.2} GMAC/s), min {:.4}; sharing RingTensor::matmul median {:.4}; prg 784k u64 {:.4} s; avx512 {}",
        t[3],
        (m * k * n) as f64 / t[3] / 1e9,
        t[0],
        t2[2],
        t3[2],
        ppml_smpc::kernel::uses_avx512()
    );
}
