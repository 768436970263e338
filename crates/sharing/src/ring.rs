//! [`RingTensor`]: shaped, row-major tensors over Z_2^64.
//!
//! All arithmetic wraps mod 2^64, which is exactly the arithmetic of additive
//! shares and of fixed-point encodings. [`RingTensor::matmul`] runs the kernel
//! of [`crate::kernel`]: cache- and register-blocked, row chunks on rayon, with
//! an AVX-512, AVX2 or portable micro-kernel picked once per process by
//! `ppml_simd::backend` (`PPML_BACKEND` forces one).

use crate::SharingError;
use serde::{Deserialize, Serialize};

/// A row-major tensor of ring elements (Z_2^64).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct RingTensor {
    shape: Vec<usize>,
    data: Vec<u64>,
}

impl std::fmt::Debug for RingTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 8;
        write!(f, "RingTensor{:?}", self.shape)?;
        if self.data.len() <= SHOW {
            write!(f, "{:?}", self.data)
        } else {
            write!(f, "{:?}..(+{})", &self.data[..SHOW], self.data.len() - SHOW)
        }
    }
}

fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl RingTensor {
    /// A tensor from its shape and row-major data; errors if they disagree.
    pub fn new(shape: Vec<usize>, data: Vec<u64>) -> Result<Self, SharingError> {
        match checked_len(&shape) {
            Some(n) if n == data.len() => Ok(Self { shape, data }),
            expected => Err(SharingError::BadLength {
                expected: expected.unwrap_or(usize::MAX),
                got: data.len(),
                shape,
            }),
        }
    }

    /// A one-dimensional tensor.
    pub fn from_vec(data: Vec<u64>) -> Self {
        Self {
            shape: vec![data.len()],
            data,
        }
    }

    /// A tensor of zeros. Errors if the element count overflows `usize`.
    pub fn zeros(shape: &[usize]) -> Result<Self, SharingError> {
        let n = checked_len(shape).ok_or_else(|| SharingError::BadLength {
            shape: shape.to_vec(),
            expected: usize::MAX,
            got: 0,
        })?;
        Ok(Self {
            shape: shape.to_vec(),
            data: vec![0; n],
        })
    }

    /// The shape.
    #[inline]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The row-major elements.
    #[inline]
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// The row-major elements, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Takes the elements out.
    pub fn into_data(self) -> Vec<u64> {
        self.data
    }

    /// The same elements under a new shape with the same element count.
    pub fn reshape(mut self, shape: Vec<usize>) -> Result<Self, SharingError> {
        match checked_len(&shape) {
            Some(n) if n == self.data.len() => {
                self.shape = shape;
                Ok(self)
            }
            expected => Err(SharingError::BadLength {
                expected: expected.unwrap_or(usize::MAX),
                got: self.data.len(),
                shape,
            }),
        }
    }

    fn same_shape(&self, other: &Self) -> Result<(), SharingError> {
        if self.shape == other.shape {
            Ok(())
        } else {
            Err(SharingError::ShapeMismatch {
                left: self.shape.clone(),
                right: other.shape.clone(),
            })
        }
    }

    fn zip_with(&self, other: &Self, f: impl Fn(u64, u64) -> u64) -> Result<Self, SharingError> {
        self.same_shape(other)?;
        Ok(Self {
            shape: self.shape.clone(),
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        })
    }

    fn zip_assign(
        &mut self,
        other: &Self,
        f: impl Fn(u64, u64) -> u64,
    ) -> Result<(), SharingError> {
        self.same_shape(other)?;
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a = f(*a, b);
        }
        Ok(())
    }

    /// Element-wise sum.
    pub fn add(&self, other: &Self) -> Result<Self, SharingError> {
        self.zip_with(other, u64::wrapping_add)
    }

    /// Element-wise difference.
    pub fn sub(&self, other: &Self) -> Result<Self, SharingError> {
        self.zip_with(other, u64::wrapping_sub)
    }

    /// Element-wise (Hadamard) product.
    pub fn mul_elem(&self, other: &Self) -> Result<Self, SharingError> {
        self.zip_with(other, u64::wrapping_mul)
    }

    /// In-place element-wise sum.
    pub fn add_assign(&mut self, other: &Self) -> Result<(), SharingError> {
        self.zip_assign(other, u64::wrapping_add)
    }

    /// In-place element-wise difference.
    pub fn sub_assign(&mut self, other: &Self) -> Result<(), SharingError> {
        self.zip_assign(other, u64::wrapping_sub)
    }

    /// In-place element-wise product.
    pub fn mul_elem_assign(&mut self, other: &Self) -> Result<(), SharingError> {
        self.zip_assign(other, u64::wrapping_mul)
    }

    /// Negation.
    pub fn neg(&self) -> Self {
        Self {
            shape: self.shape.clone(),
            data: self.data.iter().map(|v| v.wrapping_neg()).collect(),
        }
    }

    /// In-place negation.
    pub fn neg_assign(&mut self) {
        for v in &mut self.data {
            *v = v.wrapping_neg();
        }
    }

    /// Adds a scalar to every element, in place.
    pub fn add_scalar_assign(&mut self, s: u64) {
        for v in &mut self.data {
            *v = v.wrapping_add(s);
        }
    }

    /// Multiplies every element by a scalar, in place.
    pub fn mul_scalar_assign(&mut self, s: u64) {
        for v in &mut self.data {
            *v = v.wrapping_mul(s);
        }
    }

    /// The product by a scalar.
    pub fn mul_scalar(&self, s: u64) -> Self {
        let mut t = self.clone();
        t.mul_scalar_assign(s);
        t
    }

    /// Transpose of a 2-D tensor.
    pub fn transpose(&self) -> Result<Self, SharingError> {
        let (r, c) = self.dims2()?;
        let mut out = vec![0u64; r * c];
        // Tiles of 32x32 keep both reads and writes within a few cache lines.
        const T: usize = 32;
        for i0 in (0..r).step_by(T) {
            for j0 in (0..c).step_by(T) {
                for i in i0..(i0 + T).min(r) {
                    for j in j0..(j0 + T).min(c) {
                        out[j * r + i] = self.data[i * c + j];
                    }
                }
            }
        }
        Ok(Self {
            shape: vec![c, r],
            data: out,
        })
    }

    /// (rows, cols) of a 2-D tensor.
    pub fn dims2(&self) -> Result<(usize, usize), SharingError> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(SharingError::MatmulShape {
                left: self.shape.clone(),
                right: vec![],
            }),
        }
    }

    /// Matrix product `self (m x k) * other (k x n)` over Z_2^64.
    pub fn matmul(&self, other: &Self) -> Result<Self, SharingError> {
        let bad = || SharingError::MatmulShape {
            left: self.shape.clone(),
            right: other.shape.clone(),
        };
        let (m, k) = self.dims2().map_err(|_| bad())?;
        let (k2, n) = other.dims2().map_err(|_| bad())?;
        if k != k2 {
            return Err(bad());
        }
        let mut out = vec![0u64; m * n];
        matmul_into(&self.data, &other.data, &mut out, m, k, n)?;
        Ok(Self {
            shape: vec![m, n],
            data: out,
        })
    }
}

/// `c (m x n) = a (m x k) * b (k x n)`, all row-major, wrapping, through
/// the packed kernel in [`crate::kernel`] (B is packed on every call; pack it
/// once with [`crate::kernel::PackedRhs`] when it is reused).
///
/// `c` is overwritten. Slice lengths must match the dimensions.
pub fn matmul_into(
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(), SharingError> {
    if a.len() != m * k || b.len() != k * n || c.len() != m * n {
        return Err(SharingError::MatmulShape {
            left: vec![m, k, a.len()],
            right: vec![k, n, b.len()],
        });
    }
    c.fill(0);
    let rhs = crate::kernel::PackedRhs::pack(b, k, n)?;
    crate::kernel::matmul_acc(a, m, &rhs, c)
}

/// A naive triple-loop matmul, the reference the fast kernel is tested against.
pub fn matmul_reference(a: &[u64], b: &[u64], m: usize, k: usize, n: usize) -> Vec<u64> {
    let mut c = vec![0u64; m * n];
    for i in 0..m {
        for kk in 0..k {
            let x = a[i * k + kk];
            for j in 0..n {
                c[i * n + j] = c[i * n + j].wrapping_add(x.wrapping_mul(b[kk * n + j]));
            }
        }
    }
    c
}

// ---- serde: shape + little-endian bytes (8 bytes per element, no varints) ----

#[derive(Serialize)]
struct WireRef<'a> {
    shape: &'a [usize],
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

#[derive(Deserialize)]
struct WireOwned {
    shape: Vec<usize>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// The elements as little-endian bytes.
pub fn u64s_to_le_bytes(v: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parses little-endian bytes into elements; `None` if the length is not a
/// multiple of 8.
pub fn u64s_from_le_bytes(b: &[u8]) -> Option<Vec<u64>> {
    if !b.len().is_multiple_of(8) {
        return None;
    }
    Some(
        b.chunks_exact(8)
            // chunks_exact(8) yields exactly 8 bytes, so the conversion cannot fail.
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
    )
}

impl Serialize for RingTensor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = u64s_to_le_bytes(&self.data);
        WireRef {
            shape: &self.shape,
            data: &bytes,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RingTensor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireOwned::deserialize(d)?;
        let data = u64s_from_le_bytes(&w.data).ok_or_else(|| {
            serde::de::Error::custom("ring tensor data is not a multiple of 8 bytes")
        })?;
        RingTensor::new(w.shape, data).map_err(serde::de::Error::custom)
    }
}
