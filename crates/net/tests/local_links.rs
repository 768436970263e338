//! Parties that share a process talk over in-memory channels; the others
//! over the session's TLS links, in the same mesh.

use ppml_net::local::LocalDeployment;
use ppml_net::{NetConfig, NetError, Network, Session};
use std::time::Duration;

const NAMES: [&str; 4] = ["p0", "p1", "p2", "p3"];

fn cfg() -> NetConfig {
    NetConfig::default()
        .with_timeout(Duration::from_secs(20))
        .with_connect_timeout(Duration::from_secs(20))
        .with_handshake_timeout(Duration::from_secs(2))
}

fn session(d: &LocalDeployment, me: &str) -> Session {
    Session::tls(me, d.parties().unwrap(), &d.keys_dir(), "test", cfg()).unwrap()
}

/// Every party sends a marker to every other and checks what it gets;
/// returns, per peer, whether the link stayed in the process.
fn exchange(mut net: Network) -> Vec<(usize, bool)> {
    let me = net.me();
    let peers: Vec<usize> = (0..net.parties()).filter(|&p| p != me).collect();
    for &p in &peers {
        net.send_u64s(p, &[me as u64, 1000 + p as u64]).unwrap();
    }
    for &p in &peers {
        let v = net.recv_u64s(p).unwrap();
        assert_eq!(v, vec![p as u64, 1000 + me as u64], "party {me} from {p}");
    }
    let stats = net.stats();
    for &p in &peers {
        // Local links count their traffic like the others: 16 bytes of
        // payload plus the 4-byte frame header each way.
        assert_eq!(stats.per_peer[p].bytes_sent, 20, "party {me} to {p}");
    }
    peers.iter().map(|&p| (p, net.in_process(p))).collect()
}

#[test]
fn co_located_parties_use_memory_and_the_rest_tls() {
    let d = LocalDeployment::new(&NAMES).unwrap();
    // p1 and p3 share a process (a peer on each side of p2 in mesh order, so
    // both the connecting and the accepting paths skip the local peer); p0
    // and p2 run alone.
    let members = [1, 3];
    let local = Network::local_links(&NAMES, &members, &cfg()).unwrap();
    let mut handles = Vec::new();
    for (&m, links) in members.iter().zip(local) {
        let s = session(&d, NAMES[m]);
        handles.push((
            m,
            std::thread::spawn(move || {
                exchange(Network::mesh_with_local(&s, &NAMES, None, links).unwrap())
            }),
        ));
    }
    for m in [0, 2] {
        let s = session(&d, NAMES[m]);
        handles.push((
            m,
            std::thread::spawn(move || exchange(Network::mesh(&s, &NAMES).unwrap())),
        ));
    }
    for (m, h) in handles {
        for (p, in_process) in h.join().unwrap() {
            let expect = members.contains(&m) && members.contains(&p);
            assert_eq!(in_process, expect, "link {m} -> {p}");
        }
    }
}

#[test]
fn local_links_refuse_a_party_twice_or_out_of_range() {
    assert!(matches!(
        Network::local_links(&NAMES, &[1, 1], &cfg()),
        Err(NetError::Config(m)) if m.contains("p1 is listed twice")
    ));
    assert!(matches!(
        Network::local_links(&NAMES, &[0, 4], &cfg()),
        Err(NetError::UnknownPeer(4))
    ));
    // One member: no channel at all.
    let one = Network::local_links(&NAMES, &[2], &cfg()).unwrap();
    assert!(one[0].iter().all(Option::is_none));
}

#[test]
fn a_local_channel_to_oneself_is_a_config_error() {
    let d = LocalDeployment::new(&NAMES).unwrap();
    let mut links = Network::local_links(&NAMES, &[0, 1], &cfg()).unwrap();
    // Party p0's channel to p1, handed to p1 as if it led to itself.
    let wrong = links.remove(0);
    let s = session(&d, "p1");
    let err = Network::mesh_with_local(&s, &NAMES, None, wrong).unwrap_err();
    assert!(
        matches!(&err, NetError::Config(m) if m.contains("to itself")),
        "{err}"
    );
}
