//! Byte / message / round accounting, identical over both transports.

mod common;

use common::{ALL_TRANSPORTS as TRANSPORTS, tcp_pair};
use ppml_net::{Channel, ChannelStats, NetConfig};
use std::time::Duration;

fn cfg() -> NetConfig {
    NetConfig::default().with_timeout(Duration::from_secs(10))
}

/// A fixed exchange; returns both ends' stats.
fn exchange(mut a: Channel, mut b: Channel) -> (ChannelStats, ChannelStats) {
    let t = std::thread::spawn(move || {
        let s: String = b.recv().unwrap();
        let v = b.recv_u64s().unwrap();
        b.send(&(s.len() as u64 + v.iter().sum::<u64>())).unwrap();
        let raw = b.recv_bytes().unwrap();
        b.send_bytes(raw).unwrap();
        b.stats()
    });
    a.send("twelve chars").unwrap();
    a.send_u64s(&[1, 2, 3]).unwrap();
    assert_eq!(a.recv::<u64>().unwrap(), 18);
    a.send_bytes(vec![7u8; 300]).unwrap();
    assert_eq!(a.recv_bytes().unwrap(), vec![7u8; 300]);
    (a.stats(), t.join().unwrap())
}

#[test]
fn bytes_are_payload_plus_header_and_identical_across_transports() {
    let mut results = Vec::new();
    for (name, make) in TRANSPORTS {
        let (a, b) = make(&cfg());
        let (sa, sb) = exchange(a, b);
        // a sent: "twelve chars" (1 varint + 12) + 24 + 300, each + 4 header bytes.
        let sent = (13 + 4) + (24 + 4) + (300 + 4);
        let received = (1 + 4) + (300 + 4); // u64 18 is a 1-byte varint
        assert_eq!(sa.bytes_sent, sent, "{name}");
        assert_eq!(sa.bytes_received, received, "{name}");
        assert_eq!((sa.messages_sent, sa.messages_received), (3, 2), "{name}");
        // a: send send | recv | send | recv => 2 rounds; b: recv recv send recv send => 2 rounds.
        assert_eq!(sa.rounds, 2, "{name}");
        assert_eq!(sb.rounds, 2, "{name}");
        // The two ends agree.
        assert_eq!(sa.bytes_sent, sb.bytes_received, "{name}");
        assert_eq!(sa.bytes_received, sb.bytes_sent, "{name}");
        results.push((sa, sb));
    }
    assert_eq!(results[0], results[1], "in-memory and TCP stats differ");
}

#[test]
fn send_send_recv_send_is_two_rounds() {
    for (name, make) in TRANSPORTS {
        let (mut a, mut b) = make(&cfg());
        a.send(&1u8).unwrap();
        assert_eq!(a.stats().rounds, 1, "{name}");
        a.send(&2u8).unwrap();
        assert_eq!(a.stats().rounds, 1, "{name}");
        b.send(&3u8).unwrap();
        assert_eq!(a.recv::<u8>().unwrap(), 3);
        a.send(&4u8).unwrap();
        assert_eq!(a.stats().rounds, 2, "{name}");
        // b: send, then three receives => 1 round.
        for _ in 0..3 {
            b.recv::<u8>().unwrap();
        }
        assert_eq!(b.stats().rounds, 1, "{name}");
        // A receive alone never starts a round.
        let (c, mut d) = make(&cfg());
        let mut c = c;
        c.send(&0u8).unwrap();
        d.recv::<u8>().unwrap();
        assert_eq!(d.stats().rounds, 0, "{name}");
    }
}

#[test]
fn stats_difference_measures_one_protocol() {
    let (mut a, mut b) = common::mem_pair(&cfg());
    a.send(&5u32).unwrap();
    b.recv::<u32>().unwrap();
    let before = a.stats();
    a.send_u64s(&[0; 10]).unwrap();
    b.recv_u64s().unwrap();
    let delta = a.stats() - before;
    assert_eq!(
        delta,
        ChannelStats {
            bytes_sent: 84,
            bytes_received: 0,
            messages_sent: 1,
            messages_received: 0,
            rounds: 0, // still the first round: no receive in between
        }
    );
    assert_eq!(before + delta, a.stats());
    let mut acc = before;
    acc += delta;
    assert_eq!(acc, a.stats());
}

#[test]
fn large_simultaneous_sends_over_tcp_do_not_deadlock() {
    const N: usize = 6_500_000; // 52 MB per direction
    let (mut a, mut b) = tcp_pair(&cfg().with_timeout(Duration::from_secs(60)));
    let pattern = |seed: u64| -> Vec<u64> {
        (0..N as u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed)
            .collect()
    };
    let t = std::thread::spawn(move || {
        b.send_u64s(&pattern(2)).unwrap(); // sends before receiving, like a
        let got = b.recv_u64s().unwrap();
        assert!(got == pattern(1), "b received corrupted data");
        b.stats()
    });
    a.send_u64s(&pattern(1)).unwrap();
    let got = a.recv_u64s().unwrap();
    assert!(got == pattern(2), "a received corrupted data");
    let sb = t.join().unwrap();
    assert_eq!(a.stats().bytes_received, (N * 8 + 4) as u64);
    assert_eq!(sb.bytes_received, (N * 8 + 4) as u64);
}
