//! Federated averaging over loopback TCP: plain and with secure aggregation.
//! Clients that disconnect, stall, send bad updates or inflate their weight
//! cost only themselves; clients leave at any secure-aggregation step and
//! the round still yields the exact sum of the survivors; below the
//! threshold the round aborts and the next goes on; a client that left can
//! rejoin.

use ppml_fedavg::net::{
    ClientOptions, ExampleWeights, NetServerConfig, Setup, TcpClients, ToClient, ToServer,
    run_client, run_server,
};
use ppml_fedavg::secure::{ClientRoundEnd, SecureSlot, client_round, server_round};
use ppml_fedavg::{FedConfig, LocalConfig, RunSummary, WeightedAverage};
use ppml_net::{Channel, NetConfig};
use ppml_nn::{Dataset, Layer, Linear, Model};
use ppml_secagg::{Quantizer, RoundParams, SecAggConfig, Step};
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

const P: usize = 34; // 16 * 2 + 2

fn config(clients: u32, rounds: usize, round_timeout: Duration) -> NetServerConfig {
    NetServerConfig {
        fed: FedConfig {
            fraction: 1.0,
            rounds,
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
            num_params: P as u64,
            partition: "iid".into(),
            partition_clients: clients,
            seed: 9,
            normalization: "unit".into(),
        },
        expected_clients: clients as usize,
        join_timeout: Duration::from_secs(20),
        round_timeout,
        secure: None,
        weights: ExampleWeights::Known(vec![20; clients as usize]),
        max_update_norm: 100.0,
        dp: None,
    }
}

fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    (l, a)
}

fn connect(addr: &str) -> Channel {
    let net = NetConfig::default().with_timeout(Duration::from_secs(30));
    ppml_net::tcp::connect(addr, &net).unwrap()
}

fn serve(
    listener: &TcpListener,
    cfg: &NetServerConfig,
    test: Option<&Dataset>,
) -> (RunSummary, Vec<String>) {
    let net = NetConfig::default().with_timeout(cfg.round_timeout);
    let mut events = Vec::new();
    let s = run_server(
        Box::new(TcpClients::new(listener, net).unwrap()),
        toy_model(),
        cfg,
        test,
        Box::new(WeightedAverage),
        &mut |_| {},
        &mut |e| events.push(e.to_string()),
    )
    .unwrap_or_else(|e| panic!("server failed: {e}; events {events:?}"));
    (s, events)
}

/// A well-behaved client process (as a thread) with `n` toy examples.
fn good_client(
    addr: &str,
    id: u32,
    opts: ClientOptions,
) -> std::thread::JoinHandle<Result<ppml_fedavg::net::ClientSummary, ppml_fedavg::FedError>> {
    let addr = addr.to_string();
    std::thread::spawn(move || {
        run_client(
            connect(&addr),
            Some(id),
            &mut |_, _| Ok((toy_model(), toy_data(20, id as usize))),
            &opts,
            &mut |_, _| {},
        )
    })
}

/// A hand-written client: joins as `id` claiming `claimed` examples, then
/// answers each round's `Train` with `answer(round)` (None: say nothing).
fn raw_client(
    addr: &str,
    id: u32,
    claimed: u64,
    answer: impl Fn(u32) -> Option<ToServer> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let mut ch = connect(&addr);
        ch.send(&ToServer::Hello {
            requested_id: Some(id),
        })
        .unwrap();
        let w: ToClient = ch.recv().unwrap();
        assert!(matches!(w, ToClient::Welcome { id: got, .. } if got == id));
        ch.send(&ToServer::Ready { examples: claimed }).unwrap();
        while let Ok(m) = ch.recv::<ToClient>() {
            match m {
                ToClient::Train { round, .. } => {
                    if let Some(a) = answer(round) {
                        let _ = ch.send(&a);
                    }
                }
                ToClient::Done { .. } => return,
                _ => {}
            }
        }
    })
}

fn update(round: u32, claimed: u64, delta: &[f32]) -> ToServer {
    let mut bytes = Vec::new();
    ppml_fedavg::net::f32s_to_bytes(delta, &mut bytes);
    ToServer::Update {
        round,
        examples: claimed,
        steps: 1,
        loss: 0.5,
        delta: bytes,
    }
}

#[test]
fn dropped_and_stalled_clients_cost_only_their_round() {
    let (listener, addr) = listen();
    let cfg = config(4, 3, Duration::from_millis(1500));
    let test = toy_data(40, 0);
    let good: Vec<_> = (0..2)
        .map(|id| good_client(&addr, id, ClientOptions::default()))
        .collect();
    // Client 2 disconnects in round 1; client 3 stalls in round 1 only.
    let quitter = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut ch = connect(&addr);
            ch.send(&ToServer::Hello {
                requested_id: Some(2),
            })
            .unwrap();
            let _: ToClient = ch.recv().unwrap();
            ch.send(&ToServer::Ready { examples: 20 }).unwrap();
            let _: ToClient = ch.recv().unwrap();
        })
    };
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let stop_rx = std::sync::Mutex::new(stop_rx);
    let staller = raw_client(&addr, 3, 20, move |round| {
        if round == 1 {
            // Answer only after the round's deadline: too late.
            let _ = stop_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_millis(2500));
        }
        Some(update(round, 20, &[0.0; P]))
    });
    let t0 = Instant::now();
    let (summary, events) = serve(&listener, &cfg, Some(&test));
    let elapsed = t0.elapsed();
    drop(stop_tx);
    quitter.join().unwrap();
    staller.join().unwrap();
    assert_eq!(summary.rounds.len(), 3);
    let r1 = &summary.rounds[0];
    assert_eq!(r1.sampled, vec![0, 1, 2, 3]);
    let mut dropped = r1.dropped.clone();
    dropped.sort();
    assert_eq!(dropped, vec![2, 3], "events: {events:?}");
    assert!(
        r1.drop_reasons.iter().any(|r| r.contains("timed out")),
        "{r1:?}"
    );
    assert!(
        r1.drop_reasons.iter().any(|r| r.contains("disconnected")),
        "{r1:?}"
    );
    assert!(r1.seconds < 5.0, "round 1 took {} s", r1.seconds);
    assert!(elapsed < Duration::from_secs(20), "run took {elapsed:?}");
    // The slow client is back from round 2 on (its late answer discarded);
    // the one that disconnected is gone.
    for r in &summary.rounds[1..] {
        assert_eq!(r.sampled, vec![0, 1, 3], "{events:?}");
        assert!(r.dropped.is_empty(), "{r:?}");
    }
    assert!(
        summary.final_accuracy() >= 0.9,
        "{}",
        summary.final_accuracy()
    );
    for g in good {
        let s = g.join().unwrap().unwrap();
        assert_eq!(s.rounds_trained, 3);
        assert_eq!(s.rounds_total, 3);
    }
}

#[test]
fn bad_updates_are_dropped_and_named_while_the_rounds_go_on() {
    let (listener, addr) = listen();
    let cfg = config(3, 4, Duration::from_secs(10));
    let test = toy_data(40, 0);
    let good: Vec<_> = (0..2)
        .map(|id| good_client(&addr, id, ClientOptions::default()))
        .collect();
    let bad = raw_client(&addr, 2, 20, |round| {
        let mut d = vec![0.01f32; P];
        match round {
            1 => d[5] = f32::NAN,
            2 => d.truncate(P - 1),
            3 => d.iter_mut().for_each(|x| *x = 1e6),
            _ => {}
        }
        Some(update(round, 20, &d))
    });
    let (summary, events) = serve(&listener, &cfg, Some(&test));
    bad.join().unwrap();
    for (r, what) in summary.rounds[..3]
        .iter()
        .zip(["not finite", "parameter bytes", "L2 norm"])
    {
        assert_eq!(r.dropped, vec![2], "{r:?}");
        assert!(r.drop_reasons[0].contains(what), "{:?}", r.drop_reasons);
        assert!(r.aborted.is_none());
    }
    // The well-formed round-4 update of the same client counts again.
    assert!(summary.rounds[3].dropped.is_empty());
    assert!(
        events.iter().any(|e| e.contains("client 2 dropped")),
        "{events:?}"
    );
    assert!(summary.final_params.iter().all(|x| x.is_finite()));
    assert!(summary.final_accuracy() >= 0.9);
    for g in good {
        assert_eq!(g.join().unwrap().unwrap().rounds_trained, 4);
    }
}

fn inflation_run(weights: ExampleWeights) -> Vec<f32> {
    let (listener, addr) = listen();
    let mut cfg = config(3, 1, Duration::from_secs(10));
    cfg.weights = weights;
    let attacker = raw_client(&addr, 0, 1_000_000_000_000_000_000, |r| {
        Some(update(r, 1_000_000_000_000_000_000, &[5.0; P]))
    });
    let honest: Vec<_> = (1..3)
        .map(|id| raw_client(&addr, id, 20, |r| Some(update(r, 20, &[0.0; P]))))
        .collect();
    let (summary, _) = serve(&listener, &cfg, None);
    attacker.join().unwrap();
    honest.into_iter().for_each(|h| h.join().unwrap());
    let start = toy_model().params_flat();
    summary
        .final_params
        .iter()
        .zip(&start)
        .map(|(a, b)| a - b)
        .collect()
}

#[test]
fn a_claimed_count_of_1e18_cannot_replace_the_model() {
    // The server knows every part's size: the claim is ignored, weight 1/3.
    let moved = inflation_run(ExampleWeights::Known(vec![20, 20, 20]));
    for m in &moved {
        assert!((m - 5.0 / 3.0).abs() < 1e-4, "{m}");
    }
    // Or the claim is capped: weight 40 / (40 + 20 + 20).
    let moved = inflation_run(ExampleWeights::Capped(40));
    for m in &moved {
        assert!((m - 2.5).abs() < 1e-4, "{m}");
    }
}

// ---------------------------------------------------------------------------
// The secure round itself over TCP
// ---------------------------------------------------------------------------

/// Runs one secure round over loopback TCP: `n` clients with inputs
/// `inputs[i]`, client `i` leaving at `leave[i]`.
fn tcp_secure_round(
    inputs: &[Vec<f32>],
    leave: &[Option<Step>],
    cfg: &SecAggConfig,
) -> (ppml_fedavg::secure::ServerRoundOutcome, Vec<ClientRoundEnd>) {
    let n = inputs.len();
    let (listener, addr) = listen();
    let params = RoundParams::new(n, inputs[0].len(), cfg, [7; 16]).unwrap();
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let (addr, x, l, params) = (addr.clone(), inputs[i].clone(), leave[i], params.clone());
            std::thread::spawn(move || {
                let mut ch = connect(&addr);
                ch.send(&(i as u32)).unwrap();
                let slot = SecureSlot {
                    index: i as u32,
                    params,
                };
                // Leaving closes the connection (`ch` is dropped on return).
                client_round(&mut ch, 1, &slot, &x, l).unwrap()
            })
        })
        .collect();
    let net = NetConfig::default().with_timeout(Duration::from_secs(10));
    let mut chs: Vec<Option<Channel>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let mut ch = ppml_net::tcp::accept(&listener, &net).unwrap();
        let i: u32 = ch.recv().unwrap();
        chs[i as usize] = Some(ch);
    }
    let mut chs: Vec<Channel> = chs.into_iter().map(Option::unwrap).collect();
    let mut links: Vec<&mut Channel> = chs.iter_mut().collect();
    let out = server_round(&mut links, 1, &params, 3);
    let ends = clients.into_iter().map(|h| h.join().unwrap()).collect();
    (out, ends)
}

fn inputs(n: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            (0..dim)
                .map(|j| ((i * 31 + j * 7) % 17) as f32 / 10.0 - 0.8)
                .collect()
        })
        .collect()
}

#[test]
fn secure_aggregation_over_tcp_sums_the_survivors_under_dropouts_at_each_step() {
    let n = 6;
    let xs = inputs(n, 50);
    let cfg = ppml_fedavg::secure::default_config(Some(3), false);
    let q = Quantizer::new(cfg.bits, cfg.clip).unwrap();
    for leave_step in [None].into_iter().chain(Step::ALL.into_iter().map(Some)) {
        let mut leave = vec![None; n];
        leave[2] = leave_step;
        if leave_step.is_some() {
            leave[4] = leave_step;
        }
        let (out, ends) = tcp_secure_round(&xs, &leave, &cfg);
        assert!(out.aborted.is_none(), "{leave_step:?}: {out:?}");
        let expect_surv: Vec<u32> = match leave_step {
            // Leaving at Unmasking still leaves the masked input in the sum.
            None | Some(Step::Unmasking) => (0..n as u32).collect(),
            Some(_) => vec![0, 1, 3, 5],
        };
        assert_eq!(out.survivors, expect_surv, "{leave_step:?}");
        let sum = out.sum.as_ref().unwrap();
        let bound = q.sum_error_bound(expect_surv.len()) + 1e-5;
        for (j, s) in sum.iter().enumerate() {
            let plain: f32 = expect_surv.iter().map(|&i| xs[i as usize][j]).sum();
            assert!(
                (s - plain).abs() as f64 <= bound,
                "{leave_step:?} coord {j}: {s} vs {plain}"
            );
        }
        if let Some(step) = leave_step {
            let mut named: Vec<u32> = out.drops.iter().map(|d| d.index).collect();
            named.sort();
            assert_eq!(named, vec![2, 4], "{out:?}");
            assert!(out.drops.iter().all(|d| d.step == step), "{out:?}");
            assert_eq!(ends[2], ClientRoundEnd::Left(step));
        } else {
            assert!(out.drops.is_empty());
        }
        for i in [0, 1, 3, 5] {
            assert_eq!(ends[i], ClientRoundEnd::Completed, "{leave_step:?}");
        }
    }
}

#[test]
fn below_the_threshold_the_round_aborts_cleanly_and_clients_are_told() {
    let n = 5;
    let xs = inputs(n, 20);
    let cfg = ppml_fedavg::secure::default_config(Some(4), false);
    let mut leave = vec![None; n];
    leave[0] = Some(Step::MaskedInputCollection);
    leave[3] = Some(Step::MaskedInputCollection);
    let (out, ends) = tcp_secure_round(&xs, &leave, &cfg);
    assert!(out.sum.is_none());
    let why = out.aborted.unwrap();
    assert!(why.contains("threshold"), "{why}");
    for i in [1, 2, 4] {
        assert!(
            matches!(&ends[i], ClientRoundEnd::Aborted(r) if r.contains("aborted")),
            "{:?}",
            ends[i]
        );
    }
}

#[test]
fn secure_fedavg_over_tcp_with_a_leaver_who_rejoins_and_an_aborted_round() {
    let (listener, addr) = listen();
    let mut cfg = config(5, 8, Duration::from_secs(10));
    cfg.secure = Some(ppml_fedavg::secure::default_config(Some(4), false));
    let test = toy_data(40, 0);
    let mut clients: Vec<_> = (0..3)
        .map(|id| good_client(&addr, id, ClientOptions::default()))
        .collect();
    // Client 3 leaves in round 1 at ShareKeys and rejoins; client 4 leaves in
    // round 2 at MaskedInputCollection and rejoins (if client 3 is not back
    // by round 2, that round falls below t = 4 and aborts: also fine).
    let leaver = |id: u32, round: u32, step: Step| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let first = run_client(
                connect(&addr),
                Some(id),
                &mut |_, _| Ok((toy_model(), toy_data(20, id as usize))),
                &ClientOptions {
                    leave_at: Some((round, step)),
                },
                &mut |_, _| {},
            )
            .unwrap();
            assert_eq!(first.left_in, Some(round));
            run_client(
                connect(&addr),
                Some(id),
                &mut |_, _| Ok((toy_model(), toy_data(20, id as usize))),
                &ClientOptions::default(),
                &mut |_, _| {},
            )
        })
    };
    clients.push(leaver(3, 1, Step::ShareKeys));
    clients.push(leaver(4, 2, Step::MaskedInputCollection));
    let (summary, events) = serve(&listener, &cfg, Some(&test));
    let r1 = &summary.rounds[0];
    assert_eq!(r1.sampled, vec![0, 1, 2, 3, 4]);
    assert_eq!(r1.dropped, vec![3], "{events:?}");
    assert!(r1.drop_reasons[0].contains("ShareKeys"), "{r1:?}");
    assert!(r1.aborted.is_none(), "{r1:?}");
    assert!(r1.train_loss.is_nan(), "the server learns no client's loss");
    let rejoined: Vec<usize> = summary
        .rounds
        .iter()
        .flat_map(|r| r.rejoined.clone())
        .collect();
    assert!(rejoined.contains(&3) && rejoined.contains(&4), "{events:?}");
    assert!(
        events.iter().any(|e| e.contains("client 3 rejoined")),
        "{events:?}"
    );
    let r2 = &summary.rounds[1];
    assert!(r2.dropped.contains(&4), "{r2:?}");
    assert!(
        r2.drop_reasons
            .iter()
            .any(|r| r.contains("MaskedInputCollection")),
        "{r2:?}"
    );
    // Every later round runs with everyone back.
    let last = summary.rounds.last().unwrap();
    assert_eq!(last.sampled, vec![0, 1, 2, 3, 4], "{events:?}");
    assert!(last.dropped.is_empty(), "{last:?}");
    assert!(
        summary.final_accuracy() >= 0.9,
        "{}",
        summary.final_accuracy()
    );
    for c in clients {
        let s = c.join().unwrap().unwrap();
        assert!(s.rounds_completed >= 2, "{s:?}");
    }
}

#[test]
fn a_join_out_of_the_population_is_turned_away_and_the_server_keeps_accepting() {
    let (listener, addr) = listen();
    let cfg = config(2, 1, Duration::from_secs(5));
    let late = |id: u32, ms: u64| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            run_client(
                connect(&addr),
                Some(id),
                &mut |_, _| Ok((toy_model(), toy_data(20, 0))),
                &ClientOptions::default(),
                &mut |_, _| {},
            )
        })
    };
    let first = late(0, 0);
    let out_of_range = late(7, 200);
    let second = late(1, 600);
    let (summary, events) = serve(&listener, &cfg, None);
    assert_eq!(summary.rounds[0].sampled, vec![0, 1], "{events:?}");
    assert_eq!(summary.rounds[0].joined, vec![0, 1], "{events:?}");
    assert!(first.join().unwrap().is_ok());
    assert!(second.join().unwrap().is_ok());
    assert!(out_of_range.join().unwrap().is_err());
    assert!(
        events
            .iter()
            .any(|e| e.contains("failed to join") && e.contains("out of range")),
        "{events:?}"
    );
}

#[test]
fn too_few_clients_is_a_clear_error_not_a_hang() {
    let (listener, _) = listen();
    let mut cfg = config(2, 1, Duration::from_millis(300));
    cfg.join_timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let r = run_server(
        Box::new(TcpClients::new(&listener, NetConfig::default()).unwrap()),
        toy_model(),
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
fn a_new_client_joins_between_rounds_up_to_the_population() {
    let (listener, addr) = listen();
    let mut cfg = config(3, 6, Duration::from_secs(10));
    cfg.expected_clients = 2; // start with two; the population is three
    let first: Vec<_> = (0..2)
        .map(|id| good_client(&addr, id, ClientOptions::default()))
        .collect();
    let late = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            // Join once the run is under way.
            std::thread::sleep(Duration::from_millis(300));
            run_client(
                connect(&addr),
                Some(2),
                &mut |_, _| Ok((toy_model(), toy_data(20, 2))),
                &ClientOptions::default(),
                &mut |_, _| {},
            )
        })
    };
    let mut rounds = Vec::new();
    let net = NetConfig::default().with_timeout(cfg.round_timeout);
    let summary = run_server(
        Box::new(TcpClients::new(&listener, net).unwrap()),
        toy_model(),
        &cfg,
        None,
        Box::new(WeightedAverage),
        &mut |r| {
            rounds.push(r.clone());
            // Slow rounds down a little so the late client arrives mid-run.
            std::thread::sleep(Duration::from_millis(100));
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(summary.rounds[0].sampled, vec![0, 1]);
    let at = summary
        .rounds
        .iter()
        .position(|r| r.joined == vec![2])
        .expect("client 2 never joined");
    assert!(at > 0, "client 2 should join after round 1");
    assert_eq!(summary.rounds[at].sampled, vec![0, 1, 2]);
    assert_eq!(summary.rounds.last().unwrap().sampled, vec![0, 1, 2]);
    for h in first {
        assert_eq!(h.join().unwrap().unwrap().rounds_trained, 6);
    }
    assert!(late.join().unwrap().unwrap().rounds_trained >= 1);
}

#[test]
fn an_authenticated_name_fixes_the_client_id() {
    use ppml_fedavg::net::{NamedClients, client_id, client_name};
    assert_eq!(client_id(&client_name(7)), Some(7));
    for bad in [
        "client-",
        "client-07",
        "client-+7",
        "server",
        "client-7x",
        "Client-7",
    ] {
        assert_eq!(client_id(bad), None, "{bad}");
    }
    // Named channels from an (in-memory) authenticated source: client-1 may
    // only be client 1; a party that is not a client is refused.
    let cfg = config(2, 1, Duration::from_secs(10));
    let net = NetConfig::default().with_timeout(Duration::from_secs(10));
    let (tx, rx) = mpsc::channel::<(String, Channel)>();
    let mut clients = Vec::new();
    for (name, ask) in [
        ("client-1", Some(0)),
        ("server", None),
        ("client-0", None),
        ("client-1", None),
    ] {
        let (s, c) = ppml_net::in_memory_pair(&net);
        tx.send((name.to_string(), s)).unwrap();
        clients.push(std::thread::spawn(move || {
            run_client(
                c,
                ask,
                &mut |_, id| Ok((toy_model(), toy_data(20, id as usize))),
                &ClientOptions::default(),
                &mut |_, _| {},
            )
        }));
    }
    let rx = std::sync::Mutex::new(rx);
    let source = NamedClients::new(move |wait| Ok(rx.lock().unwrap().recv_timeout(wait).ok()));
    let mut events = Vec::new();
    let summary = run_server(
        Box::new(source),
        toy_model(),
        &cfg,
        None,
        Box::new(WeightedAverage),
        &mut |_| {},
        &mut |e| events.push(e.to_string()),
    )
    .unwrap();
    assert_eq!(summary.rounds[0].sampled, vec![0, 1], "{events:?}");
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    // client-1 asking for id 0 is refused; "server" is refused; the others run.
    assert!(results[0].is_err());
    assert!(results[1].is_err());
    assert_eq!(results[2].as_ref().unwrap().id, 0);
    assert_eq!(results[3].as_ref().unwrap().id, 1);
    assert!(
        events
            .iter()
            .any(|e| e.contains("authenticated as client 1, asked for id 0")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("not a client")),
        "{events:?}"
    );
}
