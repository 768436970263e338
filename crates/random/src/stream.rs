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
        self.apply_words(out);
    }

    /// [`SeedStream::fill_u64`] for a buffer the caller knows is all zero
    /// (e.g. just allocated with `vec![0; n]`): the same words, without
    /// clearing it again. Other contents are XORed with the keystream (still
    /// uniform words, but not the ones `fill_u64` would give).
    pub fn fill_zeroed_u64(&mut self, out: &mut [u64]) {
        self.apply_words(out);
    }

    /// Fills `out` with little-endian 32-bit keystream words (the input of
    /// rejection samplers).
    pub fn fill_u32(&mut self, out: &mut [u32]) {
        out.fill(0);
        self.apply_words(out);
    }

    /// Fills `out` with little-endian 16-bit keystream words.
    pub fn fill_u16(&mut self, out: &mut [u16]) {
        out.fill(0);
        self.apply_words(out);
    }

    /// XORs the keystream into `out` viewed as bytes, then reads each word
    /// little-endian (the stream is the same on every platform).
    fn apply_words<W: word::Word>(&mut self, out: &mut [W]) {
        // SAFETY: `W` is u16, u32 or u64 (the trait is sealed): no invalid bit
        // patterns, and u8 has alignment 1, so a byte view of exactly
        // `size_of_val(out)` bytes of the same memory is valid, and the borrow
        // of `out` is held for the view's whole lifetime.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                out.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(out),
            )
        };
        self.cipher.apply_keystream(bytes);
        if cfg!(target_endian = "big") {
            for v in out.iter_mut() {
                *v = v.le_to_native();
            }
        }
    }
}

/// The word types [`SeedStream`] fills (sealed: plain unsigned integers only,
/// which the byte view in `apply_words` relies on).
mod word {
    pub trait Word: Copy {
        /// The value of a word read from little-endian bytes.
        fn le_to_native(self) -> Self;
    }
    impl Word for u16 {
        fn le_to_native(self) -> Self {
            u16::from_le(self)
        }
    }
    impl Word for u32 {
        fn le_to_native(self) -> Self {
            u32::from_le(self)
        }
    }
    impl Word for u64 {
        fn le_to_native(self) -> Self {
            u64::from_le(self)
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
        let mut w32 = vec![7u32; 18];
        SeedStream::from_seed([1; 32]).fill_u32(&mut w32);
        let from_bytes: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(w32, from_bytes);
        let mut w16 = vec![7u16; 36];
        SeedStream::from_seed([1; 32]).fill_u16(&mut w16);
        let from_bytes: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(w16, from_bytes);
        let mut c = SeedStream::from_seed([2; 32]);
        let mut w = vec![0u64; 9];
        c.fill_u64(&mut w);
        assert_ne!(u, w);
    }
}
