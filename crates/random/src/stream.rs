//! Seed expansion: the stream from which the holders of a shared seed draw
//! identical correlated randomness.

use aes::cipher::{KeyIvInit, StreamCipher};

type Aes128Ctr = ctr::Ctr128LE<aes::Aes128>;

/// A seed-expansion stream: AES-128-CTR keyed by a 32-byte seed (16 bytes of
/// key, 16 of IV). Two parties holding the same seed draw identical values;
/// whoever lacks the seed sees a pseudorandom stream. The seed itself must
/// come from a secret generator ([`crate::os_rng`]).
pub struct SeedStream {
    cipher: Aes128Ctr,
}

impl std::fmt::Debug for SeedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedStream { .. }")
    }
}

impl SeedStream {
    /// The stream of a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> SeedStream {
        let (key, iv) = seed.split_at(16);
        SeedStream {
            cipher: Aes128Ctr::new(key.into(), iv.into()),
        }
    }

    /// Fills `out` with the next keystream bytes.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        out.fill(0);
        self.cipher.apply_keystream(out);
    }

    /// Fills `out` with uniform ring elements (little-endian keystream words).
    pub fn fill_u64(&mut self, out: &mut [u64]) {
        out.fill(0);
        self.fill_zeroed_u64(out);
    }

    /// [`SeedStream::fill_u64`] for a buffer the caller knows is all zero
    /// (e.g. just allocated with `vec![0; n]`): the same words, without
    /// clearing it again. Other contents are XORed with the keystream (still
    /// uniform words, but not the ones `fill_u64` would give).
    pub fn fill_zeroed_u64(&mut self, out: &mut [u64]) {
        // SAFETY: u64 has no invalid bit patterns and u8 has alignment 1, so a
        // byte view of exactly 8 * len bytes of the same memory is valid, and
        // the borrow of `out` is held for the view's whole lifetime.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), out.len() * 8) };
        self.cipher.apply_keystream(bytes);
        if cfg!(target_endian = "big") {
            for v in out.iter_mut() {
                *v = u64::from_le(*v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_byte_view_agrees() {
        let (mut a, mut b) = (
            SeedStream::from_seed([1; 32]),
            SeedStream::from_seed([1; 32]),
        );
        let mut u = vec![0u64; 9];
        a.fill_u64(&mut u);
        let mut bytes = vec![0u8; 72];
        b.fill_bytes(&mut bytes);
        let v: Vec<u64> = bytes
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(u, v);
        assert_ne!(u, vec![0u64; 9]);
        let mut z = vec![0u64; 9];
        SeedStream::from_seed([1; 32]).fill_zeroed_u64(&mut z);
        assert_eq!(z, u);
        let mut c = SeedStream::from_seed([2; 32]);
        let mut w = vec![0u64; 9];
        c.fill_u64(&mut w);
        assert_ne!(u, w);
    }
}
