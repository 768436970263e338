//! # ppml-simd: one run-time choice of CPU backend for every kernel
//!
//! ppml's hot loops (the Z_2^64 ring matmul in `ppml-sharing`, the Z_67
//! PrivateCompare code and mask expansion in `ppml-smpc`, the small-batch
//! float kernels in `ppml-nn`) each exist in up to three builds:
//!
//! * [`Backend::Portable`]: plain Rust for the baseline target, on every CPU;
//! * [`Backend::Avx2`]: x86-64 with AVX2 and FMA (most laptops and cloud CPUs);
//! * [`Backend::Avx512`]: x86-64 with AVX-512 F/BW/DQ/VL (plus AVX2 and FMA).
//!
//! This crate decides ONCE per process which one runs, and every kernel asks
//! [`backend()`]. The CPU is detected at run time; the environment variable
//! `PPML_BACKEND=portable|avx2|avx512` forces one, so every backend can be
//! tested and measured on one machine (a forced backend must be supported by
//! the CPU: forcing one it lacks is an error from [`selected`], and the
//! kernels then run portable, never an instruction the CPU lacks).
//!
//! Kernels that take a backend explicitly (`*_with(backend, ..)`) let tests
//! compare every [`Backend::available`] one against portable in one process.
//!
//! ```
//! use ppml_simd::{Backend, backend};
//!
//! let b = backend();
//! assert!(b.is_supported());
//! assert!(Backend::available().contains(&b));
//! assert_eq!("avx2".parse::<Backend>().unwrap(), Backend::Avx2);
//! // Portable runs everywhere.
//! assert!(Backend::Portable.is_supported());
//! ```
//!
//! [`dispatch!`] builds the three variants of a function from one generic
//! body by compiling it with each feature set enabled (LLVM vectorises it for
//! that target), for loops where auto-vectorisation is enough.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The environment variable that forces a backend.
pub const ENV_VAR: &str = "PPML_BACKEND";

/// A CPU backend: which build of the kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// Plain Rust for the baseline target (x86-64: SSE2). Runs everywhere.
    Portable,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-512 F, BW, DQ, VL (and AVX2 + FMA).
    Avx512,
}

/// Errors of backend selection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// `PPML_BACKEND` names no backend.
    #[error("{ENV_VAR}={0:?} is not a backend (expected portable, avx2 or avx512)")]
    Unknown(String),
    /// `PPML_BACKEND` forces a backend this CPU cannot run.
    #[error("{ENV_VAR} forces the {0} backend, but this CPU does not support it (supported: {1})")]
    Unsupported(Backend, String),
}

impl Backend {
    /// Every backend, slowest first.
    pub const ALL: [Backend; 3] = [Backend::Portable, Backend::Avx2, Backend::Avx512];

    /// The name used by `PPML_BACKEND` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }

    /// True when this CPU can run this backend (checked at run time).
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Portable => true,
            Backend::Avx2 => cpu::avx2(),
            Backend::Avx512 => cpu::avx512(),
        }
    }

    /// The backends this CPU supports, slowest first (always starts with
    /// [`Backend::Portable`]).
    pub fn available() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_supported()).collect()
    }

    /// The fastest backend this CPU supports.
    pub fn best() -> Backend {
        // ALL is ordered slowest first and Portable is always supported.
        Self::ALL
            .into_iter()
            .rev()
            .find(|b| b.is_supported())
            .unwrap_or(Backend::Portable)
    }

    /// True for a backend whose CPU features include AVX2 and FMA.
    pub fn has_avx2(self) -> bool {
        matches!(self, Backend::Avx2 | Backend::Avx512)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" | "generic" => Ok(Backend::Portable),
            "avx2" => Ok(Backend::Avx2),
            "avx512" | "avx-512" => Ok(Backend::Avx512),
            _ => Err(BackendError::Unknown(s.to_string())),
        }
    }
}

/// Resolves a requested backend name (e.g. the value of `PPML_BACKEND`)
/// against this CPU: `None` or an empty string gives [`Backend::best`].
pub fn resolve(requested: Option<&str>) -> Result<Backend, BackendError> {
    match requested.map(str::trim) {
        None | Some("") => Ok(Backend::best()),
        Some(s) => {
            let b: Backend = s.parse()?;
            if b.is_supported() {
                Ok(b)
            } else {
                let names: Vec<&str> = Backend::available().iter().map(|b| b.name()).collect();
                Err(BackendError::Unsupported(b, names.join(", ")))
            }
        }
    }
}

static SELECTED: OnceLock<Result<Backend, BackendError>> = OnceLock::new();

/// The process's backend choice: `PPML_BACKEND` if set (an error if it names
/// no backend or one this CPU lacks), otherwise the best the CPU supports.
/// Decided on the first call and fixed for the life of the process. Binaries
/// call this at start-up to turn a bad `PPML_BACKEND` into a clear error.
pub fn selected() -> Result<Backend, BackendError> {
    SELECTED
        .get_or_init(|| resolve(std::env::var(ENV_VAR).ok().as_deref()))
        .clone()
}

/// The backend every kernel uses. If `PPML_BACKEND` is invalid (see
/// [`selected`]) this is [`Backend::Portable`], which is always safe to run,
/// and the error is printed once to stderr.
pub fn backend() -> Backend {
    match selected() {
        Ok(b) => b,
        Err(e) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| eprintln!("ppml-simd: {e}; running the portable kernels"));
            Backend::Portable
        }
    }
}

/// CPU feature detection (cached by std).
mod cpu {
    pub fn avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn avx512() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            avx2()
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512vl")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// Defines `$vis fn $name(backend: Backend, args..) -> ret` that runs the
/// generic body `$imp(args..)` compiled for that backend: as is for
/// [`Backend::Portable`], with AVX2+FMA enabled for [`Backend::Avx2`] and with
/// AVX-512 F/BW/DQ/VL (+AVX2, FMA) for [`Backend::Avx512`]. A backend the CPU
/// does not support runs the portable build (never an illegal instruction).
///
/// `$imp` should be `#[inline(always)]` so that it is compiled into each
/// variant with the variant's features.
///
/// ```
/// use ppml_simd::{Backend, backend};
///
/// #[inline(always)]
/// fn sum_impl(v: &[u32]) -> u32 {
///     v.iter().fold(0u32, |a, &b| a.wrapping_add(b))
/// }
/// ppml_simd::dispatch!(fn sum(v: &[u32]) -> u32 => sum_impl);
///
/// let v: Vec<u32> = (0..1000).collect();
/// for b in Backend::available() {
///     assert_eq!(sum(b, &v), 499_500);
/// }
/// assert_eq!(sum(backend(), &v), 499_500);
/// ```
#[macro_export]
macro_rules! dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(backend: $crate::Backend, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                match backend {
                    $crate::Backend::Avx512 if $crate::Backend::Avx512.is_supported() => {
                        // SAFETY: the CPU supports every feature `avx512` is
                        // compiled with (checked on the line above).
                        return unsafe { avx512($($arg),*) };
                    }
                    $crate::Backend::Avx2 if $crate::Backend::Avx2.is_supported() => {
                        // SAFETY: the CPU supports AVX2 and FMA (checked above).
                        return unsafe { avx2($($arg),*) };
                    }
                    _ => {}
                }
            }
            let _ = backend;
            $imp($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(b.to_string(), b.name());
        }
        assert!(matches!(
            "sse9".parse::<Backend>(),
            Err(BackendError::Unknown(_))
        ));
    }

    #[test]
    fn resolve_checks_the_cpu() {
        assert_eq!(resolve(None).unwrap(), Backend::best());
        assert_eq!(resolve(Some("")).unwrap(), Backend::best());
        assert_eq!(resolve(Some("portable")).unwrap(), Backend::Portable);
        for b in Backend::ALL {
            match resolve(Some(b.name())) {
                Ok(got) => {
                    assert_eq!(got, b);
                    assert!(b.is_supported());
                }
                Err(BackendError::Unsupported(got, _)) => {
                    assert_eq!(got, b);
                    assert!(!b.is_supported());
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(resolve(Some("neon")).is_err());
    }

    #[test]
    fn available_is_ordered_and_consistent() {
        let av = Backend::available();
        assert_eq!(av[0], Backend::Portable);
        assert_eq!(*av.last().unwrap(), Backend::best());
        // AVX-512 implies AVX2 here: the AVX-512 backend also runs AVX2 code.
        if Backend::Avx512.is_supported() {
            assert!(Backend::Avx2.is_supported());
        }
        assert!(av.contains(&backend()));
    }

    #[inline(always)]
    fn mix_impl(v: &mut [u64], k: u64) {
        for x in v.iter_mut() {
            *x = x.wrapping_mul(k).wrapping_add(*x >> 7);
        }
    }
    dispatch!(fn mix(v: &mut [u64], k: u64) => mix_impl);

    #[test]
    fn dispatch_runs_every_backend_identically() {
        let base: Vec<u64> = (0..1003u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut want = base.clone();
        mix_impl(&mut want, 12345);
        for b in Backend::ALL {
            // Unsupported backends fall back to portable: same answer.
            let mut v = base.clone();
            mix(b, &mut v, 12345);
            assert_eq!(v, want, "{b}");
        }
    }
}
