//! Key agreement, key derivation, share encryption and mask expansion.
//!
//! * Key agreement: X25519 (x25519-dalek). Non-contributory (low-order) results are
//!   rejected.
//! * KDF: BLAKE3 in key-derivation mode, with a distinct context string per use and the
//!   round's session id as input, so keys of different rounds and uses never coincide.
//! * Share encryption: ChaCha20-Poly1305 under `KDF(DH(c_u, c_v))`, nonce `(from, to)`:
//!   the key is shared by the two directions of a pair and each direction is used once
//!   per round, so nonces never repeat under a key. The session id is the associated data.
//! * Masks: AES-128-CTR keyed with a 32-byte seed (16-byte key, 16-byte IV), one 4-byte
//!   word per value when `k <= 32` (8 bytes otherwise), reduced mod `2^k`.

use crate::SecAggError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ppml_sharing::{Fp, ShamirShare};
use rand::Rng;
use x25519_dalek::{PublicKey, StaticSecret};

const CTX_ENC: &str = "ppml-secagg v1 share-encryption key";
const CTX_PAIR: &str = "ppml-secagg v1 pairwise mask seed";
const CTX_SELF: &str = "ppml-secagg v1 self mask seed";

/// Bytes of a share plaintext: from (4) || to (4) || b-share (32) || s-share (32).
pub const SHARE_PLAINTEXT_BYTES: usize = 72;
/// Bytes of an encrypted share: plaintext plus the 16-byte Poly1305 tag.
pub const SHARE_CIPHERTEXT_BYTES: usize = SHARE_PLAINTEXT_BYTES + 16;

fn kdf(context: &str, session: &[u8; 16], material: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(session);
    h.update(material);
    *h.finalize().as_bytes()
}

/// X25519 with rejection of low-order public keys.
pub(crate) fn dh(sk: &StaticSecret, pk: &[u8; 32], peer: u32) -> Result<[u8; 32], SecAggError> {
    let shared = sk.diffie_hellman(&PublicKey::from(*pk));
    if !shared.was_contributory() {
        return Err(SecAggError::WeakKey { client: peer });
    }
    Ok(shared.to_bytes())
}

/// An X25519 secret whose scalar bytes are a field element (so it can be Shamir-shared
/// over F_p as is: every element is below 2^255 and x25519 clamps the rest).
pub(crate) fn secret_from_fp(x: &Fp) -> StaticSecret {
    StaticSecret::from(x.to_le_bytes())
}

pub(crate) fn public_of(sk: &StaticSecret) -> [u8; 32] {
    PublicKey::from(sk).to_bytes()
}

/// Seed of the pairwise mask between the owners of `sk` and `pk`.
pub(crate) fn pair_seed(
    sk: &StaticSecret,
    pk: &[u8; 32],
    peer: u32,
    session: &[u8; 16],
) -> Result<[u8; 32], SecAggError> {
    Ok(kdf(CTX_PAIR, session, &dh(sk, pk, peer)?))
}

/// Seed of the self mask `PRG(b)`.
pub(crate) fn self_seed(b: &Fp, session: &[u8; 16]) -> [u8; 32] {
    kdf(CTX_SELF, session, &b.to_le_bytes())
}

fn share_cipher(
    sk: &StaticSecret,
    pk: &[u8; 32],
    peer: u32,
    session: &[u8; 16],
) -> Result<ChaCha20Poly1305, SecAggError> {
    let key = kdf(CTX_ENC, session, &dh(sk, pk, peer)?);
    Ok(ChaCha20Poly1305::new(&Key::from(key)))
}

fn nonce(from: u32, to: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&from.to_le_bytes());
    n[4..8].copy_from_slice(&to.to_le_bytes());
    Nonce::from(n)
}

/// Encrypts `from`'s shares `(b, s)` for `to`.
pub(crate) fn encrypt_share(
    c_sk: &StaticSecret,
    to_pk: &[u8; 32],
    from: u32,
    to: u32,
    b: &Fp,
    s: &Fp,
    session: &[u8; 16],
) -> Result<Vec<u8>, SecAggError> {
    let mut pt = [0u8; SHARE_PLAINTEXT_BYTES];
    pt[..4].copy_from_slice(&from.to_le_bytes());
    pt[4..8].copy_from_slice(&to.to_le_bytes());
    pt[8..40].copy_from_slice(&b.to_le_bytes());
    pt[40..72].copy_from_slice(&s.to_le_bytes());
    let cipher = share_cipher(c_sk, to_pk, to, session)?;
    cipher
        .encrypt(
            &nonce(from, to),
            Payload {
                msg: &pt,
                aad: session,
            },
        )
        .map_err(|_| SecAggError::Malformed("share encryption failed".into()))
}

/// Decrypts the shares `from` sent to `to`, checking the tag, the length and the ids inside.
pub(crate) fn decrypt_share(
    c_sk: &StaticSecret,
    from_pk: &[u8; 32],
    from: u32,
    to: u32,
    ct: &[u8],
    session: &[u8; 16],
) -> Result<(Fp, Fp), SecAggError> {
    if ct.len() != SHARE_CIPHERTEXT_BYTES {
        return Err(SecAggError::Malformed(format!(
            "encrypted share from {from} has {} bytes, expected {SHARE_CIPHERTEXT_BYTES}",
            ct.len()
        )));
    }
    let cipher = share_cipher(c_sk, from_pk, from, session)?;
    let pt = cipher
        .decrypt(
            &nonce(from, to),
            Payload {
                msg: ct,
                aad: session,
            },
        )
        .map_err(|_| SecAggError::Decryption { from, to })?;
    let id = |r: std::ops::Range<usize>| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&pt[r]);
        u32::from_le_bytes(w)
    };
    if id(0..4) != from || id(4..8) != to {
        return Err(SecAggError::WrongId {
            expected: from,
            got: id(0..4),
        });
    }
    let fp = |r: std::ops::Range<usize>| -> Result<Fp, SecAggError> {
        let mut w = [0u8; 32];
        w.copy_from_slice(&pt[r]);
        Ok(Fp::from_le_bytes(&w)?)
    };
    Ok((fp(8..40)?, fp(40..72)?))
}

/// Shamir-shares `secret` with threshold `t` at the evaluation points `holder + 1`.
pub(crate) fn shamir_share_at<R: Rng + ?Sized>(
    secret: Fp,
    t: usize,
    holders: &[u32],
    rng: &mut R,
) -> Vec<Fp> {
    let mut coeffs = Vec::with_capacity(t);
    coeffs.push(secret);
    coeffs.extend((1..t).map(|_| Fp::random(rng)));
    holders
        .iter()
        .map(|&h| {
            let x = Fp::from_u64(h as u64 + 1);
            coeffs.iter().rev().fold(Fp::ZERO, |acc, &c| acc * x + c)
        })
        .collect()
}

/// Interpolates at zero with the given Lagrange coefficients (same order as `shares`).
pub(crate) fn interpolate(shares: &[ShamirShare], coeffs: &[Fp]) -> Fp {
    shares
        .iter()
        .zip(coeffs)
        .fold(Fp::ZERO, |acc, (s, &l)| acc + s.value * l)
}

const CHUNK: usize = 2048;

/// Adds (or subtracts) the mask `PRG(seed)` in `Z_2^k` to `acc` (values are reduced mod
/// `2^k` later, when packed or decoded). The PRG is the workspace's seed expansion,
/// [`ppml_random::SeedStream`] (AES-128-CTR).
pub fn add_mask(acc: &mut [u64], seed: &[u8; 32], ring_bits: u32, negate: bool) {
    let mut cipher = ppml_random::SeedStream::from_seed(*seed);
    if ring_bits <= 32 {
        let mut buf = [0u8; CHUNK * 4];
        for chunk in acc.chunks_mut(CHUNK) {
            let b = &mut buf[..chunk.len() * 4];
            cipher.fill_bytes(b);
            let words = b.chunks_exact(4).map(|w| {
                // chunks_exact(4) always yields 4-byte slices.
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64
            });
            if negate {
                for (a, w) in chunk.iter_mut().zip(words) {
                    *a = a.wrapping_sub(w);
                }
            } else {
                for (a, w) in chunk.iter_mut().zip(words) {
                    *a = a.wrapping_add(w);
                }
            }
        }
    } else {
        let mut buf = [0u8; CHUNK * 8];
        for chunk in acc.chunks_mut(CHUNK) {
            let b = &mut buf[..chunk.len() * 8];
            cipher.fill_bytes(b);
            let words = b.chunks_exact(8).map(|w| {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                u64::from_le_bytes(a)
            });
            for (a, w) in chunk.iter_mut().zip(words) {
                *a = if negate {
                    a.wrapping_sub(w)
                } else {
                    a.wrapping_add(w)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::ring_mask;
    use ppml_sharing::shamir;
    mod prg {
        pub fn seeded(seed: u64) -> ppml_random::SecretRng {
            ppml_random::insecure_deterministic_rng(seed, "test/secagg")
        }
    }

    #[test]
    fn masks_cancel_and_differ() {
        let k = 26;
        let mut a = vec![5u64; 5000];
        add_mask(&mut a, &[3; 32], k, false);
        assert!(a.iter().filter(|&&v| v & ring_mask(k) == 5).count() < 5);
        add_mask(&mut a, &[3; 32], k, true);
        assert!(a.iter().all(|&v| v == 5));
        let mut b = vec![0u64; 5000];
        add_mask(&mut b, &[4; 32], 40, false);
        add_mask(&mut b, &[4; 32], 40, true);
        assert!(b.iter().all(|&v| v == 0));
    }

    #[test]
    fn shares_reconstruct_at_chosen_points() {
        let mut rng = prg::seeded(1);
        let s = Fp::random(&mut rng);
        let holders = [3u32, 9, 17, 40, 41];
        let vals = shamir_share_at(s, 3, &holders, &mut rng);
        let shares: Vec<ShamirShare> = holders
            .iter()
            .zip(&vals)
            .map(|(&h, &v)| ShamirShare {
                index: h + 1,
                value: v,
            })
            .collect();
        assert_eq!(shamir::reconstruct(&shares[2..], 3).unwrap(), s);
        let idx: Vec<u32> = shares[..3].iter().map(|s| s.index).collect();
        let l = shamir::lagrange_at_zero(&idx).unwrap();
        assert_eq!(interpolate(&shares[..3], &l), s);
        assert_ne!(interpolate(&shares[..2], &l[..2]), s);
    }

    #[test]
    fn share_encryption_roundtrip_and_tamper() {
        let mut rng = prg::seeded(2);
        let (a, b) = (Fp::random(&mut rng), Fp::random(&mut rng));
        let sk1 = secret_from_fp(&Fp::random(&mut rng));
        let sk2 = secret_from_fp(&Fp::random(&mut rng));
        let (pk1, pk2) = (public_of(&sk1), public_of(&sk2));
        let sess = [7u8; 16];
        let ct = encrypt_share(&sk1, &pk2, 1, 2, &a, &b, &sess).unwrap();
        assert_eq!(decrypt_share(&sk2, &pk1, 1, 2, &ct, &sess).unwrap(), (a, b));
        let mut bad = ct.clone();
        bad[10] ^= 1;
        assert!(matches!(
            decrypt_share(&sk2, &pk1, 1, 2, &bad, &sess),
            Err(SecAggError::Decryption { .. })
        ));
        assert!(matches!(
            decrypt_share(&sk2, &pk1, 1, 2, &ct[1..], &sess),
            Err(SecAggError::Malformed(_))
        ));
        // Wrong claimed sender (nonce differs) or other session: rejected.
        assert!(decrypt_share(&sk2, &pk1, 3, 2, &ct, &sess).is_err());
        assert!(decrypt_share(&sk2, &pk1, 1, 2, &ct, &[8u8; 16]).is_err());
        // A low-order public key is refused.
        assert!(matches!(
            dh(&sk1, &[0u8; 32], 9),
            Err(SecAggError::WeakKey { client: 9 })
        ));
    }
}
