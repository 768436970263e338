//! Split learning against the unsplit model, hostile peers, and disconnects.

use ppml_net::{Channel, NetConfig, in_memory_pair, tcp};
use ppml_nn::{Dataset, Model, Sgd, TrainConfig, Workspace, train_epoch};
use ppml_splitnn::wire::{
    self, Control, Expect, Hello, PROTOCOL_VERSION, TensorKind, Variant, encode_tensor,
};
use ppml_splitnn::{
    DataHolder, Images, LabelHolder, MiddleServer, RemoteConfig, SplitConfig, SplitError,
    split_parts, train_in_process,
};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::TcpListener;
use std::time::Duration;

fn net() -> NetConfig {
    NetConfig::default()
        .with_timeout(Duration::from_secs(10))
        .with_connect_timeout(Duration::from_secs(10))
}

/// A synthetic, learnable data set: class `c` brightens band `c` of the image, plus noise.
fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c: u8 = rng.random_range(0..10);
        for p in 0..784 {
            let band = (p / 78).min(9) as u8;
            let base = if band == c { 0.8 } else { 0.0 };
            images.push(base + rng.random_range(0.0..0.3f32));
        }
        labels.push(c);
    }
    Dataset::new(images, labels, 28, 28).unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1e-3 + x.abs().max(y.abs())))
        .fold(0.0, f32::max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    /// Direct check: bottom forward, top loss+backward, the cut gradient fed to the bottom's
    /// backward gives exactly the unsplit model's gradients (both variants' cuts).
    #[test]
    fn split_gradients_equal_unsplit(seed in 0u64..1000, batch in 1usize..24) {
        let data = synthetic(batch, seed);
        let full = Model::from_arch("split", seed).unwrap();
        let (_, want) = full.loss_and_grad(&data.images, &data.labels, batch);
        for cut in [2usize, 4] {
            let (bottom, top) = full.clone().split_at(cut).unwrap();
            let cache_b = bottom.forward_train(&data.images, batch);
            let (_, g_top) = top.loss_and_grad(cache_b.output(), &data.labels, batch);
            // The cut gradient, as the top would send it.
            let cache_t = top.forward_train(cache_b.output(), batch);
            let out = top.output_size();
            let mut dl = vec![0.0; batch * out];
            ppml_nn::loss_grad(cache_t.output(), &data.labels, batch, out, &mut dl);
            let (g_top2, g_cut) = top.backward(&cache_t, &dl);
            prop_assert_eq!(&g_top.flat, &g_top2.flat);
            let (g_bottom, _) = bottom.backward(&cache_b, &g_cut);
            let mut got = g_bottom.flat.clone();
            got.extend_from_slice(&g_top.flat);
            prop_assert!(max_rel_diff(&got, &want.flat) < 1e-4, "cut {}", cut);
        }
    }
}

/// End to end through the channels: a split run (both variants) updates the parameters
/// exactly as ppml-nn's unsplit `train_epoch` on the same order of samples.
#[test]
fn split_training_equals_unsplit_training() {
    let data = synthetic(150, 3);
    let test = synthetic(40, 4);
    let cfg = SplitConfig {
        epochs: 2,
        batch: 32,
        lr: 0.05,
        shuffle_seed: 9,
        eval_chunk: 16,
        ..SplitConfig::default()
    };
    // The unsplit reference.
    let mut full = Model::from_arch("split", 5).unwrap();
    let tc = TrainConfig {
        epochs: 2,
        batch: 32,
        lr: 0.05,
        momentum: 0.0,
        ..TrainConfig::default()
    };
    let mut opt = Sgd::new(0.05, 0.0);
    let mut ws = Workspace::new();
    // The order both parties agree on: the data holder's share mixed with the label
    // holder's (in process, both shares come from the same --seed).
    let mut rng = ppml_splitnn::order_rng(ppml_splitnn::wire::joint_shuffle_seed(
        ppml_splitnn::holder_shuffle_seed(9, 0),
        9,
    ));
    let mut losses = Vec::new();
    for e in 0..2 {
        let st = train_epoch(
            &mut full,
            &data,
            &tc,
            e,
            &mut opt,
            &mut ws,
            &mut rng,
            &mut |_, _, _| {},
        )
        .unwrap();
        losses.push(st.mean_loss as f64);
    }
    let want = full.params_flat();
    let acc = full.evaluate(&test);
    for variant in [Variant::Vanilla, Variant::UShaped] {
        let cfg = SplitConfig {
            variant,
            ..cfg.clone()
        };
        let run = train_in_process(&data, &test, &cfg, 5, &mut |_| {}).unwrap();
        let mut got = Vec::new();
        let mut models = run.data_models.clone();
        match variant {
            Variant::Vanilla => {
                got.extend(models[0].params_flat());
                got.extend(run.remote_model.params_flat());
            }
            Variant::UShaped => {
                let head = models.pop().unwrap();
                got.extend(models[0].params_flat());
                got.extend(run.remote_model.params_flat());
                got.extend(head.params_flat());
            }
        }
        assert!(
            max_rel_diff(&got, &want) < 1e-3,
            "{variant}: parameters differ"
        );
        for (e, r) in run.report.epochs.iter().enumerate() {
            assert!(
                (r.train_loss - losses[e]).abs() < 1e-3 * (1.0 + losses[e]),
                "{variant} loss"
            );
        }
        let got_acc = run.report.final_accuracy().unwrap();
        assert!(
            (got_acc - acc).abs() <= 1.0 / 40.0 + 1e-9,
            "{variant}: {got_acc} vs {acc}"
        );
        // Traffic: 5 steps per epoch (150 / 32), the last one of 22 rows.
        assert_eq!(run.report.steps_per_epoch, 5);
        let e0 = &run.report.epochs[0];
        let width = if variant == Variant::Vanilla {
            640
        } else {
            128
        };
        let fwd = 4 * wire::tensor_wire_bytes(32, width) + wire::tensor_wire_bytes(22, width);
        match variant {
            Variant::Vanilla => {
                assert_eq!(e0.train_traffic.bytes_sent, fwd);
                assert_eq!(e0.train_traffic.bytes_received, fwd);
                assert_eq!(e0.train_traffic.rounds, 5);
            }
            Variant::UShaped => {
                let mid = 4 * wire::tensor_wire_bytes(32, 640) + wire::tensor_wire_bytes(22, 640);
                assert_eq!(e0.train_traffic.bytes_sent, fwd + mid);
                assert_eq!(e0.train_traffic.bytes_received, fwd + mid);
                assert_eq!(e0.train_traffic.rounds, 10);
            }
        }
        assert_eq!(
            run.remote.traffic.bytes_received,
            run.report.total_traffic.bytes_sent
        );
    }
}

#[test]
fn small_slice_training_improves_accuracy() {
    let train = synthetic(600, 11);
    let test = synthetic(200, 12);
    let parts = split_parts(Variant::Vanilla, 1).unwrap();
    let mut full = parts[0].clone();
    full.layers.extend(parts[1].layers.clone());
    let before = full.evaluate(&test);
    let cfg = SplitConfig {
        epochs: 2,
        batch: 32,
        lr: 0.05,
        ..SplitConfig::default()
    };
    let run = train_in_process(&train, &test, &cfg, 1, &mut |_| {}).unwrap();
    let accs: Vec<f64> = run
        .report
        .epochs
        .iter()
        .map(|e| e.test_accuracy.unwrap())
        .collect();
    assert!(
        accs[1] > before + 0.3 && accs[1] > 0.6,
        "before {before}, after {accs:?}"
    );
}

fn hello(variant: Variant, n: u64, width: u32, ret: u32) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        variant,
        send_width: width,
        return_width: ret,
        train_samples: n,
        test_samples: 0,
        batch: 4,
        epochs: 1,
        shuffle_seed: 1,
        eval_chunk: 4,
        evaluate: false,
        holder: 0,
        holders: 1,
    }
}

fn spawn_label_holder(
    n: usize,
) -> (
    Channel,
    std::thread::JoinHandle<Result<ppml_splitnn::RemoteReport, SplitError>>,
) {
    let parts = split_parts(Variant::Vanilla, 1).unwrap();
    let mut lh = LabelHolder::new(
        parts[1].clone(),
        vec![3; n],
        vec![],
        RemoteConfig::default(),
    )
    .unwrap();
    let (me, mut them) = in_memory_pair(&net());
    let h = std::thread::spawn(move || lh.run(&mut them));
    (me, h)
}

fn accept(ch: &mut Channel) {
    let b = ch.recv_bytes().unwrap();
    assert!(matches!(
        wire::decode_control(&b).unwrap(),
        Control::Accept { .. }
    ));
}

#[test]
fn label_holder_rejects_wrong_shapes_and_garbage() {
    // (rows, cols) that differ from the agreed 4 x 640, and a lying header.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "shape 4x639",
            encode_tensor(TensorKind::Activations, 0, 4, 639, &vec![0.5; 4 * 639]).unwrap(),
        ),
        (
            "shape 5x640",
            encode_tensor(TensorKind::Activations, 0, 5, 640, &vec![0.5; 5 * 640]).unwrap(),
        ),
        (
            "kind",
            encode_tensor(TensorKind::Gradients, 0, 4, 640, &vec![0.5; 4 * 640]).unwrap(),
        ),
        (
            "step",
            encode_tensor(TensorKind::Activations, 7, 4, 640, &vec![0.5; 4 * 640]).unwrap(),
        ),
        (
            "not finite",
            encode_tensor(TensorKind::Activations, 0, 4, 640, &[f32::NAN; 4 * 640]).unwrap(),
        ),
        ("garbage", vec![0xFF; 100]),
        ("truncated", {
            let mut b =
                encode_tensor(TensorKind::Activations, 0, 4, 640, &vec![0.5; 4 * 640]).unwrap();
            b.truncate(b.len() - 3);
            b
        }),
    ];
    for (name, msg) in cases {
        let (mut me, h) = spawn_label_holder(8);
        me.send_bytes(
            wire::encode_control(&Control::Hello(hello(Variant::Vanilla, 8, 640, 0))).unwrap(),
        )
        .unwrap();
        accept(&mut me);
        me.send_bytes(msg).unwrap();
        let err = h.join().unwrap().unwrap_err();
        assert!(matches!(err, SplitError::Protocol(_)), "{name}: {err}");
        // Nothing was answered: no gradient leaves the label holder.
        assert!(
            matches!(
                me.recv_bytes(),
                Err(ppml_net::NetError::Disconnected { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn label_holder_rejects_a_bad_handshake() {
    for (name, hl) in [
        ("width", hello(Variant::Vanilla, 8, 128, 0)),
        ("samples", hello(Variant::Vanilla, 9, 640, 0)),
        ("variant", hello(Variant::UShaped, 8, 640, 0)),
        (
            "version",
            Hello {
                version: 99,
                ..hello(Variant::Vanilla, 8, 640, 0)
            },
        ),
        (
            "batch",
            Hello {
                batch: 0,
                ..hello(Variant::Vanilla, 8, 640, 0)
            },
        ),
    ] {
        let (mut me, h) = spawn_label_holder(8);
        me.send_bytes(wire::encode_control(&Control::Hello(hl)).unwrap())
            .unwrap();
        let b = me.recv_bytes().unwrap();
        assert!(
            matches!(wire::decode_control(&b).unwrap(), Control::Reject(_)),
            "{name}"
        );
        assert!(
            matches!(h.join().unwrap(), Err(SplitError::Rejected(_))),
            "{name}"
        );
    }
}

#[test]
fn data_holder_rejects_a_wrong_gradient_shape() {
    let data = synthetic(8, 1);
    let parts = split_parts(Variant::Vanilla, 1).unwrap();
    let mut dh = DataHolder::vanilla(
        parts[0].clone(),
        Images::from_dataset(&data),
        Images::from_dataset(&data),
    )
    .unwrap();
    let (mut me, mut them) = in_memory_pair(&net());
    let cfg = SplitConfig {
        epochs: 1,
        batch: 4,
        evaluate: false,
        ..SplitConfig::default()
    };
    let h = std::thread::spawn(move || dh.run(&mut them, &cfg, &mut |_| {}));
    let _hello = me.recv_bytes().unwrap();
    me.send_bytes(wire::encode_control(&Control::Accept { shuffle_share: 0 }).unwrap())
        .unwrap();
    let mut buf = Vec::new();
    let b = me.recv_bytes().unwrap();
    wire::decode_tensor_into(
        &b,
        Expect {
            kind: TensorKind::Activations,
            step: 0,
            rows: 4,
            cols: 640,
        },
        &mut buf,
    )
    .unwrap();
    me.send_bytes(encode_tensor(TensorKind::Gradients, 0, 4, 10, &[0.1; 40]).unwrap())
        .unwrap();
    let err = h.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("shape 4x10"), "{err}");
}

#[test]
fn middle_server_rejects_wrong_shapes() {
    let parts = split_parts(Variant::UShaped, 1).unwrap();
    let mut ms = MiddleServer::new(parts[1].clone(), RemoteConfig::default()).unwrap();
    let (mut me, mut them) = in_memory_pair(&net());
    let h = std::thread::spawn(move || ms.run(&mut them));
    me.send_bytes(
        wire::encode_control(&Control::Hello(hello(Variant::UShaped, 8, 128, 640))).unwrap(),
    )
    .unwrap();
    accept(&mut me);
    me.send_bytes(encode_tensor(TensorKind::Activations, 0, 4, 640, &vec![0.5; 4 * 640]).unwrap())
        .unwrap();
    let err = h.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("got shape 4x640"), "{err}");
}

/// The label holder vanishes after the handshake: the data holder gets a clear error.
#[test]
fn disconnecting_label_holder_is_a_clear_error_in_memory() {
    let data = synthetic(8, 1);
    let parts = split_parts(Variant::Vanilla, 1).unwrap();
    let mut dh = DataHolder::vanilla(
        parts[0].clone(),
        Images::from_dataset(&data),
        Images::from_dataset(&data),
    )
    .unwrap();
    let (mut me, mut them) = in_memory_pair(&net());
    let cfg = SplitConfig {
        epochs: 1,
        batch: 4,
        ..SplitConfig::default()
    };
    let h = std::thread::spawn(move || {
        let _ = me.recv_bytes();
        me.send_bytes(wire::encode_control(&Control::Accept { shuffle_share: 0 }).unwrap())
            .unwrap();
        let _ = me.recv_bytes();
        drop(me);
    });
    let err = dh.run(&mut them, &cfg, &mut |_| {}).unwrap_err();
    h.join().unwrap();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            SplitError::Net {
                source: ppml_net::NetError::Disconnected { .. },
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("Gradients of step 0") && msg.contains("disconnected"),
        "{msg}"
    );
}

/// Over TCP, in both directions: each role's peer drops mid-session.
#[test]
fn disconnecting_peer_is_a_clear_error_over_tcp() {
    let data = synthetic(8, 1);
    let parts = split_parts(Variant::Vanilla, 1).unwrap();
    // 1. The label holder disconnects.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut ch = tcp::accept(&listener, &net()).unwrap();
        let _ = ch.recv_bytes();
        ch.send_bytes(wire::encode_control(&Control::Accept { shuffle_share: 0 }).unwrap())
            .unwrap();
        let _ = ch.recv_bytes();
    });
    let mut ch = tcp::connect(addr, &net()).unwrap();
    let mut dh = DataHolder::vanilla(
        parts[0].clone(),
        Images::from_dataset(&data),
        Images::from_dataset(&data),
    )
    .unwrap();
    let cfg = SplitConfig {
        epochs: 1,
        batch: 4,
        ..SplitConfig::default()
    };
    let err = dh.run(&mut ch, &cfg, &mut |_| {}).unwrap_err();
    h.join().unwrap();
    assert!(matches!(err, SplitError::Net { .. }), "{err}");
    assert!(err.to_string().contains("disconnected"), "{err}");

    // 2. The data holder disconnects after its first activations.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut lh = LabelHolder::new(
        parts[1].clone(),
        vec![1; 8],
        vec![],
        RemoteConfig::default(),
    )
    .unwrap();
    let h = std::thread::spawn(move || {
        let mut ch = tcp::accept(&listener, &net()).unwrap();
        lh.run(&mut ch)
    });
    let mut ch = tcp::connect(addr, &net()).unwrap();
    ch.send_bytes(
        wire::encode_control(&Control::Hello(hello(Variant::Vanilla, 8, 640, 0))).unwrap(),
    )
    .unwrap();
    accept(&mut ch);
    ch.send_bytes(encode_tensor(TensorKind::Activations, 0, 4, 640, &vec![0.5; 4 * 640]).unwrap())
        .unwrap();
    let _grad = ch.recv_bytes().unwrap();
    drop(ch);
    let err = h.join().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Activations of step 1") && msg.contains("disconnected"),
        "{msg}"
    );
}

/// A full vanilla session over loopback TCP matches the in-memory one bit for bit.
#[test]
fn tcp_session_equals_in_memory_session() {
    let data = synthetic(64, 21);
    let test = synthetic(20, 22);
    let cfg = SplitConfig {
        epochs: 1,
        batch: 16,
        eval_chunk: 8,
        ..SplitConfig::default()
    };
    let mem = train_in_process(&data, &test, &cfg, 3, &mut |_| {}).unwrap();
    let parts = split_parts(Variant::Vanilla, 3).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut lh = LabelHolder::new(
        parts[1].clone(),
        data.labels.clone(),
        test.labels.clone(),
        // The label holder's share of the shuffle seed, as train_in_process gives it.
        RemoteConfig {
            shuffle_share: cfg.shuffle_seed,
            ..RemoteConfig::default()
        },
    )
    .unwrap();
    let h = std::thread::spawn(move || {
        let mut ch = tcp::accept(&listener, &net()).unwrap();
        let r = lh.run(&mut ch);
        (r, lh.into_model())
    });
    let mut ch = tcp::connect(addr, &net()).unwrap();
    let mut dh = DataHolder::vanilla(
        parts[0].clone(),
        Images::from_dataset(&data),
        Images::from_dataset(&test),
    )
    .unwrap();
    let rep = dh.run(&mut ch, &cfg, &mut |_| {}).unwrap();
    let (r, top) = h.join().unwrap();
    r.unwrap();
    assert_eq!(dh.bottom(), &mem.data_models[0]);
    assert_eq!(top, mem.remote_model);
    assert_eq!(rep.total_traffic, mem.report.total_traffic);
    assert_eq!(
        rep.epochs[0].test_accuracy,
        mem.report.epochs[0].test_accuracy
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn tensor_roundtrip_and_mutations(rows in 1usize..6, cols in 1usize..9, step in 0u32..100, seed in 0u64..1000, flip in 0usize..16) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-3.0..3.0f32)).collect();
        let b = encode_tensor(TensorKind::Gradients, step, rows, cols, &data).unwrap();
        prop_assert_eq!(b.len() as u64 + 4, wire::tensor_wire_bytes(rows, cols));
        let want = Expect { kind: TensorKind::Gradients, step, rows, cols };
        let mut out = Vec::new();
        wire::decode_tensor_into(&b, want, &mut out).unwrap();
        prop_assert_eq!(&out, &data);
        // Any change to the header is detected (tag, kind, step, rows, cols).
        let mut bad = b.clone();
        let at = [0usize, 1, 4, 5, 8, 9, 12, 13][flip % 8];
        bad[at] ^= 1 + (flip as u8 >> 3);
        prop_assert!(wire::decode_tensor_into(&bad, want, &mut out).is_err());
    }
}

/// Round-robin with a shared bottom is exactly sequential training over the shards, with the
/// bottom's weights travelling around the ring of data holders (two holders: one link
/// carries the weights both ways).
#[test]
fn round_robin_shared_bottom_equals_sequential_training() {
    for holders in [2, 3] {
        shared_bottom_equals_sequential(holders);
    }
}

fn shared_bottom_equals_sequential(holders: usize) {
    let data = synthetic(90, 31);
    let test = synthetic(30, 32);
    let cfg = SplitConfig {
        epochs: 2,
        batch: 16,
        lr: 0.05,
        shuffle_seed: 5,
        eval_chunk: 16,
        ..SplitConfig::default()
    };
    let run =
        ppml_splitnn::train_round_robin(&data, &test, &cfg, 8, holders, true, &mut |_| {}).unwrap();
    // Reference: one model, shard 0 then 1 (then 2) every epoch, each with its own shuffling PRG.
    let mut full = Model::from_arch("split", 8).unwrap();
    let tc = TrainConfig {
        epochs: 2,
        batch: 16,
        lr: 0.05,
        momentum: 0.0,
        ..TrainConfig::default()
    };
    let mut opt = Sgd::new(0.05, 0.0);
    let mut ws = Workspace::new();
    let mut rngs: Vec<_> = (0..holders)
        .map(|k| {
            ppml_splitnn::order_rng(ppml_splitnn::wire::joint_shuffle_seed(
                ppml_splitnn::holder_shuffle_seed(5, k),
                5 + k as u64,
            ))
        })
        .collect();
    for e in 0..2 {
        for (k, rng) in rngs.iter_mut().enumerate() {
            let shard = data.slice(k * 90 / holders..(k + 1) * 90 / holders);
            train_epoch(
                &mut full,
                &shard,
                &tc,
                e,
                &mut opt,
                &mut ws,
                rng,
                &mut |_, _, _| {},
            )
            .unwrap();
        }
    }
    let mut got = run.bottoms[holders - 1].params_flat();
    got.extend(run.top.params_flat());
    assert!(max_rel_diff(&got, &full.params_flat()) < 1e-3);
    let acc = full.evaluate(&test);
    let last = run.reports[holders - 1].final_accuracy().unwrap();
    assert!((last - acc).abs() <= 1.0 / 30.0 + 1e-9, "{last} vs {acc}");
    // Hand-offs: 2 epochs x holders - the last, each the whole bottom.
    let handoffs: u64 = run
        .reports
        .iter()
        .map(|r| r.peer_traffic.messages_sent)
        .sum();
    assert_eq!(handoffs, 2 * holders as u64 - 1);
    assert_eq!(run.remote.train_loss.len(), 2 * holders);
}

#[test]
fn round_robin_separate_bottoms_share_only_the_top() {
    let data = synthetic(400, 41);
    let test = synthetic(100, 42);
    let cfg = SplitConfig {
        epochs: 3,
        batch: 32,
        lr: 0.1,
        ..SplitConfig::default()
    };
    let run =
        ppml_splitnn::train_round_robin(&data, &test, &cfg, 2, 2, false, &mut |_| {}).unwrap();
    assert_ne!(run.bottoms[0], run.bottoms[1]);
    for r in &run.reports {
        assert_eq!(r.peer_traffic, ppml_net::ChannelStats::default());
        assert!(
            r.final_accuracy().unwrap() > 0.6,
            "{:?}",
            r.final_accuracy()
        );
    }
}

#[test]
fn label_holder_rejects_a_wrong_holder_index() {
    let (mut me, h) = spawn_label_holder(8);
    let hl = Hello {
        holder: 1,
        holders: 2,
        ..hello(Variant::Vanilla, 8, 640, 0)
    };
    me.send_bytes(wire::encode_control(&Control::Hello(hl)).unwrap())
        .unwrap();
    let b = me.recv_bytes().unwrap();
    assert!(matches!(
        wire::decode_control(&b).unwrap(),
        Control::Reject(_)
    ));
    assert!(matches!(h.join().unwrap(), Err(SplitError::Rejected(_))));
}

#[test]
fn missing_mnist_files_are_a_clear_error() {
    let dir = std::path::Path::new("/nonexistent/mnist");
    let e = Images::load_mnist(dir, true).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("not found"),
        "{e}"
    );
    let e = ppml_splitnn::load_mnist_labels(dir, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("not found"),
        "{e}"
    );
}

/// With the real files (skipped when data/mnist is absent): each role reads only its half.
#[test]
fn roles_load_only_their_half_of_mnist() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    if !dir.join("t10k-labels-idx1-ubyte.gz").is_file() {
        eprintln!("skipped: no MNIST in {}", dir.display());
        return;
    }
    let images = Images::load_mnist(&dir, false).unwrap();
    let labels = ppml_splitnn::load_mnist_labels(&dir, false).unwrap();
    assert_eq!(
        (images.len(), images.dim, labels.len()),
        (10_000, 784, 10_000)
    );
    assert!(images.values.iter().all(|v| (0.0..=1.0).contains(v)));
}

/// A NaN or negative learning rate is reported as such before any message, not as the
/// peer's bad gradients.
#[test]
fn bad_learning_rates_are_rejected_up_front() {
    let data = synthetic(20, 1);
    let test = synthetic(10, 2);
    for lr in [f32::NAN, -0.1, 0.0, f32::INFINITY] {
        for variant in [Variant::Vanilla, Variant::UShaped] {
            let cfg = SplitConfig {
                variant,
                lr,
                ..SplitConfig::default()
            };
            let err = train_in_process(&data, &test, &cfg, 1, &mut |_| {}).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("learning rate"), "{variant:?} lr {lr}: {msg}");
        }
    }
}
