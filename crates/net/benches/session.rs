//! Handshake cost: a full mesh of the five SMPC roles (p0, p1, p2, model-owner,
//! data-owner) as threads over loopback, TLS 1.3 with pinned certificates vs
//! plaintext sessions. Each iteration binds fresh listeners and makes all ten
//! links (TCP connect + TLS handshake + session hello).
//! `cargo bench -p ppml-net --bench session`

use criterion::{Criterion, criterion_group, criterion_main};
use ppml_net::local::LocalDeployment;
use ppml_net::{NetConfig, Network, Parties, Session};
use std::net::TcpListener;
use std::path::Path;

const NAMES: [&str; 5] = ["p0", "p1", "p2", "model-owner", "data-owner"];

fn mesh(d: &LocalDeployment, tls: bool) {
    let listeners: Vec<TcpListener> = NAMES
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut toml = String::new();
    for (n, l) in NAMES.iter().zip(&listeners) {
        toml.push_str(&format!(
            "[[party]]\nname = \"{n}\"\naddress = \"{}\"\ncertificate = \"{}\"\n\n",
            l.local_addr().unwrap(),
            d.keys_dir().join(format!("{n}.crt")).display()
        ));
    }
    let parties = Parties::parse(&toml, Path::new("."), true).unwrap();
    let hs: Vec<_> = NAMES
        .iter()
        .zip(listeners)
        .map(|(me, l)| {
            let s = if tls {
                Session::tls(
                    me,
                    parties.clone(),
                    &d.keys_dir(),
                    "bench",
                    NetConfig::default(),
                )
            } else {
                Session::insecure(me, parties.clone(), "bench", NetConfig::default())
            }
            .unwrap();
            std::thread::spawn(move || {
                let acc = if *me == "data-owner" {
                    None
                } else {
                    Some(s.listen_on(l).unwrap())
                };
                Network::mesh_with(&s, &NAMES, acc).unwrap()
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let d = LocalDeployment::new(&NAMES).unwrap();
    let mut g = c.benchmark_group("five-role mesh");
    g.sample_size(20);
    g.bench_function("tls", |b| b.iter(|| mesh(&d, true)));
    g.bench_function("insecure", |b| b.iter(|| mesh(&d, false)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
