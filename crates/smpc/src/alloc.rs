//! Allocator tuning for long protocol runs.
//!
//! Protocol messages are large, short-lived buffers (megabytes per batch).
//! With glibc's defaults each one is a fresh `mmap`, so every page is
//! faulted in and zeroed by the kernel again, which costs about a third of
//! the CPU time of a private inference. [`tune_allocator`] keeps freed memory
//! in the process instead.

/// On Linux with glibc: serve allocations up to 32 MiB from one heap
/// (`M_MMAP_THRESHOLD`, `M_ARENA_MAX = 1`) and never give freed heap memory
/// back to the OS (`M_TRIM_THRESHOLD`). Process-wide; call it once, early,
/// from a binary (e.g. the `ppml` CLI before a private inference). Returns
/// whether the settings were applied (false on other platforms).
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes glibc malloc parameters; the values are
        // within the documented ranges (the mmap threshold maximum is 32 MiB
        // on 64-bit), and it is safe to call at any time.
        unsafe {
            mallopt(M_ARENA_MAX, 1) == 1
                && mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
                && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
