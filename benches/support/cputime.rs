//! A criterion measurement of on-CPU time: the nanoseconds all threads of
//! this process ran on a CPU (Linux `/proc/self/task/*/schedstat`).
//!
//! Pinned to one core (`taskset -c 0`), this is what the wall time would be
//! if no other process shared the core: time slices lost to other processes
//! are not counted. On a busy shared machine it gives stable, comparable
//! figures where wall time does not. (Cache and memory-bandwidth contention
//! from other processes still count.) Off Linux it reads zero.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// On-CPU time of the whole process (all threads), in nanoseconds.
pub struct CpuTime;

/// Sum of the run times of every thread of this process, nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        process_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        process_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as for wall time: reuse its formatter.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}
