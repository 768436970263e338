//! Bit packing of ring elements at exactly `k` bits each (little-endian bit order), so a
//! masked vector costs `ceil(d * k / 8)` bytes on the wire, not `8 d`.

use crate::SecAggError;
use crate::quant::ring_mask;

/// Bytes needed for `len` values of `bits` bits.
pub fn packed_len(len: usize, bits: u32) -> usize {
    (len * bits as usize).div_ceil(8)
}

/// Packs the low `bits` bits (1..=64) of every value.
pub fn pack(values: &[u64], bits: u32) -> Vec<u8> {
    let mask = ring_mask(bits);
    let mut out = Vec::with_capacity(packed_len(values.len(), bits) + 8);
    let mut buf: u128 = 0;
    let mut nbits: u32 = 0;
    for &v in values {
        buf |= ((v & mask) as u128) << nbits;
        nbits += bits;
        if nbits >= 64 {
            out.extend_from_slice(&(buf as u64).to_le_bytes());
            buf >>= 64;
            nbits -= 64;
        }
    }
    while nbits > 0 {
        out.push(buf as u8);
        buf >>= 8;
        nbits = nbits.saturating_sub(8);
    }
    out
}

/// Unpacks `acc.len()` values of `bits` bits and hands each to `f(index, value)`.
/// Rejects a wrong length and non-zero padding bits.
fn unpack_with(
    bytes: &[u8],
    bits: u32,
    len: usize,
    mut f: impl FnMut(usize, u64),
) -> Result<(), SecAggError> {
    if !(1..=64).contains(&bits) {
        return Err(SecAggError::InvalidConfig(format!(
            "bad packing width {bits}"
        )));
    }
    let expected = packed_len(len, bits);
    if bytes.len() != expected {
        return Err(SecAggError::Malformed(format!(
            "packed vector of {} bytes, expected {expected} ({len} values of {bits} bits)",
            bytes.len()
        )));
    }
    // Padding (fewer than 8 bits, all in the last byte) must be zero. Checked before any
    // value is handed out, so `unpack_add` never half-updates its accumulator.
    let pad = (expected * 8 - len * bits as usize) as u32;
    if pad > 0 && bytes[expected - 1] >> (8 - pad) != 0 {
        return Err(SecAggError::Malformed(
            "non-zero padding bits in packed vector".into(),
        ));
    }
    let mask = ring_mask(bits);
    let mut buf: u128 = 0;
    let mut nbits: u32 = 0;
    let mut pos = 0;
    for i in 0..len {
        while nbits < bits {
            if pos + 8 <= bytes.len() {
                let mut w = [0u8; 8];
                w.copy_from_slice(&bytes[pos..pos + 8]);
                buf |= (u64::from_le_bytes(w) as u128) << nbits;
                pos += 8;
                nbits += 64;
            } else {
                buf |= (bytes[pos] as u128) << nbits;
                pos += 1;
                nbits += 8;
            }
        }
        f(i, (buf as u64) & mask);
        buf >>= bits;
        nbits -= bits;
    }
    Ok(())
}

/// Unpacks `len` values of `bits` bits.
pub fn unpack(bytes: &[u8], bits: u32, len: usize) -> Result<Vec<u64>, SecAggError> {
    let mut out = vec![0u64; len];
    unpack_with(bytes, bits, len, |i, v| out[i] = v)?;
    Ok(out)
}

/// Unpacks and adds (wrapping) into `acc` in one pass; `acc.len()` values are expected.
/// On error `acc` is left untouched.
pub fn unpack_add(bytes: &[u8], bits: u32, acc: &mut [u64]) -> Result<(), SecAggError> {
    let len = acc.len();
    if bytes.len() != packed_len(len, bits) {
        return Err(SecAggError::Malformed(format!(
            "packed vector of {} bytes, expected {}",
            bytes.len(),
            packed_len(len, bits)
        )));
    }
    unpack_with(bytes, bits, len, |i, v| acc[i] = acc[i].wrapping_add(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(bits in 1u32..=64, vals in proptest::collection::vec(any::<u64>(), 0..300)) {
            let p = pack(&vals, bits);
            prop_assert_eq!(p.len(), packed_len(vals.len(), bits));
            let u = unpack(&p, bits, vals.len()).unwrap();
            let m = ring_mask(bits);
            prop_assert_eq!(u, vals.iter().map(|v| v & m).collect::<Vec<_>>());
        }
    }

    #[test]
    fn rejects_bad_length_and_padding() {
        let p = pack(&[1, 2, 3], 26);
        assert!(unpack(&p[..p.len() - 1], 26, 3).is_err());
        let mut q = p.clone();
        *q.last_mut().unwrap() |= 0x80; // 78 bits used of 80: top bits are padding
        assert!(unpack(&q, 26, 3).is_err());
        let mut acc = vec![0u64; 4];
        assert!(unpack_add(&p, 26, &mut acc).is_err());
    }
}
