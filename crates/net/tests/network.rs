//! Full-mesh networks: in-memory and loopback TCP, party-level rounds, handshake checks.

use ppml_net::{
    ChannelStats, FrameLog, NetConfig, NetError, Network, RecordingTransport, Transport,
};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

fn cfg() -> NetConfig {
    NetConfig::default()
        .with_timeout(Duration::from_secs(10))
        .with_connect_timeout(Duration::from_secs(10))
}

/// Each party sends its id to every other party, then receives theirs, twice.
fn all_to_all(mut net: Network) -> (Vec<u64>, ppml_net::NetworkStats) {
    let me = net.me();
    let n = net.parties();
    let mut got = Vec::new();
    for round in 0..2u64 {
        for p in (0..n).filter(|&p| p != me) {
            net.send(p, &(me as u64 * 10 + round)).unwrap();
        }
        for p in (0..n).filter(|&p| p != me) {
            got.push(net.recv::<u64>(p).unwrap());
        }
    }
    (got, net.stats())
}

fn check_all_to_all(results: Vec<(Vec<u64>, ppml_net::NetworkStats)>) {
    let n = results.len();
    for (me, (got, stats)) in results.into_iter().enumerate() {
        let expect: Vec<u64> = (0..2u64)
            .flat_map(|r| {
                (0..n)
                    .filter(move |&p| p != me)
                    .map(move |p| p as u64 * 10 + r)
            })
            .collect();
        assert_eq!(got, expect, "party {me}");
        assert_eq!(stats.per_peer.len(), n);
        assert_eq!(stats.per_peer[me], ChannelStats::default());
        // Party-level: two rounds, although each sends to n-1 peers per round.
        assert_eq!(stats.total.rounds, 2, "party {me}");
        assert_eq!(stats.total.messages_sent, 2 * (n as u64 - 1));
        for (p, s) in stats.per_peer.iter().enumerate().filter(|&(p, _)| p != me) {
            assert_eq!(s.rounds, 2, "party {me} -> {p}");
            assert_eq!(s.bytes_sent, 2 * (1 + 4), "party {me} -> {p}");
        }
    }
}

#[test]
fn in_memory_mesh_of_three() {
    let nets = Network::in_memory(3, &cfg());
    let handles: Vec<_> = nets
        .into_iter()
        .map(|net| std::thread::spawn(move || all_to_all(net)))
        .collect();
    check_all_to_all(handles.into_iter().map(|h| h.join().unwrap()).collect());
}

#[test]
fn tcp_mesh_of_three_with_prebound_listeners() {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(me, l)| {
            let addrs = addrs.clone();
            std::thread::spawn(move || {
                let net = Network::tcp_with_listener(me, Some(&l), &addrs, &cfg()).unwrap();
                assert_eq!((net.me(), net.parties()), (me, 3));
                all_to_all(net)
            })
        })
        .collect();
    check_all_to_all(handles.into_iter().map(|h| h.join().unwrap()).collect());
}

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

#[test]
fn tcp_mesh_of_three_via_network_tcp() {
    let addrs = free_addrs(3);
    // Start the parties in reverse order: connectors must retry until listeners exist.
    let handles: Vec<_> = (0..3)
        .rev()
        .map(|me| {
            let addrs = addrs.clone();
            let h =
                std::thread::spawn(move || all_to_all(Network::tcp(me, &addrs, &cfg()).unwrap()));
            std::thread::sleep(Duration::from_millis(50));
            (me, h)
        })
        .collect();
    let mut results: Vec<_> = handles
        .into_iter()
        .map(|(me, h)| (me, h.join().unwrap()))
        .collect();
    results.sort_by_key(|(me, _)| *me);
    check_all_to_all(results.into_iter().map(|(_, r)| r).collect());
}

#[test]
fn bytes_match_between_in_memory_and_tcp_meshes() {
    let mem: Vec<_> = Network::in_memory(3, &cfg())
        .into_iter()
        .map(|net| std::thread::spawn(move || all_to_all(net).1))
        .collect();
    let mem: Vec<_> = mem.into_iter().map(|h| h.join().unwrap()).collect();
    let addrs = free_addrs(3);
    let tcp: Vec<_> = (0..3)
        .map(|me| {
            let addrs = addrs.clone();
            std::thread::spawn(move || all_to_all(Network::tcp(me, &addrs, &cfg()).unwrap()).1)
        })
        .collect();
    let tcp: Vec<_> = tcp.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(mem, tcp);
}

#[test]
fn channel_access_counts_toward_party_rounds() {
    let mut nets = Network::in_memory(3, &cfg());
    let mut p2 = nets.pop().unwrap();
    let mut p1 = nets.pop().unwrap();
    let mut p0 = nets.pop().unwrap();
    p0.channel(1).unwrap().send(&1u8).unwrap();
    p0.send(2, &2u8).unwrap(); // back to back: still round 1
    assert_eq!(p0.stats().total.rounds, 1);
    p1.recv::<u8>(0).unwrap();
    p1.send(0, &3u8).unwrap();
    p0.channel(1).unwrap().recv::<u8>().unwrap();
    p0.send_u64s(2, &[9]).unwrap(); // after a receive (from 1): round 2 for the party
    let s = p0.stats();
    assert_eq!(s.total.rounds, 2);
    assert_eq!(s.per_peer[1].rounds, 1);
    assert_eq!(s.per_peer[2].rounds, 1); // the channel to 2 never received
    assert_eq!(p2.recv::<u8>(0).unwrap(), 2);
    assert_eq!(p2.recv_u64s(0).unwrap(), vec![9]);
}

#[test]
fn unknown_peers_are_errors() {
    let mut nets = Network::in_memory(2, &cfg());
    let p0 = &mut nets[0];
    assert!(matches!(p0.send(0, &1u8), Err(NetError::UnknownPeer(0))));
    assert!(matches!(p0.recv::<u8>(5), Err(NetError::UnknownPeer(5))));
    assert!(matches!(p0.channel(2), Err(NetError::UnknownPeer(2))));
    assert!(matches!(
        Network::tcp(3, &free_addrs(2), &cfg()),
        Err(NetError::UnknownPeer(3))
    ));
}

#[test]
fn recording_transport_logs_what_each_party_received() {
    let logs: Vec<FrameLog> = (0..3).map(|_| FrameLog::default()).collect();
    let mut nets = Network::in_memory_with(3, &cfg(), |me, _peer, t| {
        Box::new(RecordingTransport::with_log(t, logs[me].clone())) as Box<dyn Transport>
    });
    nets[0].send(1, &7u64).unwrap();
    nets[0].send(2, &8u64).unwrap();
    nets[1].recv::<u64>(0).unwrap();
    nets[1].send_bytes(0, vec![1, 2, 3]).unwrap();
    nets[0].recv_bytes(1).unwrap();
    let seen = |i: usize| logs[i].lock().unwrap().clone();
    assert_eq!(seen(0), vec![vec![1, 2, 3]]);
    assert_eq!(seen(1), vec![ppml_net::encode(&7u64).unwrap()]);
    assert!(seen(2).is_empty(), "party 2 has not received yet");
    nets[2].recv::<u64>(0).unwrap();
    assert_eq!(seen(2), vec![ppml_net::encode(&8u64).unwrap()]);
}

/// Writes one raw hello frame (magic, version, from, to, n) to `addr`; keeps the socket open.
fn fake_hello(addr: SocketAddr, payload: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
    s.write_all(payload).unwrap();
    s
}

fn hello(from: u32, to: u32, n: u32) -> Vec<u8> {
    let mut v = b"PPML\x01".to_vec();
    for x in [from, to, n] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn party0_with_client(payload: Vec<u8>) -> NetError {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![l.local_addr().unwrap(), "127.0.0.1:9".parse().unwrap()];
    let _client = fake_hello(addrs[0], &payload);
    Network::tcp_with_listener(0, Some(&l), &addrs, &cfg()).unwrap_err()
}

#[test]
fn handshake_rejects_wrong_ids_and_garbage() {
    for (what, payload) in [
        ("claims to be party 0 (itself)", hello(0, 0, 2)),
        ("unknown party id 7", hello(7, 0, 2)),
        ("addressed to another party", hello(1, 1, 2)),
        ("different party count", hello(1, 0, 3)),
        ("not a hello", b"GET / HTTP/1.1".to_vec()),
    ] {
        let err = party0_with_client(payload);
        assert!(matches!(err, NetError::Handshake(_)), "{what}: got {err:?}");
    }
}

#[test]
fn handshake_rejects_duplicate_party() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![
        l.local_addr().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    ];
    let _a = fake_hello(addrs[0], &hello(1, 0, 3));
    std::thread::sleep(Duration::from_millis(50));
    let _b = fake_hello(addrs[0], &hello(1, 0, 3));
    let err = Network::tcp_with_listener(0, Some(&l), &addrs, &cfg()).unwrap_err();
    assert!(matches!(err, NetError::Handshake(_)), "got {err:?}");
}

#[test]
fn connector_rejects_a_reply_from_the_wrong_party() {
    // Party 1 connects to "party 0", which answers as if it were party 5.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![l.local_addr().unwrap(), "127.0.0.1:9".parse().unwrap()];
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut hdr = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut hdr).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(hdr) as usize];
        std::io::Read::read_exact(&mut s, &mut body).unwrap();
        let reply = hello(5, 1, 2);
        s.write_all(&(reply.len() as u32).to_le_bytes()).unwrap();
        s.write_all(&reply).unwrap();
        body
    });
    let err = Network::tcp_with_listener(1, None, &addrs, &cfg()).unwrap_err();
    assert!(matches!(err, NetError::Handshake(_)), "got {err:?}");
    assert_eq!(server.join().unwrap(), hello(1, 0, 2));
}
