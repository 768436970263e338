//! Times the ring matmul kernel on 1000x784 by 784x500 on every backend this
//! CPU supports (median of 7). Pin it for one-core figures:
//! `RAYON_NUM_THREADS=1 taskset -c 0 cargo run --release -p ppml-smpc --example kernel_speed`
use ppml_random as prg;
use ppml_simd::Backend;
use ppml_smpc::kernel::{PackedRhs, matmul_with};
use std::time::Instant;

/// Nanoseconds all threads of this process have run on a CPU (Linux
/// schedstat), so that time slices lost to other processes on a shared
/// machine are not counted.
fn thread_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let s = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn main() {
    let (m, k, n) = (1000, 784, 500);
    let mut rng = prg::PublicSeed::new(1).rng("example/kernel");
    let a = prg::random_u64s(&mut rng, m * k);
    let b = prg::random_u64s(&mut rng, k * n);
    let p = PackedRhs::pack(&b, k, n).expect("shape matches");
    let mut base = None;
    for backend in Backend::available() {
        let mut t = Vec::new();
        let mut cpu = Vec::new();
        let mut out = Vec::new();
        for _ in 0..7 {
            let c0 = thread_cpu_ns();
            let s = Instant::now();
            out = matmul_with(backend, &a, m, &p).expect("shape matches");
            t.push(s.elapsed().as_secs_f64());
            if let (Some(c0), Some(c1)) = (c0, thread_cpu_ns()) {
                cpu.push((c1 - c0) as f64 / 1e9);
            }
        }
        t.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let med = t[3];
        let base_t = base.get_or_insert_with(|| (med, out.clone()));
        assert_eq!(out, base_t.1, "backend {backend} disagrees with portable");
        println!(
            "{backend:>8}: median {:.4} s ({:.2} G mul-add/s), min {:.4} s, {:.2}x portable; on-CPU median {:.4} s ({:.2} G/s per CPU-second)",
            med,
            (m * k * n) as f64 / med / 1e9,
            t[0],
            base_t.0 / med,
            cpu.get(cpu.len() / 2).copied().unwrap_or(f64::NAN),
            (m * k * n) as f64 / cpu.get(cpu.len() / 2).copied().unwrap_or(f64::NAN) / 1e9,
        );
    }
}
