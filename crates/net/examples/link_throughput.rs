//! CPU cost of moving bytes over one TLS link vs one plaintext link (the
//! transport alone, no protocol): two parties as threads of this process, on
//! loopback, exchange FRAMES frames of BYTES bytes each way (both send, then
//! both receive, like an SMPC round). Prints one JSON line per mode with the
//! wall time and the process CPU time (user + system, all threads, from
//! /proc/self/stat), alternating modes REPS times.
//!
//! `taskset -c 0 cargo run --release -p ppml-net --example link_throughput -- [BYTES FRAMES REPS] [tls|insecure]`

use ppml_net::local::LocalDeployment;
use ppml_net::{NetConfig, Session};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat (after the command name in
    // parentheses): utime and stime in clock ticks (100 per second on Linux).
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn run(d: &LocalDeployment, tls: bool, bytes: usize, frames: usize) -> (f64, f64) {
    let open = |me: &str| {
        let cfg = NetConfig::default();
        if tls {
            Session::tls(me, d.parties().unwrap(), &d.keys_dir(), "bench", cfg).unwrap()
        } else {
            Session::insecure(me, d.parties().unwrap(), "bench", cfg).unwrap()
        }
    };
    let (a, b) = (open("a"), open("b"));
    let mut acc = b.listen().unwrap();
    let t = std::thread::spawn(move || {
        let mut ch = a.connect("b").unwrap();
        for _ in 0..frames {
            ch.send_bytes(vec![1u8; bytes]).unwrap();
            assert_eq!(ch.recv_bytes().unwrap().len(), bytes);
        }
    });
    let mut ch = acc
        .accept(&["a"], std::time::Duration::from_secs(10))
        .unwrap()
        .pop()
        .unwrap();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..frames {
        ch.send_bytes(vec![2u8; bytes]).unwrap();
        assert_eq!(ch.recv_bytes().unwrap().len(), bytes);
    }
    t.join().unwrap();
    (t0.elapsed().as_secs_f64(), cpu_seconds() - c0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let bytes = args.first().copied().unwrap_or(512 << 10);
    let frames = args.get(1).copied().unwrap_or(2000);
    let reps = args.get(2).copied().unwrap_or(3);
    // An optional word `tls` or `insecure` runs only that mode (for profiles).
    let only: Vec<bool> = match std::env::args().find(|a| a == "tls" || a == "insecure") {
        Some(m) => vec![m == "tls"],
        None => vec![true, false],
    };
    let d = LocalDeployment::new(&["a", "b"]).unwrap();
    for _ in 0..reps {
        for &tls in &only {
            let (wall, cpu) = run(&d, tls, bytes, frames);
            let moved = 2.0 * (bytes * frames) as f64;
            println!(
                "{{\"mode\": \"{}\", \"frame_bytes\": {bytes}, \"frames_each_way\": {frames}, \"wall\": {wall:.3}, \"cpu_seconds\": {cpu:.2}, \"cpu_ns_per_byte\": {:.3}}}",
                if tls { "tls" } else { "insecure" },
                cpu * 1e9 / moved
            );
        }
    }
}
