//! Share arithmetic on arbitrary inputs: fixed-point encoding, additive
//! sharing, local linear operations and reconstruction must round-trip, and
//! Shamir sharing must reconstruct from any threshold-sized subset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppml_fixedpoint::FixedPoint;
use ppml_sharing::{Fp, RingTensor, additive, shamir};

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let parties = 1 + (data[0] as usize % 8);
    let frac_bits = data[1] as u32 % 40;
    let seed = u64::from_le_bytes(data[2..10].try_into().expect("8 bytes"));
    let body = &data[10..];
    // Public test randomness from the fuzz input: deterministic by design.
    let mut rng = ppml_random::insecure_deterministic_rng(seed, "fuzz/share_roundtrip");

    // Ring elements straight from the bytes.
    let xs: Vec<u64> = body
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks_exact(8)")))
        .collect();
    let x = RingTensor::from_vec(xs.clone());
    let shares = additive::share_tensor(&x, parties, &mut rng);
    assert_eq!(additive::reconstruct_tensor(&shares).expect("same shapes"), x);
    for &v in &xs {
        let s = additive::share(v, parties, &mut rng);
        assert_eq!(additive::reconstruct(&s), v);
        let doubled: Vec<u64> = s.iter().map(|&a| additive::mul_public(a, 2)).collect();
        assert_eq!(additive::reconstruct(&doubled), v.wrapping_mul(2));
        let shifted: Vec<u64> = s.iter().enumerate().map(|(i, &a)| additive::add_public(a, i, 7)).collect();
        assert_eq!(additive::reconstruct(&shifted), v.wrapping_add(7));
    }

    // The same bytes as floats: encoding either errors cleanly or round-trips
    // within half an ulp.
    let fp = FixedPoint::new(frac_bits).expect("frac_bits < 40");
    for c in body.chunks_exact(8) {
        let f = f64::from_le_bytes(c.try_into().expect("chunks_exact(8)"));
        if let Ok(e) = fp.encode(f) {
            let back = fp.decode(e);
            assert!((back - f).abs() <= fp.ulp() / 2.0 + f.abs() * 1e-15, "{f} -> {back}");
        }
    }

    // Shamir: any first-t subset of the shares reconstructs.
    if let Some(c) = body.get(..32) {
        let mut b: [u8; 32] = c.try_into().expect("32 bytes");
        b[31] &= 0x7f;
        if let Ok(secret) = Fp::from_le_bytes(&b) {
            let t = 1 + (data[0] as usize % parties);
            let sh = shamir::share(secret, t, parties, &mut rng).expect("1 <= t <= n");
            assert_eq!(shamir::reconstruct(&sh[parties - t..], t).expect("t shares"), secret);
        }
    }
});
