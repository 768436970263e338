//! Times the PrivateCompare message kernel on each backend (a quick
//! profiling target; the criterion bench `compare_kernels_cpu` is the
//! measurement).
use ppml_simd::Backend;
use ppml_smpc::compare::{PcMasks, pc_message_on, pc_prime};
use ppml_smpc::party::{Prg, fill_mod_on};
use std::time::Instant;

fn main() {
    let (n, m) = (8000usize, 21usize);
    let w = m + 1;
    let mut p = Prg::from_seed([3; 32]);
    let mut c = vec![0u64; n];
    p.fill_u64(&mut c);
    let masks = PcMasks::draw(&mut p, n, m);
    let mut rho = vec![0u8; n * m];
    fill_mod_on(Backend::Portable, &mut p, &mut rho, pc_prime(m) as u16, 0);
    let mut d = vec![0u8; n * w];
    let mut scratch = Vec::new();
    for backend in Backend::available() {
        let t = Instant::now();
        let reps = 300;
        for _ in 0..reps {
            pc_message_on(backend, 0, m, &c, &rho, &masks, &mut d, &mut scratch);
        }
        let ns = t.elapsed().as_nanos() as f64 / (reps * n * w) as f64;
        println!("{backend}: {ns:.3} ns per position");
    }
}
