//! NumPy `.npy` files: a checked reader for the arrays ppml takes in (images
//! and labels) and a writer for the arrays it gives out (predictions, logits).
//!
//! The format is small (a magic string, a version, a Python-dict header, the
//! raw array), so it is read here directly rather than through a crate: every
//! size in the header is checked against the bytes actually present before
//! anything is allocated, so a truncated or hostile file is an error, never a
//! panic or an allocation abort.
//!
//! ```
//! use ppml_nn::npy::{NpyArray, NpyData};
//! let bytes = ppml_nn::npy::encode_i64(&[3, 1, 4], &[3]);
//! let a = NpyArray::parse(&bytes).unwrap();
//! assert_eq!(a.shape, vec![3]);
//! assert_eq!(a.data, NpyData::I64(vec![3, 1, 4]));
//! ```

use crate::NnError;
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Largest header accepted (numpy writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 16;
/// Largest number of dimensions accepted.
const MAX_DIMS: usize = 32;

/// The element values of an array, in the dtype of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    U8(Vec<u8>),
    I64(Vec<i64>),
    F32(Vec<f32>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::U8(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::F32(v) => v.len(),
        }
    }

    /// True if the array holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoded array: C-order `shape` and the elements. Integer dtypes other
/// than uint8 are widened to `I64` and `float64` is narrowed to `F32`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    U8,
    Int {
        size: usize,
        signed: bool,
        big: bool,
    },
    Float {
        size: usize,
        big: bool,
    },
}

fn bad(msg: impl Into<String>) -> NnError {
    NnError::Data(format!("npy: {}", msg.into()))
}

/// The value of `key` in the header dict, as raw text up to the next
/// top-level comma or the closing brace.
fn dict_value<'a>(h: &'a str, key: &str) -> Result<&'a str, NnError> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let at = h
        .find(&pat1)
        .map(|i| i + pat1.len())
        .or_else(|| h.find(&pat2).map(|i| i + pat2.len()))
        .ok_or_else(|| bad(format!("header has no `{key}`")))?;
    let rest = h[at..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| bad(format!("header: no `:` after `{key}`")))?
        .trim_start();
    if rest.starts_with('(') {
        let end = rest
            .find(')')
            .ok_or_else(|| bad("header: unclosed shape tuple"))?;
        Ok(&rest[..=end])
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Ok(rest[..end].trim())
    }
}

fn parse_descr(d: &str) -> Result<Kind, NnError> {
    let d = d.trim().trim_matches(|c| c == '\'' || c == '"');
    let (order, rest) = match d.as_bytes().first() {
        Some(b'<') | Some(b'|') | Some(b'=') => (false, &d[1..]),
        Some(b'>') => (true, &d[1..]),
        _ => (false, d),
    };
    let kind = match rest {
        "u1" | "b1" => Kind::U8,
        "i1" => Kind::Int {
            size: 1,
            signed: true,
            big: order,
        },
        "i2" | "i4" | "i8" | "u2" | "u4" | "u8" => Kind::Int {
            size: rest[1..].parse().map_err(|_| bad("dtype size"))?,
            signed: rest.starts_with('i'),
            big: order,
        },
        "f4" | "f8" => Kind::Float {
            size: rest[1..].parse().map_err(|_| bad("dtype size"))?,
            big: order,
        },
        other => {
            return Err(bad(format!(
                "dtype `{other}` is not supported (uint8, int8..int64, uint16..uint64, float32, float64)"
            )));
        }
    };
    Ok(kind)
}

fn parse_shape(s: &str) -> Result<Vec<usize>, NnError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad(format!("shape `{s}` is not a tuple")))?;
    let mut shape = Vec::new();
    for part in inner.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        if shape.len() == MAX_DIMS {
            return Err(bad(format!("more than {MAX_DIMS} dimensions")));
        }
        let p = p.trim_end_matches('L');
        shape.push(
            p.parse::<usize>()
                .map_err(|_| bad(format!("shape entry `{p}` is not a size")))?,
        );
    }
    Ok(shape)
}

fn elem_size(k: Kind) -> usize {
    match k {
        Kind::U8 => 1,
        Kind::Int { size, .. } | Kind::Float { size, .. } => size,
    }
}

fn read_word<const N: usize>(c: &[u8], big: bool) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&c[..N]);
    if big {
        w.reverse();
    }
    w
}

impl NpyArray {
    /// Decodes the bytes of a `.npy` file.
    pub fn parse(b: &[u8]) -> Result<NpyArray, NnError> {
        if b.len() < 10 || &b[..6] != MAGIC {
            return Err(bad("not a .npy file (bad magic string)"));
        }
        let major = b[6];
        let (hlen, start) = match major {
            1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
            2 | 3 => {
                if b.len() < 12 {
                    return Err(bad("truncated header"));
                }
                (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
            }
            v => return Err(bad(format!("format version {v} is not supported"))),
        };
        if hlen > MAX_HEADER {
            return Err(bad(format!("header of {hlen} bytes is implausibly long")));
        }
        let end = start + hlen;
        if b.len() < end {
            return Err(bad(format!(
                "truncated: header needs {hlen} bytes, the file has {}",
                b.len() - start
            )));
        }
        let h = std::str::from_utf8(&b[start..end]).map_err(|_| bad("header is not text"))?;
        let kind = parse_descr(dict_value(h, "descr")?)?;
        let fortran = dict_value(h, "fortran_order")?;
        match fortran {
            "False" => {}
            "True" => {
                return Err(bad(
                    "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)",
                ));
            }
            o => return Err(bad(format!("fortran_order `{o}` is not a boolean"))),
        }
        let shape = parse_shape(dict_value(h, "shape")?)?;
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        let es = elem_size(kind);
        let body = &b[end..];
        let need = count
            .checked_mul(es)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if body.len() != need {
            return Err(bad(format!(
                "{}: shape {shape:?} needs {need} data bytes, the file has {}",
                if body.len() < need {
                    "truncated"
                } else {
                    "trailing data"
                },
                body.len()
            )));
        }
        let data = match kind {
            Kind::U8 => NpyData::U8(body.to_vec()),
            Kind::Float { size: 4, big } => NpyData::F32(
                body.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(read_word::<4>(c, big)))
                    .collect(),
            ),
            Kind::Float { big, .. } => NpyData::F32(
                body.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(read_word::<8>(c, big)) as f32)
                    .collect(),
            ),
            Kind::Int { size, signed, big } => {
                let mut out = Vec::with_capacity(count);
                for c in body.chunks_exact(size) {
                    let v = match (size, signed) {
                        (1, _) => c[0] as i8 as i64,
                        (2, true) => i16::from_le_bytes(read_word::<2>(c, big)) as i64,
                        (2, false) => u16::from_le_bytes(read_word::<2>(c, big)) as i64,
                        (4, true) => i32::from_le_bytes(read_word::<4>(c, big)) as i64,
                        (4, false) => u32::from_le_bytes(read_word::<4>(c, big)) as i64,
                        (8, true) => i64::from_le_bytes(read_word::<8>(c, big)),
                        _ => {
                            let u = u64::from_le_bytes(read_word::<8>(c, big));
                            i64::try_from(u)
                                .map_err(|_| bad(format!("uint64 value {u} is out of range")))?
                        }
                    };
                    out.push(v);
                }
                NpyData::I64(out)
            }
        };
        Ok(NpyArray { shape, data })
    }

    /// Reads and decodes a `.npy` file.
    pub fn read(path: &Path) -> Result<NpyArray, NnError> {
        let b = crate::input::read_file(path)?;
        NpyArray::parse(&b).map_err(|e| match e {
            NnError::Data(m) => NnError::Data(format!("{}: {m}", path.display())),
            other => other,
        })
    }
}

fn encode(descr: &str, shape: &[usize], body: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    // Pad with spaces so that the data starts at a multiple of 64 bytes; end with '\n'.
    let unpadded = 10 + h.len() + 1;
    h.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    h.push('\n');
    let mut out = Vec::with_capacity(10 + h.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The header is a few hundred bytes at most (shape of a handful of dims).
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes an int64 array (`<i8`) of the given shape.
pub fn encode_i64(v: &[i64], shape: &[usize]) -> Vec<u8> {
    let body: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    encode("<i8", shape, &body)
}

/// Encodes a float32 array (`<f4`) of the given shape.
pub fn encode_f32(v: &[f32], shape: &[usize]) -> Vec<u8> {
    let body: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    encode("<f4", shape, &body)
}

/// Encodes a uint8 array (`|u1`) of the given shape.
pub fn encode_u8(v: &[u8], shape: &[usize]) -> Vec<u8> {
    encode("|u1", shape, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let a = NpyArray::parse(&encode_f32(&[1.5, -2.0, 0.25, 8.0], &[2, 2])).unwrap();
        assert_eq!(a.shape, vec![2, 2]);
        assert_eq!(a.data, NpyData::F32(vec![1.5, -2.0, 0.25, 8.0]));
        let a = NpyArray::parse(&encode_u8(&[0, 255, 7], &[3])).unwrap();
        assert_eq!(a.data, NpyData::U8(vec![0, 255, 7]));
        let a = NpyArray::parse(&encode_i64(&[-1, 9], &[2])).unwrap();
        assert_eq!(a.data, NpyData::I64(vec![-1, 9]));
        // the data starts 64-byte aligned, as numpy writes it
        let b = encode_u8(&[1], &[1]);
        assert_eq!((b.len() - 1) % 64, 0);
    }

    #[test]
    fn numpy_written_header_variants() {
        // numpy's own header for np.zeros((2,3), dtype='<f8')
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&[1, 0]);
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }          \n";
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        for i in 0..6 {
            b.extend_from_slice(&(i as f64 * 0.5).to_le_bytes());
        }
        let a = NpyArray::parse(&b).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, NpyData::F32(vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]));
    }

    #[test]
    fn hostile_and_truncated_files_are_errors() {
        let good = encode_f32(&[1.0; 6], &[2, 3]);
        for cut in 0..good.len() {
            assert!(NpyArray::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(NpyArray::parse(&extra).is_err());
        // a shape whose byte count overflows, and one far beyond the data
        for shape in [
            "(18446744073709551615, 2)",
            "(4294967296, 4294967296)",
            "(1000000000,)",
        ] {
            let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
            b.extend_from_slice(h.as_bytes());
            let e = NpyArray::parse(&b).unwrap_err().to_string();
            assert!(e.contains("overflows") || e.contains("truncated"), "{e}");
        }
        let h = "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }\n";
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&[0; 16]);
        assert!(NpyArray::parse(&b).unwrap_err().to_string().contains("c16"));
    }
}
