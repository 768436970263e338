//! The same roles over TCP on loopback: results equal the in-process run, and
//! a party that dies makes the others fail with a clear error, not hang.

use ppml_net::{NetConfig, Network};
use ppml_nn::Model;
use ppml_smpc::inference::{RoleInput, run_tcp_role};
use ppml_smpc::party::{DATA_OWNER, MODEL_OWNER, P2, Party, ProtocolConfig};
use ppml_smpc::{InferConfig, SecretSource, SmpcError, run_in_process, sim};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

fn listeners() -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let ls: Vec<TcpListener> = (0..5)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
    (ls, addrs)
}

fn images(count: usize) -> Vec<f32> {
    (0..count * 784)
        .map(|i| ((i * 31) % 97) as f32 / 40.0 - 0.4)
        .collect()
}

#[test]
fn tcp_run_matches_in_process_run() {
    let model = Model::from_arch("net-a", 5).unwrap();
    let count = 12;
    let imgs = images(count);
    let labels = vec![0u8; count];
    let (ls, addrs) = listeners();
    let results: Vec<Result<(Vec<u8>, ppml_net::NetworkStats), SmpcError>> =
        std::thread::scope(|s| {
            let hs: Vec<_> = ls
                .iter()
                .enumerate()
                .map(|(id, l)| {
                    let (addrs, model, imgs) = (&addrs, &model, &imgs);
                    s.spawn(move || {
                        let input = match id {
                            MODEL_OWNER => RoleInput::Model(model),
                            DATA_OWNER => RoleInput::Data {
                                images: imgs,
                                batch: 5,
                            },
                            _ => RoleInput::Computing,
                        };
                        run_tcp_role(
                            id,
                            addrs,
                            Some(l),
                            &input,
                            ProtocolConfig::default(),
                            Duration::from_secs(20),
                            SecretSource::InsecureDeterministic(3),
                        )
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
    let outs: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    let cfg = InferConfig {
        batch: 5,
        secrets: SecretSource::InsecureDeterministic(3),
        ..Default::default()
    };
    let local = run_in_process(&model, &imgs, &labels, &cfg).unwrap();
    assert_eq!(outs[DATA_OWNER].0, local.predictions);
    // Same protocol, same bytes (the TCP handshake is not counted).
    for (id, out) in outs.iter().enumerate() {
        assert_eq!(
            out.1.total.bytes_sent, local.parties[id].bytes_sent,
            "role {id}"
        );
    }
}

#[test]
fn a_dead_party_makes_the_others_fail_quickly() {
    let model = Model::from_arch("net-a", 5).unwrap();
    let imgs = images(10);
    let (ls, addrs) = listeners();
    let timeout = Duration::from_secs(3);
    let start = Instant::now();
    let results: Vec<Result<(), SmpcError>> = std::thread::scope(|s| {
        let hs: Vec<_> = ls
            .iter()
            .enumerate()
            .map(|(id, l)| {
                let (addrs, model, imgs) = (&addrs, &model, &imgs);
                s.spawn(move || {
                    if id == P2 {
                        // P2 connects, agrees on seeds, then dies.
                        let cfg = NetConfig::default().with_timeout(timeout);
                        let net = Network::tcp_with_listener(id, Some(l), addrs, &cfg)?;
                        let _party = Party::setup(
                            net,
                            ProtocolConfig::default(),
                            &mut sim::party_rng(SecretSource::InsecureDeterministic(1), id),
                        )?;
                        return Ok(());
                    }
                    let input = match id {
                        MODEL_OWNER => RoleInput::Model(model),
                        DATA_OWNER => RoleInput::Data {
                            images: imgs,
                            batch: 5,
                        },
                        _ => RoleInput::Computing,
                    };
                    run_tcp_role(
                        id,
                        addrs,
                        Some(l),
                        &input,
                        ProtocolConfig::default(),
                        timeout,
                        SecretSource::InsecureDeterministic(1),
                    )
                    .map(|_| ())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    for id in [0, 1, DATA_OWNER] {
        let err = results[id].as_ref().expect_err("must fail without p2");
        let msg = err.to_string();
        assert!(msg.contains("network"), "role {id}: {msg}");
    }
    assert!(elapsed < timeout * 4, "took {elapsed:?}");
}
