//! Throughput of the Z_67 packing (7 bits per value) on 34 million values,
//! about what one party packs for 1,000 mlp500 images.
fn main() {
    let n = 34_000_000;
    let v: Vec<u8> = (0..n).map(|i| (i * 31 % 67) as u8).collect();
    // Minimum of 7 runs (the machine is shared).
    let (mut a, mut b) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..7 {
        let t = std::time::Instant::now();
        let p = ppml_smpc::compare::pack_z67(&v);
        a = a.min(t.elapsed());
        let t = std::time::Instant::now();
        let u = ppml_smpc::compare::unpack_z67(&p, n, "bench").unwrap();
        b = b.min(t.elapsed());
        assert_eq!(u, v);
    }
    println!("pack {a:?} unpack {b:?} for {n} values (minimum of 7)");
}
