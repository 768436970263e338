//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use ppml_net::{Channel, NetConfig, in_memory_pair, tcp};
use std::net::TcpListener;

pub type PairFn = fn(&NetConfig) -> (Channel, Channel);

pub fn mem_pair(config: &NetConfig) -> (Channel, Channel) {
    in_memory_pair(config)
}

/// A real loopback TCP pair: (connecting side, accepting side).
pub fn tcp_pair(config: &NetConfig) -> (Channel, Channel) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let cfg = config.clone();
    let client = std::thread::spawn(move || tcp::connect(addr, &cfg).expect("connect"));
    let server = tcp::accept(&listener, config).expect("accept");
    (client.join().expect("connect thread"), server)
}

/// A loopback pair over TLS sessions (fresh keys): (connecting side, accepting side).
pub fn tls_pair(config: &NetConfig) -> (Channel, Channel) {
    let d = ppml_net::local::LocalDeployment::new(&["a", "b"]).expect("keys");
    let sa = ppml_net::Session::tls(
        "a",
        d.parties().unwrap(),
        &d.keys_dir(),
        "pair",
        config.clone(),
    )
    .expect("session a");
    let sb = ppml_net::Session::tls(
        "b",
        d.parties().unwrap(),
        &d.keys_dir(),
        "pair",
        config.clone(),
    )
    .expect("session b");
    let mut acc = sa.listen().expect("listen");
    let client = std::thread::spawn(move || sb.connect("a").expect("connect"));
    let server = acc
        .accept(&["b"], config.connect_timeout)
        .expect("accept")
        .pop()
        .unwrap();
    (client.join().expect("connect thread"), server)
}

pub const TRANSPORTS: [(&str, PairFn); 2] = [("in-memory", mem_pair), ("tcp", tcp_pair)];

/// Every transport, TLS included.
pub const ALL_TRANSPORTS: [(&str, PairFn); 3] = [
    ("in-memory", mem_pair),
    ("tcp", tcp_pair),
    ("tls", tls_pair),
];
