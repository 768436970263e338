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

pub const TRANSPORTS: [(&str, PairFn); 2] = [("in-memory", mem_pair), ("tcp", tcp_pair)];
