//! Beaver multiplication: element-wise products and matrix products of
//! shared values, with correlated randomness dealt by P2 from PRG seeds so
//! that only one correction (`c1 = a*b - c0`, sent to P1) travels.
//!
//! Draw order (every holder of a stream draws the same values in the same
//! order; the functions below are the only place it is defined):
//! * [`mul`]: `S02`: a0, b0, c0; `S12`: a1, b1.
//! * [`mask_shared`]: `S02`: a0; `S12`: a1. [`fixed_product`]: `S02`: c0.
//! * [`mask_from_owner`]: `D02`: a0; `D12`: a1 (the data owner draws both).
//! * [`FixedRhs::from_owner`]: `M02`: b0; `M12`: b1 (the model owner draws both).
//! * [`FixedRhs::from_shares`]: `S02`: b0; `S12`: b1.

use crate::kernel::{self, PackedRhs};
use crate::party::{DATA_OWNER, MODEL_OWNER, P0, P1, P2, Party, Stream, TestOnlyLeak};
use crate::{SmpcError, error::expect_len};

fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect()
}

fn sub(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect()
}

/// Local SecureML truncation of this party's shares by `frac_bits` (see
/// `ppml_fixedpoint::share_trunc` and docs/PROTOCOLS.md for the bound).
pub fn truncate(party: &Party, shares: &mut [u64]) {
    if party.id == P0 || party.id == P1 {
        ppml_fixedpoint::share_trunc::local_truncate_shares(shares, party.id, party.cfg.frac_bits);
    }
}

/// The local step of Beaver multiplication for computing party `j`:
/// `z_j = [j==0] e*f + e*b_j + f*a_j + c_j`.
#[inline]
pub fn mul_local(j: usize, e: u64, f: u64, a_j: u64, b_j: u64, c_j: u64) -> u64 {
    let z = e
        .wrapping_mul(b_j)
        .wrapping_add(f.wrapping_mul(a_j))
        .wrapping_add(c_j);
    if j == 0 {
        z.wrapping_add(e.wrapping_mul(f))
    } else {
        z
    }
}

/// Element-wise product of two shared vectors of `n` elements (no truncation:
/// a product of fixed-point values carries `2f` fractional bits; call
/// [`truncate`] or use [`mul_fixed`]). P2 passes empty slices.
pub fn mul(party: &mut Party, n: usize, x: &[u64], y: &[u64]) -> Result<Vec<u64>, SmpcError> {
    match party.id {
        P2 => {
            let a0 = party.draw(Stream::S02, n)?;
            let b0 = party.draw(Stream::S02, n)?;
            let c0 = party.draw(Stream::S02, n)?;
            let a1 = party.draw(Stream::S12, n)?;
            let b1 = party.draw(Stream::S12, n)?;
            let c1: Vec<u64> = (0..n)
                .map(|i| {
                    a0[i]
                        .wrapping_add(a1[i])
                        .wrapping_mul(b0[i].wrapping_add(b1[i]))
                        .wrapping_sub(c0[i])
                })
                .collect();
            party.send_u64s(P1, &c1)?;
            Ok(Vec::new())
        }
        j @ (P0 | P1) => {
            expect_len("mul x", x.len(), n)?;
            expect_len("mul y", y.len(), n)?;
            let s = if j == P0 { Stream::S02 } else { Stream::S12 };
            let a = party.draw(s, n)?;
            let b = party.draw(s, n)?;
            let c = if j == P0 {
                party.draw(Stream::S02, n)?
            } else {
                party.recv_len(P2, n, "triple correction")?
            };
            let mut msg = sub(x, &a);
            msg.extend(sub(y, &b));
            let opened = party.open_owned(msg)?;
            let (e, f) = opened.split_at(n);
            Ok((0..n)
                .map(|i| mul_local(j, e[i], f[i], a[i], b[i], c[i]))
                .collect())
        }
        other => Err(SmpcError::Role(format!("party {other} cannot run mul"))),
    }
}

/// Fixed-point element-wise product: [`mul`] then [`truncate`].
pub fn mul_fixed(party: &mut Party, n: usize, x: &[u64], y: &[u64]) -> Result<Vec<u64>, SmpcError> {
    let mut z = mul(party, n, x, y)?;
    truncate(party, &mut z);
    Ok(z)
}

/// A secret `k x n` right operand prepared for Beaver matmuls: the masked
/// matrix `F = W - B` is opened once to P0 and P1 and reused for every
/// product; `B = B0 + B1` is known to P2 only.
///
/// * P0 holds `g = F + B0` and `f = F`, P1 holds `g = B1` and `f = F`:
///   then `X W = E g_0 + A_0 F + E g_1 + A_1 F + A B` for `E = X - A`.
/// * P2 holds `g = B` (and no `f`).
#[derive(Clone, Debug)]
pub struct FixedRhs {
    /// P0: `F + B0`; P1: `B1`; P2: `B`.
    pub g: PackedRhs,
    /// P0 and P1: `F`. Empty for P2.
    pub f: PackedRhs,
}

impl FixedRhs {
    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.g.k()
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.g.n()
    }

    /// The model owner's side of [`FixedRhs::from_owner`]: masks the plaintext
    /// `k x n` matrix `w` with `B0 + B1` drawn from `M02` / `M12` and sends
    /// `F = W - B` to P0 and P1.
    pub fn share_as_owner(
        owner: &mut Party,
        w: &[u64],
        k: usize,
        n: usize,
    ) -> Result<(), SmpcError> {
        if owner.id != MODEL_OWNER {
            return Err(SmpcError::Role(
                "only the model owner shares weights".into(),
            ));
        }
        expect_len("weights", w.len(), k * n)?;
        let b0 = owner.draw(Stream::M02, k * n)?;
        let b1 = weight_mask_b1(owner, k * n)?;
        let f: Vec<u64> = (0..k * n)
            .map(|i| w[i].wrapping_sub(b0[i]).wrapping_sub(b1[i]))
            .collect();
        owner.send_u64s(P0, &f)?;
        owner.send_u64s(P1, &f)?;
        Ok(())
    }

    /// P0, P1 or P2's side of the model owner's sharing of a `k x n` matrix.
    pub fn from_owner(party: &mut Party, k: usize, n: usize) -> Result<FixedRhs, SmpcError> {
        match party.id {
            P2 => {
                let b0 = party.draw(Stream::M02, k * n)?;
                let b1 = weight_mask_b1(party, k * n)?;
                Self::helper(&add(&b0, &b1), k, n)
            }
            j @ (P0 | P1) => {
                let b = if j == P0 {
                    party.draw(Stream::M02, k * n)?
                } else {
                    weight_mask_b1(party, k * n)?
                };
                let f = party.recv_len(MODEL_OWNER, k * n, "masked weights")?;
                Self::computing(j, &f, &b, k, n)
            }
            other => Err(SmpcError::Role(format!("party {other} holds no weights"))),
        }
    }

    /// Prepares a matrix that P0 and P1 already hold additive shares `w_j`
    /// of (P2 passes an empty slice): one opening of `W - B`.
    pub fn from_shares(
        party: &mut Party,
        w: &[u64],
        k: usize,
        n: usize,
    ) -> Result<FixedRhs, SmpcError> {
        match party.id {
            P2 => {
                let b0 = party.draw(Stream::S02, k * n)?;
                let b1 = party.draw(Stream::S12, k * n)?;
                Self::helper(&add(&b0, &b1), k, n)
            }
            j @ (P0 | P1) => {
                expect_len("weight share", w.len(), k * n)?;
                let s = if j == P0 { Stream::S02 } else { Stream::S12 };
                let b = party.draw(s, k * n)?;
                let f = party.open_owned(sub(w, &b))?;
                Self::computing(j, &f, &b, k, n)
            }
            other => Err(SmpcError::Role(format!("party {other} holds no weights"))),
        }
    }

    fn helper(b: &[u64], k: usize, n: usize) -> Result<FixedRhs, SmpcError> {
        Ok(FixedRhs {
            g: PackedRhs::pack(b, k, n)?,
            f: PackedRhs::default(),
        })
    }

    fn computing(
        j: usize,
        f: &[u64],
        b_j: &[u64],
        k: usize,
        n: usize,
    ) -> Result<FixedRhs, SmpcError> {
        let g = if j == P0 { add(f, b_j) } else { b_j.to_vec() };
        Ok(FixedRhs {
            g: PackedRhs::pack(&g, k, n)?,
            f: PackedRhs::pack(f, k, n)?,
        })
    }
}

/// `B1`, P1's part of the weight mask (from `M12`). The TEST-ONLY
/// `WeightMaskKnownToP0` mutation zeroes it, so P0 alone knows the mask.
fn weight_mask_b1(party: &mut Party, len: usize) -> Result<Vec<u64>, SmpcError> {
    let mut b1 = party.draw(Stream::M12, len)?;
    if party.test_only.leak == TestOnlyLeak::WeightMaskKnownToP0 {
        b1.fill(0);
    }
    Ok(b1)
}

/// A shared left operand after masking: P0/P1 hold the opened `E = X - A`
/// and their share `A_j` of the mask; P2 holds the whole mask `A` (and an
/// empty `e`). Linear maps (im2col, transposes) may be applied to both
/// fields before [`fixed_product`].
#[derive(Clone, Debug, Default)]
pub struct Masked {
    pub e: Vec<u64>,
    pub a: Vec<u64>,
}

impl Masked {
    /// Applies the same linear map to `e` and `a` (e.g. im2col).
    pub fn map(&self, f: impl Fn(&[u64]) -> Vec<u64>) -> Masked {
        Masked {
            e: if self.e.is_empty() {
                Vec::new()
            } else {
                f(&self.e)
            },
            a: f(&self.a),
        }
    }
}

/// Masks a shared `len`-element value with a fresh mask from `S02`/`S12` and
/// opens it (one exchange between P0 and P1; P2 only draws).
pub fn mask_shared(party: &mut Party, len: usize, x: &[u64]) -> Result<Masked, SmpcError> {
    match party.id {
        P2 => {
            let a0 = party.draw(Stream::S02, len)?;
            let a1 = party.draw(Stream::S12, len)?;
            Ok(Masked {
                e: Vec::new(),
                a: add(&a0, &a1),
            })
        }
        j @ (P0 | P1) => {
            expect_len("masked input", x.len(), len)?;
            let s = if j == P0 { Stream::S02 } else { Stream::S12 };
            let a = party.draw(s, len)?;
            let e = party.open_owned(sub(x, &a))?;
            Ok(Masked { e, a })
        }
        other => Err(SmpcError::Role(format!("party {other} cannot mask"))),
    }
}

/// The data owner's side of input sharing: sends `E = X - A0 - A1` (masks
/// from `D02`/`D12`) to P0 and P1. `x` is already fixed-point encoded.
pub fn send_input_as_owner(owner: &mut Party, x: &[u64]) -> Result<(), SmpcError> {
    if owner.id != DATA_OWNER {
        return Err(SmpcError::Role("only the data owner sends inputs".into()));
    }
    let a0 = owner.draw(Stream::D02, x.len())?;
    let a1 = owner.draw(Stream::D12, x.len())?;
    let e: Vec<u64> = (0..x.len())
        .map(|i| x[i].wrapping_sub(a0[i]).wrapping_sub(a1[i]))
        .collect();
    owner.send_u64s(P0, &e)?;
    owner.send_u64s(P1, &e)?;
    Ok(())
}

/// P0, P1 or P2's side of [`send_input_as_owner`] for an input of `len`
/// elements: the input arrives already masked, no exchange between P0 and P1.
pub fn mask_from_owner(party: &mut Party, len: usize) -> Result<Masked, SmpcError> {
    match party.id {
        P2 => {
            let a0 = party.draw(Stream::D02, len)?;
            let a1 = party.draw(Stream::D12, len)?;
            Ok(Masked {
                e: Vec::new(),
                a: add(&a0, &a1),
            })
        }
        j @ (P0 | P1) => {
            let s = if j == P0 { Stream::D02 } else { Stream::D12 };
            let a = party.draw(s, len)?;
            let e = party.recv_len(DATA_OWNER, len, "masked input")?;
            Ok(Masked { e, a })
        }
        other => Err(SmpcError::Role(format!(
            "party {other} cannot receive inputs"
        ))),
    }
}

/// The Beaver product `X W` (`rows x k` times `k x n`) of a masked left
/// operand and a prepared right operand; returns this party's share (P2:
/// empty) with `2f` fractional bits, not truncated. P2 computes `C = A B`
/// and sends `C - C0` to P1 (`C0` from `S02`).
pub fn fixed_product(
    party: &mut Party,
    rows: usize,
    x: &Masked,
    w: &FixedRhs,
) -> Result<Vec<u64>, SmpcError> {
    let (k, n) = (w.k(), w.n());
    expect_len("mask", x.a.len(), rows * k)?;
    match party.id {
        P2 => {
            let mut c = kernel::matmul(&x.a, rows, &w.g)?;
            let c0 = party.draw(Stream::S02, rows * n)?;
            for (ci, c0i) in c.iter_mut().zip(&c0) {
                *ci = ci.wrapping_sub(*c0i);
            }
            party.send_u64s(P1, &c)?;
            Ok(Vec::new())
        }
        j @ (P0 | P1) => {
            expect_len("opened input", x.e.len(), rows * k)?;
            let mut z = if j == P0 {
                party.draw(Stream::S02, rows * n)?
            } else {
                vec![0u64; rows * n]
            };
            kernel::matmul_acc(&x.e, rows, &w.g, &mut z)?;
            kernel::matmul_acc(&x.a, rows, &w.f, &mut z)?;
            if j == P1 {
                // P1 multiplies first and only then waits for P2's
                // correction, so P2's `A B` runs alongside P0's and P1's
                // products instead of before P1's.
                add_correction(party, &mut z)?;
            }
            Ok(z)
        }
        other => Err(SmpcError::Role(format!("party {other} cannot multiply"))),
    }
}

/// P1's last step of a fixed-weight product: adds P2's correction `C - C0`
/// (received only now, after P1's own matmuls, which do not depend on it).
fn add_correction(party: &mut Party, z: &mut [u64]) -> Result<(), SmpcError> {
    party.recv_add(P2, z, "product correction")
}

/// [`fixed_product`] of a left operand given before a linear expansion:
/// `x` holds `groups` equal groups (e.g. images), `expand(v, g)` maps `g`
/// consecutive groups of `v` to their `g * rows_per_group` rows of `k`
/// (e.g. im2col). The same messages and result as expanding all of `x` and
/// calling [`fixed_product`], but the expansion is done a few groups at a
/// time (about 4 MiB per chunk): the expanded matrices of a batch can be
/// hundreds of megabytes, each a fresh mapping that the kernel has to
/// zero page by page.
pub fn fixed_product_expanded(
    party: &mut Party,
    groups: usize,
    rows_per_group: usize,
    x: &Masked,
    w: &FixedRhs,
    expand: impl Fn(&[u64], usize) -> Vec<u64>,
) -> Result<Vec<u64>, SmpcError> {
    let (k, n) = (w.k(), w.n());
    let rows = groups * rows_per_group;
    if groups == 0 || !x.a.len().is_multiple_of(groups) {
        return Err(SmpcError::Shape(format!(
            "{} mask values are not {groups} equal groups",
            x.a.len()
        )));
    }
    let per = x.a.len() / groups;
    let step = ((4usize << 20) / (rows_per_group * k * 8).max(1)).clamp(1, groups);
    let chunks = (0..groups)
        .step_by(step)
        .map(|g0| (g0, step.min(groups - g0)));
    let rows_of = |g0: usize, g: usize| g0 * rows_per_group * n..(g0 + g) * rows_per_group * n;
    match party.id {
        P2 => {
            let mut c = vec![0u64; rows * n];
            for (g0, g) in chunks {
                let a = expand(&x.a[g0 * per..(g0 + g) * per], g);
                expect_len("expanded mask", a.len(), g * rows_per_group * k)?;
                kernel::matmul_acc(&a, g * rows_per_group, &w.g, &mut c[rows_of(g0, g)])?;
            }
            let c0 = party.draw(Stream::S02, rows * n)?;
            for (ci, c0i) in c.iter_mut().zip(&c0) {
                *ci = ci.wrapping_sub(*c0i);
            }
            party.send_u64s(P1, &c)?;
            Ok(Vec::new())
        }
        j @ (P0 | P1) => {
            expect_len("opened input", x.e.len(), x.a.len())?;
            let mut z = if j == P0 {
                party.draw(Stream::S02, rows * n)?
            } else {
                vec![0u64; rows * n]
            };
            for (g0, g) in chunks {
                let r = g0 * per..(g0 + g) * per;
                let (e, a) = (expand(&x.e[r.clone()], g), expand(&x.a[r], g));
                expect_len("expanded input", e.len(), g * rows_per_group * k)?;
                expect_len("expanded mask", a.len(), g * rows_per_group * k)?;
                let zc = &mut z[rows_of(g0, g)];
                kernel::matmul_acc(&e, g * rows_per_group, &w.g, zc)?;
                kernel::matmul_acc(&a, g * rows_per_group, &w.f, zc)?;
            }
            if j == P1 {
                add_correction(party, &mut z)?;
            }
            Ok(z)
        }
        other => Err(SmpcError::Role(format!("party {other} cannot multiply"))),
    }
}

/// Matrix product of two shared matrices (`m x k` by `k x n`), both masked
/// and opened for this product only (no truncation). P2 passes empty slices.
pub fn matmul(
    party: &mut Party,
    m: usize,
    k: usize,
    n: usize,
    x: &[u64],
    y: &[u64],
) -> Result<Vec<u64>, SmpcError> {
    let masked = mask_shared(party, m * k, x)?;
    let rhs = FixedRhs::from_shares(party, y, k, n)?;
    fixed_product(party, m, &masked, &rhs)
}

/// Fixed-point matrix product: [`matmul`] then [`truncate`].
pub fn matmul_fixed(
    party: &mut Party,
    m: usize,
    k: usize,
    n: usize,
    x: &[u64],
    y: &[u64],
) -> Result<Vec<u64>, SmpcError> {
    let mut z = matmul(party, m, k, n, x, y)?;
    truncate(party, &mut z);
    Ok(z)
}
