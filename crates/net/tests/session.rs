//! The session layer: TLS meshes with pinned certificates, impostors, stray,
//! silent and garbled connections, back-pressure.

use ppml_net::local::LocalDeployment;
use ppml_net::{NetConfig, NetError, Network, Session, load_identity};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn cfg() -> NetConfig {
    NetConfig::default()
        .with_timeout(Duration::from_secs(20))
        .with_connect_timeout(Duration::from_secs(20))
        .with_handshake_timeout(Duration::from_secs(2))
}

const NAMES: [&str; 3] = ["p0", "p1", "p2"];

fn session(d: &LocalDeployment, me: &str, config: NetConfig) -> Session {
    Session::tls(me, d.parties().unwrap(), &d.keys_dir(), "test", config).unwrap()
}

/// Every party sends a marker to every other and checks what it gets.
fn exchange(mut net: Network) -> Vec<u64> {
    let me = net.me();
    for p in (0..net.parties()).filter(|&p| p != me) {
        net.send_u64s(p, &[me as u64, 1000 + p as u64]).unwrap();
    }
    let mut got = Vec::new();
    for p in (0..net.parties()).filter(|&p| p != me) {
        let v = net.recv_u64s(p).unwrap();
        assert_eq!(v, vec![p as u64, 1000 + me as u64], "party {me} from {p}");
        got.push(v[0]);
    }
    got
}

fn run_mesh(d: &LocalDeployment, who: &[&str]) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    who.iter()
        .map(|me| {
            let s = session(d, me, cfg());
            std::thread::spawn(move || exchange(Network::mesh(&s, &NAMES).unwrap()))
        })
        .collect()
}

#[test]
fn tls_mesh_of_three() {
    let d = LocalDeployment::new(&NAMES).unwrap();
    for h in run_mesh(&d, &NAMES) {
        assert_eq!(h.join().unwrap().len(), 2);
    }
}

#[test]
fn large_frames_both_ways_over_tls() {
    // Both send 24 MB before receiving: must not deadlock (reader threads) and
    // must arrive intact.
    let d = LocalDeployment::new(&["a", "b"]).unwrap();
    let names = ["a", "b"];
    let hs: Vec<_> = names
        .iter()
        .map(|me| {
            let s = session(&d, me, cfg());
            std::thread::spawn(move || {
                let mut net = Network::mesh(&s, &names).unwrap();
                let other = 1 - net.me();
                let v: Vec<u64> = (0..3_000_000u64).map(|i| i * 7 + net.me() as u64).collect();
                net.send_u64s(other, &v).unwrap();
                let got = net.recv_u64s(other).unwrap();
                assert_eq!(got.len(), v.len());
                assert!(
                    got.iter()
                        .enumerate()
                        .all(|(i, &x)| x == i as u64 * 7 + other as u64)
                );
                net.stats()
            })
        })
        .collect();
    for h in hs {
        let s = h.join().unwrap();
        assert_eq!(s.total.bytes_sent, 24_000_000 + 4);
    }
}

/// An impostor with its own key for `victim` connects to p0 first. It must be
/// refused with an error naming `victim` and the reason; the real parties must
/// still complete.
#[test]
fn impostor_is_refused_and_the_real_party_completes() {
    let d = LocalDeployment::new(&NAMES).unwrap();
    // p0 starts listening and waits for p1 and p2.
    let s0 = session(&d, "p0", cfg());
    let p0 = std::thread::spawn(move || exchange(Network::mesh(&s0, &NAMES).unwrap()));
    // The impostor of p1: its own key, and a parties file naming its own certificate.
    let dir = d.impostor_keys("p1").unwrap();
    let fake_parties = d.impostor_parties("p1", &dir).unwrap();
    let fake_id = load_identity("p1", &dir, &fake_parties).unwrap();
    let fake = Session::with_identity(fake_id, fake_parties, "test", cfg()).unwrap();
    let err = fake.connect("p0").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NetError::Refused { .. }), "{err:?}");
    assert!(
        msg.contains("p1") && msg.contains("not p1's pinned certificate"),
        "{msg}"
    );
    // Now the real p1 and p2 arrive: everybody completes.
    for h in run_mesh(&d, &["p1", "p2"]) {
        assert_eq!(h.join().unwrap().len(), 2);
    }
    assert_eq!(p0.join().unwrap().len(), 2);
}

/// A server with the wrong key at p0's address is not accepted by p1: it
/// keeps retrying, then fails naming p0 and the certificate mismatch.
#[test]
fn connecting_party_rejects_a_server_with_the_wrong_certificate() {
    let d = LocalDeployment::new(&NAMES).unwrap();
    let dir = d.impostor_keys("p0").unwrap();
    let fake_parties = d.impostor_parties("p0", &dir).unwrap();
    let fake_id = load_identity("p0", &dir, &fake_parties).unwrap();
    let fake = Session::with_identity(fake_id, fake_parties, "test", cfg()).unwrap();
    let _acceptor = fake.listen().unwrap();
    let s1 = session(
        &d,
        "p1",
        cfg().with_connect_timeout(Duration::from_millis(800)),
    );
    let err = s1.connect("p0").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NetError::Auth { .. }), "{err:?}");
    assert!(msg.contains("not p0's pinned certificate"), "{msg}");
}

#[test]
fn stray_silent_and_garbage_connections_do_not_stop_the_mesh() {
    let d = LocalDeployment::new(&NAMES).unwrap();
    let s0 = session(&d, "p0", cfg());
    let start = Instant::now();
    let p0 = std::thread::spawn(move || exchange(Network::mesh(&s0, &NAMES).unwrap()));
    let addr = d.addresses[0].clone();
    // Wait until p0 listens.
    let mut silent = loop {
        if let Ok(s) = TcpStream::connect(&addr) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut huge = TcpStream::connect(&addr).unwrap();
    huge.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff]).unwrap();
    huge.write_all(&[0u8; 1000]).unwrap();
    // The real parties arrive while those three are still open.
    for h in run_mesh(&d, &["p1", "p2"]) {
        assert_eq!(h.join().unwrap().len(), 2);
    }
    assert_eq!(p0.join().unwrap().len(), 2);
    // Done well before the silent connection's handshake deadline held anything up.
    assert!(start.elapsed() < Duration::from_secs(15));
    silent.write_all(b"").unwrap();
}

#[test]
fn plaintext_peer_is_refused_by_a_tls_party() {
    let d = LocalDeployment::new(&["a", "b"]).unwrap();
    let a = session(&d, "a", cfg());
    let mut acc = a.listen().unwrap();
    let insecure = Session::insecure(
        "b",
        d.parties().unwrap(),
        "test",
        cfg().with_connect_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    assert!(insecure.connect("a").is_err());
    assert!(acc.next(Duration::from_millis(200)).unwrap().is_none());
}

#[test]
fn wrong_protocol_is_refused_with_the_reason() {
    let d = LocalDeployment::new(&["a", "b"]).unwrap();
    let a = session(&d, "a", cfg());
    let _acc = a.listen().unwrap();
    let b = Session::tls("b", d.parties().unwrap(), &d.keys_dir(), "other", cfg()).unwrap();
    let err = b.connect("a").unwrap_err().to_string();
    assert!(err.contains("protocol `other`"), "{err}");
}

#[test]
fn key_of_another_party_is_a_config_error() {
    let d = LocalDeployment::new(&["a", "b"]).unwrap();
    std::fs::copy(d.keys_dir().join("b.key"), d.dir.join("a.key")).unwrap();
    let err = load_identity("a", &d.dir, &d.parties().unwrap()).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn keygen_never_overwrites_a_key() {
    let d = LocalDeployment::new(&["a"]).unwrap();
    let err = ppml_net::keygen("a", &d.keys_dir()).unwrap_err();
    assert!(err.to_string().contains("never overwritten"), "{err}");
}

/// Accepting many named clients concurrently, in any order, with a late joiner.
#[test]
fn server_accepts_named_clients_and_a_late_joiner() {
    let names = ["server", "client-0", "client-1", "client-2"];
    let d = LocalDeployment::new(&names).unwrap();
    let server = session(&d, "server", cfg());
    let mut acc = server.listen().unwrap();
    let spawn = |name: &'static str| {
        let s = session(&d, name, cfg());
        std::thread::spawn(move || {
            let mut ch = s.connect("server").unwrap();
            ch.send(&name.to_string()).unwrap();
            ch.recv::<String>().unwrap()
        })
    };
    let c2 = spawn("client-2");
    let c0 = spawn("client-0");
    let mut chans = acc
        .accept(&["client-0", "client-2"], Duration::from_secs(20))
        .unwrap();
    for (ch, n) in chans.iter_mut().zip(["client-0", "client-2"]) {
        assert_eq!(ch.recv::<String>().unwrap(), n);
        ch.send(&format!("hi {n}")).unwrap();
    }
    assert_eq!(c0.join().unwrap(), "hi client-0");
    assert_eq!(c2.join().unwrap(), "hi client-2");
    let c1 = spawn("client-1");
    let (name, mut ch) = acc.next(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(name, "client-1");
    assert_eq!(ch.recv::<String>().unwrap(), "client-1");
    ch.send(&"late".to_string()).unwrap();
    assert_eq!(c1.join().unwrap(), "late");
}

/// A peer that floods frames nobody reads is stopped by back-pressure: its
/// writes block (and time out) after about the queue budget plus the socket
/// buffers, not after everything it wanted to send.
#[test]
fn flooding_peer_is_pushed_back() {
    let d = LocalDeployment::new(&["a", "b"]).unwrap();
    let budget = 1 << 20;
    let a = session(&d, "a", cfg().with_queue_bytes(budget));
    let mut acc = a.listen().unwrap();
    let b = session(&d, "b", cfg().with_timeout(Duration::from_secs(2)));
    let flooder = std::thread::spawn(move || {
        let mut ch = b.connect("a").unwrap();
        let frame = vec![7u8; 256 << 10];
        let mut sent = 0usize;
        for _ in 0..2000 {
            if ch.send_bytes(frame.clone()).is_err() {
                return (sent, true);
            }
            sent += frame.len();
        }
        (sent, false)
    });
    let _victim = acc.accept(&["b"], Duration::from_secs(20)).unwrap();
    let (sent, blocked) = flooder.join().unwrap();
    assert!(blocked, "the flood of 500 MB was never pushed back");
    // Queue budget + kernel socket buffers (a few MB on loopback).
    assert!(
        sent < 64 << 20,
        "{sent} bytes got through before back-pressure"
    );
}

/// A peer that trickles one byte every 200 ms never completes a handshake; it
/// is cut off at the handshake deadline (1 s here) although every single read
/// finishes within the socket timeout.
#[test]
fn trickling_peer_is_cut_off_at_the_handshake_deadline() {
    let d = LocalDeployment::new(&["a", "b"]).unwrap();
    let a = session(
        &d,
        "a",
        cfg().with_handshake_timeout(Duration::from_secs(1)),
    );
    let _acc = a.listen().unwrap();
    let mut s = TcpStream::connect(&d.addresses[0]).unwrap();
    let start = Instant::now();
    let mut cut = None;
    // A TLS record header announcing a long record, then one byte at a time.
    let _ = s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]);
    while start.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(200));
        if s.write_all(&[0u8]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
    }
    let cut = cut.expect("the trickling peer was never cut off");
    assert!(cut < Duration::from_secs(4), "cut off after {cut:?}");
}
