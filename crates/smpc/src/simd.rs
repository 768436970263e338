//! Run-time selection of AVX-512 code paths for the vectorisable loops
//! (Z_67 arithmetic, mask sampling). The portable path is the same Rust code
//! compiled for the baseline target.

use std::sync::OnceLock;

/// True when the CPU has AVX-512 F/BW/VL (checked once).
pub fn avx512() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Defines `pub fn $name(args) -> ret` that calls `$imp` compiled with
/// AVX-512 enabled when [`avx512`] holds, and the portable build otherwise.
macro_rules! dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),*) $(-> $ret:ty)? => $imp:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
                fn fast($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if $crate::simd::avx512() {
                    // SAFETY: avx512() checked at run time that the CPU has
                    // every feature `fast` is compiled with.
                    return unsafe { fast($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}
pub(crate) use dispatch;
