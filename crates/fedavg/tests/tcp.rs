//! Federated averaging over loopback TCP: a client that disconnects and a
//! client that stalls are dropped and reported, and the round goes on with
//! the others within the round timeout.

use ppml_fedavg::net::{NetServerConfig, Setup, ToClient, ToServer, run_client, run_server};
use ppml_fedavg::{FedConfig, LocalConfig, WeightedAverage};
use ppml_net::NetConfig;
use ppml_nn::{Dataset, Layer, Linear, Model};
use rand::SeedableRng;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Two classes of 4x4 images: class 1 has a bright top half.
fn toy_data(n: usize, offset: usize) -> Dataset {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let c = ((i + offset) % 2) as u8;
        let jitter = ((i * 37 % 11) as f32) / 50.0;
        for p in 0..16 {
            let top = p < 8;
            let v = if (c == 1) == top {
                0.8 + jitter
            } else {
                0.1 + jitter
            };
            images.push(v);
        }
        labels.push(c);
    }
    Dataset::new(images, labels, 4, 4).unwrap()
}

fn toy_model() -> Model {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    Model {
        arch: "toy-16-2".into(),
        layers: vec![Layer::Linear(Linear::new(16, 2, &mut rng))],
        input_shape: vec![16],
    }
}

/// A client that joins with id `id`, then misbehaves on the first round.
fn faulty_client(
    addr: String,
    id: u32,
    stall: Option<mpsc::Receiver<()>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let cfg = NetConfig::default().with_timeout(Duration::from_secs(10));
        let mut ch = ppml_net::tcp::connect(addr.as_str(), &cfg).unwrap();
        ch.send(&ToServer::Hello {
            requested_id: Some(id),
        })
        .unwrap();
        let w: ToClient = ch.recv().unwrap();
        assert!(matches!(w, ToClient::Welcome { id: got, .. } if got == id));
        ch.send(&ToServer::Ready { examples: 20 }).unwrap();
        let t: ToClient = ch.recv().unwrap();
        assert!(matches!(t, ToClient::Train { round: 1, .. }));
        let _params = ch.recv_bytes().unwrap();
        if let Some(rx) = stall {
            // Keep the connection open without answering until the test ends.
            let _ = rx.recv_timeout(Duration::from_secs(20));
        }
        // Otherwise: drop the connection mid-round.
    })
}

#[test]
fn dropped_and_stalled_clients_do_not_stall_the_round() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let model = toy_model();
    let cfg = NetServerConfig {
        fed: FedConfig {
            fraction: 1.0,
            rounds: 3,
            local: LocalConfig {
                epochs: 2,
                batch: 5,
                lr: 0.5,
                ..LocalConfig::default()
            },
            seed: 9,
            ..FedConfig::default()
        },
        setup: Setup {
            arch: "toy".into(),
            num_params: model.num_params() as u64,
            partition: "iid".into(),
            partition_clients: 4,
            seed: 9,
            normalization: "unit".into(),
        },
        expected_clients: 4,
        join_timeout: Duration::from_secs(10),
        round_timeout: Duration::from_millis(1500),
    };
    let test = toy_data(40, 0);
    let mut good = Vec::new();
    for id in 0..2u32 {
        let addr = addr.clone();
        good.push(std::thread::spawn(move || {
            let net = NetConfig::default().with_timeout(Duration::from_secs(20));
            run_client(
                addr.as_str(),
                Some(id),
                &net,
                &mut |setup, got| {
                    assert_eq!(got, id);
                    assert_eq!(setup.partition_clients, 4);
                    Ok((toy_model(), toy_data(30 + 10 * id as usize, id as usize)))
                },
                &mut |_, _| {},
            )
        }));
    }
    let (stop_tx, stop_rx) = mpsc::channel();
    let quitter = faulty_client(addr.clone(), 2, None);
    let staller = faulty_client(addr.clone(), 3, Some(stop_rx));

    let before = toy_model().evaluate(&test);
    let t0 = Instant::now();
    let mut events = Vec::new();
    let summary = run_server(
        &listener,
        model,
        &cfg,
        Some(&test),
        Box::new(WeightedAverage),
        &mut |_| {},
        &mut |e| events.push(e.to_string()),
    )
    .unwrap();
    let elapsed = t0.elapsed();
    stop_tx.send(()).unwrap();
    quitter.join().unwrap();
    staller.join().unwrap();

    assert_eq!(summary.rounds.len(), 3);
    let r1 = &summary.rounds[0];
    assert_eq!(r1.sampled, vec![0, 1, 2, 3]);
    let mut dropped = r1.dropped.clone();
    dropped.sort();
    assert_eq!(dropped, vec![2, 3], "events: {events:?}");
    assert_eq!(r1.drop_reasons.len(), 2);
    assert!(
        r1.drop_reasons.iter().any(|r| r.contains("timed out")),
        "{:?}",
        r1.drop_reasons
    );
    assert!(
        r1.drop_reasons.iter().any(|r| r.contains("disconnected")),
        "{:?}",
        r1.drop_reasons
    );
    // The stalled client costs one round timeout, not a hang.
    assert!(r1.seconds < 5.0, "round 1 took {} s", r1.seconds);
    assert!(elapsed < Duration::from_secs(15), "run took {elapsed:?}");
    for r in &summary.rounds[1..] {
        assert_eq!(r.sampled, vec![0, 1]);
        assert!(r.dropped.is_empty());
        assert!(r.bytes > 0);
    }
    assert!(
        summary.final_accuracy() >= 0.9,
        "accuracy {} (untrained {before})",
        summary.final_accuracy()
    );
    let loss: Vec<f64> = summary.rounds.iter().map(|r| r.train_loss).collect();
    assert!(loss[2] < loss[0], "training loss did not fall: {loss:?}");
    for g in good {
        let s = g.join().unwrap().unwrap();
        assert_eq!(s.rounds_trained, 3);
        assert_eq!(s.rounds_total, 3);
        assert!(s.stats.bytes_received > 0);
    }
}

#[test]
fn too_few_clients_is_a_clear_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let model = toy_model();
    let cfg = NetServerConfig {
        fed: FedConfig {
            rounds: 1,
            ..FedConfig::default()
        },
        setup: Setup {
            arch: "toy".into(),
            num_params: model.num_params() as u64,
            partition: "iid".into(),
            partition_clients: 2,
            seed: 1,
            normalization: "unit".into(),
        },
        expected_clients: 2,
        join_timeout: Duration::from_millis(300),
        round_timeout: Duration::from_millis(300),
    };
    let t0 = Instant::now();
    let r = run_server(
        &listener,
        model,
        &cfg,
        None,
        Box::new(WeightedAverage),
        &mut |_| {},
        &mut |_| {},
    );
    assert!(r.is_err());
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_rejected_join_does_not_count_and_the_server_keeps_accepting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let model = toy_model();
    let cfg = NetServerConfig {
        fed: FedConfig {
            fraction: 1.0,
            rounds: 1,
            local: LocalConfig {
                batch: 5,
                lr: 0.5,
                ..LocalConfig::default()
            },
            ..FedConfig::default()
        },
        setup: Setup {
            arch: "toy".into(),
            num_params: model.num_params() as u64,
            partition: "iid".into(),
            partition_clients: 2,
            seed: 1,
            normalization: "unit".into(),
        },
        expected_clients: 2,
        join_timeout: Duration::from_secs(10),
        round_timeout: Duration::from_secs(5),
    };
    let spawn = |id: u32, delay_ms: u64| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            let net = NetConfig::default().with_timeout(Duration::from_secs(10));
            run_client(
                addr.as_str(),
                Some(id),
                &net,
                &mut |_, _| Ok((toy_model(), toy_data(20, 0))),
                &mut |_, _| {},
            )
        })
    };
    let first = spawn(0, 0);
    let duplicate = spawn(0, 300); // id 0 is taken: turned away
    let out_of_range = spawn(7, 600); // only 2 parts: turned away
    let second = spawn(1, 900);
    let mut events = Vec::new();
    let summary = run_server(
        &listener,
        model,
        &cfg,
        None,
        Box::new(WeightedAverage),
        &mut |_| {},
        &mut |e| events.push(e.to_string()),
    )
    .unwrap();
    assert_eq!(summary.rounds[0].sampled, vec![0, 1], "{events:?}");
    assert!(first.join().unwrap().is_ok());
    assert!(second.join().unwrap().is_ok());
    assert!(duplicate.join().unwrap().is_err());
    assert!(out_of_range.join().unwrap().is_err());
    assert_eq!(
        events
            .iter()
            .filter(|e| e.contains("failed to join"))
            .count(),
        2,
        "{events:?}"
    );
}
