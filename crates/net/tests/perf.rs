//! Throughput check of the packed u64 fast path, plaintext TCP and TLS side by side (run in release):
//! `cargo test -p ppml-net --release --test perf -- --ignored --nocapture`

mod common;

use ppml_net::NetConfig;
use std::time::Instant;

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn six_million_u64s_in_memory_tcp_and_tls() {
    const N: usize = 6_000_000;
    let v: Vec<u64> = (0..N as u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    for (name, make) in common::ALL_TRANSPORTS {
        let (mut a, mut b) = make(&NetConfig::default());
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = Instant::now();
            let t = std::thread::scope(|s| {
                let r = s.spawn(|| b.recv_u64s().unwrap());
                a.send_u64s(&v).unwrap();
                r.join().unwrap()
            });
            let secs = start.elapsed().as_secs_f64();
            assert!(t == v, "{name}: corrupted");
            best = best.min(secs);
        }
        println!(
            "{name}: send_u64s+recv_u64s of {N} u64 ({} MB): best {:.2} ms, {:.2} GB/s",
            N * 8 / 1_000_000,
            best * 1e3,
            (N * 8) as f64 / best / 1e9
        );
    }
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn breakdown_against_plain_clone() {
    const N: usize = 6_000_000;
    let v: Vec<u64> = (0..N as u64).collect();
    let time = |f: &mut dyn FnMut() -> usize| {
        (0..5)
            .map(|_| {
                let s = Instant::now();
                std::hint::black_box(f());
                s.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    let bytes = ppml_net::encode_u64s(&v);
    println!(
        "Vec<u64>::clone      {:.2} ms",
        time(&mut || v.clone().len())
    );
    println!(
        "encode_u64s          {:.2} ms",
        time(&mut || ppml_net::encode_u64s(&v).len())
    );
    println!(
        "decode_u64s          {:.2} ms",
        time(&mut || ppml_net::decode_u64s(&bytes).unwrap().len())
    );
    let (mut a, mut b) = common::mem_pair(&NetConfig::default());
    println!(
        "same-thread send+recv {:.2} ms",
        time(&mut || {
            a.send_u64s(&v).unwrap();
            b.recv_u64s().unwrap().len()
        })
    );
}
