//! Every CPU backend this machine supports (ppml-simd: portable, AVX2,
//! AVX-512) gives bit-identical results to the portable build for the
//! protocol hot loops: PrivateCompare messages and evaluation over Z_67, the
//! bit-share correction, mask expansion, and the ring matmul.

use ppml_sharing::prg;
use ppml_simd::Backend;
use ppml_smpc::compare::{PcMasks, pc_eval_on, pc_message_on, pc_prime, rho_correction_on};
use ppml_smpc::kernel::{PackedRhs, matmul_with};
use ppml_smpc::party::{Prg, fill_mod_on};
use proptest::prelude::*;

fn seed32(seed: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s
}

/// The next words of a stream (to check two streams are at the same place).
fn next_words(p: &mut Prg) -> Vec<u64> {
    let mut v = vec![0u64; 4];
    p.fill_u64(&mut v);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn compare_kernels_match_portable(
        n in prop_oneof![1usize..70, 250usize..300],
        // Widths over Z_31, Z_61 and Z_67.
        m in prop_oneof![1usize..29, 29usize..59, 59usize..64],
        seed in any::<u64>(),
    ) {
        let w = m + 1;
        let mut rng = ppml_random::PublicSeed::new(seed).rng("test/backends");
        let c = prg::random_u64s(&mut rng, n);
        let r = prg::random_u64s(&mut rng, n);
        let mut prg_a = Prg::from_seed(seed32(seed));
        let masks = PcMasks::draw(&mut prg_a, n, m);
        // Bit shares in Z_p (any values below p are valid shares).
        let mut rho0 = vec![0u8; n * m];
        fill_mod_on(Backend::Portable, &mut prg_a, &mut rho0, pc_prime(m) as u16, 0);
        let mut want_rho1 = vec![0u8; n * m];
        rho_correction_on(Backend::Portable, m, &r, &rho0, &mut want_rho1);
        let mut want_d = [vec![0u8; n * w], vec![0u8; n * w]];
        for (j, d) in want_d.iter_mut().enumerate() {
            let rho = if j == 0 { &rho0 } else { &want_rho1 };
            pc_message_on(Backend::Portable, j, m, &c, rho, &masks, d, &mut Vec::new());
        }
        let want_eval = pc_eval_on(Backend::Portable, w, &want_d[0], &want_d[1]);
        // The messages really evaluate the comparison (a sanity check of the
        // inputs, so that equality below is not of two empty answers).
        let mask = (1u64 << m) - 1;
        for e in 0..n {
            let wbit = u8::from((c[e] & mask) < (r[e] & mask));
            prop_assert_eq!(want_eval[e], wbit ^ masks.beta[e]);
        }
        // Each element's positions are rotated by its own rot: the message
        // with every rot zero, rotated by hand, is the real message.
        let unrotated_masks = PcMasks {
            beta: masks.beta.clone(),
            s: masks.s.clone(),
            u: masks.u.clone(),
            rot: vec![0; n],
        };
        let mut plain = vec![0u8; n * w];
        pc_message_on(Backend::Portable, 0, m, &c, &rho0, &unrotated_masks, &mut plain, &mut Vec::new());
        for e in 0..n {
            for i in 0..w {
                let t = (i + masks.rot[e] as usize) % w;
                prop_assert_eq!(want_d[0][t * n + e], plain[i * n + e], "element {} position {}", e, i);
            }
        }
        prop_assert!(n < 250 || masks.rot.iter().any(|&r| r != 0));
        for backend in Backend::available() {
            let mut rho1 = vec![0u8; n * m];
            rho_correction_on(backend, m, &r, &rho0, &mut rho1);
            prop_assert_eq!(&rho1, &want_rho1, "rho_correction on {}", backend);
            for (j, want) in want_d.iter().enumerate() {
                let rho = if j == 0 { &rho0 } else { &rho1 };
                let mut d = vec![0u8; n * w];
                pc_message_on(backend, j, m, &c, rho, &masks, &mut d, &mut Vec::new());
                prop_assert_eq!(&d, want, "pc_message of party {} on {}", j, backend);
            }
            prop_assert_eq!(
                pc_eval_on(backend, w, &want_d[0], &want_d[1]),
                want_eval.clone(),
                "pc_eval on {}", backend
            );
        }
    }

    #[test]
    fn mask_expansion_matches_portable(
        len in 0usize..3000,
        modulus in 1u16..=255,
        add in 0u8..2,
        seed in any::<u64>(),
    ) {
        let mut want = vec![0u8; len];
        let mut p = Prg::from_seed(seed32(seed));
        fill_mod_on(Backend::Portable, &mut p, &mut want, modulus, add);
        let tail_want = next_words(&mut p);
        for backend in Backend::available() {
            let mut got = vec![0u8; len];
            let mut p = Prg::from_seed(seed32(seed));
            fill_mod_on(backend, &mut p, &mut got, modulus, add);
            prop_assert_eq!(&got, &want, "{}", backend);
            // and the stream is left at the same position
            prop_assert_eq!(next_words(&mut p), tail_want.clone(), "{}", backend);
        }
    }

    #[test]
    fn ring_matmul_matches_portable(
        m in 0usize..30,
        k in 1usize..200,
        n in 1usize..40,
        seed in any::<u64>(),
    ) {
        let mut rng = ppml_random::PublicSeed::new(seed).rng("test/backends");
        let a = prg::random_u64s(&mut rng, m * k);
        let b = prg::random_u64s(&mut rng, k * n);
        let p = PackedRhs::pack(&b, k, n).unwrap();
        let want = matmul_with(Backend::Portable, &a, m, &p).unwrap();
        for backend in Backend::available() {
            prop_assert_eq!(&matmul_with(backend, &a, m, &p).unwrap(), &want, "{}", backend);
        }
    }
}
