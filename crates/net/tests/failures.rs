//! Every failure is an error, never a hang or a panic — over in-memory AND loopback TCP.

mod common;

use common::ALL_TRANSPORTS as TRANSPORTS;
use ppml_net::{Channel, NetConfig, NetError, in_memory_transport_pair, read_frame};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point {
    x: u64,
    y: i32,
    label: String,
}

fn cfg() -> NetConfig {
    NetConfig::default()
        .with_timeout(Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(5))
}

#[test]
fn recv_after_peer_dropped_is_disconnected() {
    for (name, make) in TRANSPORTS {
        let (mut a, b) = make(&cfg());
        drop(b);
        let start = Instant::now();
        let err = a.recv::<u64>().unwrap_err();
        assert!(
            matches!(err, NetError::Disconnected { .. }),
            "{name}: got {err:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{name}: waited for the timeout"
        );
    }
}

#[test]
fn messages_sent_before_drop_are_delivered_then_disconnected() {
    for (name, make) in TRANSPORTS {
        let (mut a, mut b) = make(&cfg());
        a.send(&1u64).unwrap();
        a.send_u64s(&[7, 8, 9]).unwrap();
        drop(a);
        assert_eq!(b.recv::<u64>().unwrap(), 1, "{name}");
        assert_eq!(b.recv_u64s().unwrap(), vec![7, 8, 9], "{name}");
        let err = b.recv::<u64>().unwrap_err();
        assert!(
            matches!(err, NetError::Disconnected { .. }),
            "{name}: got {err:?}"
        );
    }
}

#[test]
fn send_to_dropped_peer_is_disconnected() {
    for (name, make) in TRANSPORTS {
        let (mut a, b) = make(&cfg());
        drop(b);
        // TCP may accept the first writes into the kernel buffer before the reset arrives.
        let mut result = Ok(());
        for _ in 0..200 {
            result = a.send_bytes(vec![0u8; 1024]);
            if result.is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let err = result.unwrap_err();
        assert!(
            matches!(err, NetError::Disconnected { .. }),
            "{name}: got {err:?}"
        );
    }
}

#[test]
fn recv_times_out() {
    let timeout = Duration::from_millis(150);
    for (name, make) in TRANSPORTS {
        let (mut a, _b) = make(&cfg().with_timeout(timeout));
        let start = Instant::now();
        let err = a.recv::<Point>().unwrap_err();
        let waited = start.elapsed();
        match err {
            NetError::Timeout { after, .. } => assert_eq!(after, timeout, "{name}"),
            other => panic!("{name}: expected Timeout, got {other:?}"),
        }
        assert!(waited >= timeout, "{name}: returned early after {waited:?}");
        assert!(waited < Duration::from_secs(3), "{name}: took {waited:?}");
    }
}

#[test]
fn oversized_send_is_rejected_and_channel_stays_usable() {
    for (name, make) in TRANSPORTS {
        let (mut a, mut b) = make(&cfg().with_max_frame_bytes(1000));
        let before = a.stats();
        let err = a.send_bytes(vec![1u8; 1001]).unwrap_err();
        assert!(
            matches!(
                err,
                NetError::FrameTooLarge {
                    len: 1001,
                    max: 1000
                }
            ),
            "{name}: got {err:?}"
        );
        let err = a.send_u64s(&[0u64; 126]).unwrap_err();
        assert!(
            matches!(
                err,
                NetError::FrameTooLarge {
                    len: 1008,
                    max: 1000
                }
            ),
            "{name}: got {err:?}"
        );
        let err = a.send(&vec![0u8; 1000]).unwrap_err(); // 1000 bytes + varint length
        assert!(
            matches!(err, NetError::FrameTooLarge { .. }),
            "{name}: got {err:?}"
        );
        assert_eq!(
            a.stats(),
            before,
            "{name}: rejected frames must not be counted"
        );
        a.send_bytes(vec![2u8; 1000]).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), vec![2u8; 1000], "{name}");
    }
}

#[test]
fn oversized_receive_in_memory() {
    let (ta, tb) = in_memory_transport_pair(&cfg());
    let mut sender = Channel::new(Box::new(ta), &cfg());
    let mut receiver = Channel::new(Box::new(tb), &cfg().with_max_frame_bytes(100));
    sender.send_bytes(vec![0u8; 101]).unwrap();
    let err = receiver.recv_bytes().unwrap_err();
    assert!(
        matches!(err, NetError::FrameTooLarge { len: 101, max: 100 }),
        "got {err:?}"
    );
    assert_eq!(receiver.stats().messages_received, 0);
}

/// Accepts a channel while a raw client writes `bytes` and then closes (or keeps open).
fn tcp_receiver_fed_with(bytes: &[u8], config: &NetConfig, close: bool) -> (Channel, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut raw = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let ch = ppml_net::tcp::accept(&listener, config).unwrap();
    raw.write_all(bytes).unwrap();
    raw.flush().unwrap();
    if close {
        raw.shutdown(std::net::Shutdown::Write).unwrap();
    }
    (ch, raw)
}

#[test]
fn hostile_length_prefix_over_tcp_is_rejected_without_allocating() {
    // Default config (256 MiB max): a header claiming 4 GiB - 1 must not be allocated.
    let (mut ch, _raw) = tcp_receiver_fed_with(&u32::MAX.to_le_bytes(), &cfg(), false);
    let err = ch.recv_bytes().unwrap_err();
    assert!(
        matches!(err, NetError::FrameTooLarge { len: 4_294_967_295, max } if max == 256 << 20),
        "got {err:?}"
    );
    // Smaller limit, a 2 KB claim.
    let (mut ch, _raw) = tcp_receiver_fed_with(
        &2000u32.to_le_bytes(),
        &cfg().with_max_frame_bytes(1000),
        false,
    );
    let err = ch.recv::<Point>().unwrap_err();
    assert!(
        matches!(
            err,
            NetError::FrameTooLarge {
                len: 2000,
                max: 1000
            }
        ),
        "got {err:?}"
    );
    // The stream is out of sync afterwards: later receives fail instead of hanging.
    assert!(ch.recv_bytes().is_err());
}

#[test]
fn truncated_payload_over_tcp() {
    let mut bytes = 100u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[9u8; 10]);
    let (mut ch, _raw) = tcp_receiver_fed_with(&bytes, &cfg(), true);
    let err = ch.recv_bytes().unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Truncated {
                expected: 100,
                got: 10
            }
        ),
        "got {err:?}"
    );
}

#[test]
fn truncated_header_over_tcp() {
    let (mut ch, _raw) = tcp_receiver_fed_with(&[5, 0], &cfg(), true);
    let err = ch.recv_bytes().unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Truncated {
                expected: 4,
                got: 2
            }
        ),
        "got {err:?}"
    );
}

#[test]
fn complete_frame_then_truncated_one_over_tcp() {
    let mut bytes = 3u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"abc");
    bytes.extend_from_slice(&8u32.to_le_bytes());
    bytes.extend_from_slice(b"xyz");
    let (mut ch, _raw) = tcp_receiver_fed_with(&bytes, &cfg(), true);
    assert_eq!(ch.recv_bytes().unwrap(), b"abc");
    let err = ch.recv_bytes().unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Truncated {
                expected: 8,
                got: 3
            }
        ),
        "got {err:?}"
    );
}

/// In memory, frames move whole, so truncation can only happen in a byte stream: check the
/// same framing code (`read_frame`, run by the TCP reader thread) on in-memory byte slices.
#[test]
fn truncated_frames_in_memory_byte_stream() {
    let max = 1 << 20;
    let mut stream: &[u8] = &[1, 2];
    assert!(matches!(
        read_frame(&mut stream, max, "mem"),
        Err(NetError::Truncated {
            expected: 4,
            got: 2
        })
    ));
    let mut bytes = 10u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 4]);
    let mut stream: &[u8] = &bytes;
    assert!(matches!(
        read_frame(&mut stream, max, "mem"),
        Err(NetError::Truncated {
            expected: 10,
            got: 4
        })
    ));
    let mut stream: &[u8] = &[];
    assert!(matches!(
        read_frame(&mut stream, max, "mem"),
        Err(NetError::Disconnected { .. })
    ));
    let mut stream: &[u8] = &[0xff, 0xff, 0xff, 0xff, 1, 2, 3];
    assert!(matches!(
        read_frame(&mut stream, max, "mem"),
        Err(NetError::FrameTooLarge {
            len: 4_294_967_295,
            ..
        })
    ));
}

#[test]
fn undecodable_bytes_are_decode_errors() {
    for (name, make) in TRANSPORTS {
        let (mut a, mut b) = make(&cfg());
        // Not a Point: the string length runs past the end.
        a.send_bytes(vec![1, 2, 200]).unwrap();
        match b.recv::<Point>().unwrap_err() {
            NetError::Decode(msg) => assert!(msg.contains("Point"), "{name}: {msg}"),
            other => panic!("{name}: expected Decode, got {other:?}"),
        }
        // A valid Point followed by trailing garbage.
        let mut bytes = ppml_net::encode(&Point {
            x: 1,
            y: -1,
            label: "p".into(),
        })
        .unwrap();
        bytes.push(0);
        a.send_bytes(bytes).unwrap();
        assert!(
            matches!(b.recv::<Point>(), Err(NetError::Decode(_))),
            "{name}"
        );
        // Invalid UTF-8 in a String.
        a.send_bytes(vec![2, 0xff, 0xfe]).unwrap();
        assert!(
            matches!(b.recv::<String>(), Err(NetError::Decode(_))),
            "{name}"
        );
        // A packed u64 frame whose length is not a multiple of 8.
        a.send_bytes(vec![0u8; 7]).unwrap();
        assert!(matches!(b.recv_u64s(), Err(NetError::Decode(_))), "{name}");
        // The channel keeps working after decode errors.
        a.send(&Point {
            x: 3,
            y: 4,
            label: "ok".into(),
        })
        .unwrap();
        assert_eq!(b.recv::<Point>().unwrap().label, "ok", "{name}");
    }
}

#[test]
fn accept_times_out_instead_of_blocking_forever() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = cfg().with_connect_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let err = ppml_net::tcp::accept(&listener, &config).unwrap_err();
    assert!(matches!(err, NetError::Timeout { .. }), "got {err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    // The listener is usable (and blocking) afterwards.
    let addr = listener.local_addr().unwrap();
    let c = std::thread::spawn(move || ppml_net::tcp::connect(addr, &cfg()).unwrap());
    let mut server = ppml_net::tcp::accept(&listener, &cfg()).unwrap();
    let mut client = c.join().unwrap();
    client.send("hi").unwrap();
    assert_eq!(server.recv::<String>().unwrap(), "hi");
}

#[test]
fn connect_times_out_when_nobody_listens() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // listener dropped: nothing listens there any more
    let config = cfg().with_connect_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let err = ppml_net::tcp::connect(port, &config).unwrap_err();
    assert!(matches!(err, NetError::Timeout { .. }), "got {err:?}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn connect_retries_until_the_peer_starts_listening() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let listener = TcpListener::bind(addr).unwrap();
        let mut ch = ppml_net::tcp::accept(&listener, &cfg()).unwrap();
        ch.recv::<u64>().unwrap()
    });
    let mut client = ppml_net::tcp::connect(addr, &cfg()).unwrap();
    client.send(&42u64).unwrap();
    assert_eq!(server.join().unwrap(), 42);
}

/// A value whose serialisation always fails.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to be encoded"))
    }
}

#[test]
fn encode_failures_are_encode_errors() {
    for (name, make) in TRANSPORTS {
        let (mut a, _b) = make(&cfg());
        match a.send(&Unencodable).unwrap_err() {
            NetError::Encode(msg) => assert!(msg.contains("Unencodable"), "{name}: {msg}"),
            other => panic!("{name}: expected Encode, got {other:?}"),
        }
        assert_eq!(a.stats().messages_sent, 0, "{name}");
    }
}

#[test]
fn tcp_write_times_out_when_the_peer_never_reads() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A raw peer that accepts but never reads, so the socket buffers fill up.
    let (_keep_tx, keep_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let _ = keep_rx.recv(); // hold the socket open until the test ends
        drop(s);
    });
    let timeout = Duration::from_millis(300);
    let mut ch = ppml_net::tcp::connect(addr, &cfg().with_timeout(timeout)).unwrap();
    let start = Instant::now();
    let err = ch.send_bytes(vec![0u8; 64 << 20]).unwrap_err();
    assert!(matches!(err, NetError::Timeout { .. }), "got {err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // The stream may be mid-frame: later sends fail rather than corrupt the stream.
    assert!(ch.send(&1u8).is_err());
    drop(_keep_tx);
    peer.join().unwrap();
}

#[test]
fn channels_and_networks_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Channel>();
    assert_send::<ppml_net::Network>();
    assert_send::<ppml_net::TcpTransport>();
}
