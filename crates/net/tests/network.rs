//! Full-mesh networks: in-memory and loopback TCP, party-level rounds, handshake checks.

use ppml_net::session::{HANDSHAKE_VERSION, Hello, Reply};
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

/// Sends one raw frame to `addr` and returns the reply frame (if any).
fn raw_exchange(addr: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&(payload.len() as u32).to_le_bytes()).unwrap();
    s.write_all(payload).unwrap();
    let mut hdr = [0u8; 4];
    std::io::Read::read_exact(&mut s, &mut hdr).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(hdr) as usize];
    std::io::Read::read_exact(&mut s, &mut body).ok()?;
    Some(body)
}

fn hello(from: &str, to: &str, version: u16, protocol: &str) -> Vec<u8> {
    ppml_net::encode(&Hello {
        magic: *b"PPMS",
        version,
        protocol: protocol.into(),
        from: from.into(),
        to: to.into(),
        insecure: true,
    })
    .unwrap()
}

/// Bad hellos and garbage are refused with a reason (and logged); party 0 keeps
/// waiting, and the mesh completes when the real party 1 connects.
#[test]
fn bad_hellos_are_refused_and_the_mesh_still_completes() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![l.local_addr().unwrap(), l1.local_addr().unwrap()];
    drop(l1);
    let a2 = addrs.clone();
    let p0 = std::thread::spawn(move || {
        all_to_all(Network::tcp_with_listener(0, Some(&l), &a2, &cfg()).unwrap())
    });
    for (payload, reason) in [
        (
            hello("party-0", "party-0", HANDSHAKE_VERSION, "ppml-net-mesh"),
            "itself",
        ),
        (
            hello("party-7", "party-0", HANDSHAKE_VERSION, "ppml-net-mesh"),
            "not in the parties file",
        ),
        (
            hello("party-1", "party-1", HANDSHAKE_VERSION, "ppml-net-mesh"),
            "it asked for party-1",
        ),
        (
            hello("party-1", "party-0", 99, "ppml-net-mesh"),
            "handshake version 99",
        ),
        (
            hello("party-1", "party-0", HANDSHAKE_VERSION, "fedavg"),
            "protocol `fedavg`",
        ),
    ] {
        let reply = raw_exchange(addrs[0], &payload).expect("a reply");
        match ppml_net::decode::<Reply>(&reply).unwrap() {
            Reply::Refused(r) => assert!(r.contains(reason), "{r} should contain {reason}"),
            Reply::Accepted => panic!("accepted a bad hello ({reason})"),
        }
    }
    // Garbage gets no reply; the connection is dropped.
    assert!(raw_exchange(addrs[0], b"GET / HTTP/1.1").is_none());
    let p1 = std::thread::spawn(move || all_to_all(Network::tcp(1, &addrs, &cfg()).unwrap()));
    check_all_to_all(vec![p0.join().unwrap(), p1.join().unwrap()]);
}

#[test]
fn connector_rejects_a_reply_that_is_not_a_session_reply() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![l.local_addr().unwrap(), "127.0.0.1:9".parse().unwrap()];
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut hdr = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut hdr).unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(hdr) as usize];
        std::io::Read::read_exact(&mut s, &mut body).unwrap();
        s.write_all(&3u32.to_le_bytes()).unwrap();
        s.write_all(b"xyz").unwrap();
        body
    });
    let config = cfg().with_connect_timeout(Duration::from_millis(300));
    let err = Network::tcp_with_listener(1, None, &addrs, &config).unwrap_err();
    assert!(
        err.to_string().contains("bad reply") || matches!(err, NetError::Timeout { .. }),
        "got {err:?}"
    );
    let hello: Hello = ppml_net::decode(&server.join().unwrap()).unwrap();
    assert_eq!(
        (hello.from.as_str(), hello.to.as_str()),
        ("party-1", "party-0")
    );
}
