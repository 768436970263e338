//! End-to-end tests of the protocol: exact sums against plaintext, dropouts at every step,
//! aborts, tampering, uniformity of what the server sees, TCP.

use ppml_net::{NetConfig, in_memory_pair};
use ppml_secagg::messages::*;
use ppml_secagg::*;
/// Reproducible test randomness (client secrets included): insecure by design.
mod prg {
    pub fn seeded(seed: u64) -> ppml_random::SecretRng {
        ppml_random::insecure_deterministic_rng(seed, "test/secagg")
    }
    pub use ppml_random::os_rng as from_entropy;
}
use proptest::prelude::*;

fn inputs(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    use rand::RngExt;
    let mut r = prg::seeded(seed);
    (0..n)
        .map(|_| (0..d).map(|_| r.random_range(-1.2f32..1.2)).collect())
        .collect()
}

/// Plaintext reference: sum over `ids` of the quantised inputs, mod 2^k.
fn plain_sum(xs: &[Vec<f32>], ids: &[u32], p: &RoundParams) -> Vec<u64> {
    let q = p.quantizer().unwrap();
    let mut s = vec![0u64; p.dim];
    for &i in ids {
        for (a, v) in s.iter_mut().zip(q.encode(&xs[i as usize]).unwrap()) {
            *a = (*a + v) & ring_mask(p.ring_bits);
        }
    }
    s
}

fn check(xs: &[Vec<f32>], cfg: &SecAggConfig, plan: &DropoutPlan, seed: u64) -> AggregateOutcome {
    let out = aggregate_in_process(
        xs,
        cfg,
        plan,
        seed,
        SecretSource::InsecureDeterministic(seed),
    )
    .unwrap();
    let expected_survivors: Vec<u32> = (0..xs.len() as u32)
        .filter(|&i| plan.drop_at(i).is_none_or(|s| s == Step::Unmasking))
        .collect();
    assert_eq!(out.survivors, expected_survivors);
    assert_eq!(
        out.sum_quantised,
        plain_sum(xs, &out.survivors, &out.params)
    );
    // The float sum is within the stated bound of the clipped plaintext sum.
    for (j, &got) in out.sum.iter().enumerate() {
        let exact: f64 = out
            .survivors
            .iter()
            .map(|&i| xs[i as usize][j].clamp(-1.0, 1.0) as f64)
            .sum();
        assert!((exact - got as f64).abs() <= out.error_bound + 1e-4);
    }
    out
}

#[test]
fn exact_sum_full_and_graph_without_dropouts() {
    let xs = inputs(12, 40, 1);
    let out = check(&xs, &SecAggConfig::default(), &DropoutPlan::none(12), 1);
    assert_eq!(out.params.threshold, 7);
    assert_eq!(out.params.ring_bits, 16 + 4);
    assert!(
        out.clients
            .iter()
            .all(|c| c.completed && c.stats.traffic.rounds == 4)
    );
    assert_eq!(out.server.traffic.rounds, 3);
    let xs = inputs(40, 30, 2);
    let cfg = SecAggConfig {
        graph: true,
        degree: Some(8),
        ..SecAggConfig::default()
    };
    let out = check(&xs, &cfg, &DropoutPlan::default(), 2);
    assert_eq!(out.params.degree, Some(8));
    assert_eq!(out.params.threshold, 4);
}

#[test]
fn dropouts_at_each_step() {
    for step in Step::ALL {
        for graph in [false, true] {
            let xs = inputs(16, 25, step as u64);
            let cfg = SecAggConfig {
                graph,
                degree: graph.then_some(8),
                ..SecAggConfig::default()
            };
            let plan = DropoutPlan::with(16, &[(3, step), (11, step), (12, step)]).unwrap();
            let out = check(&xs, &cfg, &plan, 10 + step as u64);
            let dropped_before_unmask = step != Step::Unmasking;
            assert_eq!(
                out.survivors.len(),
                if dropped_before_unmask { 13 } else { 16 }
            );
            assert_eq!(out.set_sizes[3], 13);
            assert!(!out.clients[3].completed);
            assert!(
                out.clients[3].error.is_none(),
                "a planned dropout is not an error"
            );
        }
    }
}

#[test]
fn random_dropouts_at_mixed_steps() {
    let xs = inputs(30, 10, 3);
    for (f, graph) in [(0.1, false), (0.3, false), (0.3, true)] {
        let plan = DropoutPlan::random(30, f, 4).unwrap();
        assert_eq!(plan.dropped(), (30.0 * f).round() as usize);
        let cfg = SecAggConfig {
            graph,
            degree: graph.then_some(12),
            threshold: graph.then_some(5),
            ..SecAggConfig::default()
        };
        check(&xs, &cfg, &plan, 5);
    }
}

#[test]
fn aborts_below_threshold() {
    let xs = inputs(6, 5, 4);
    let cfg = SecAggConfig {
        threshold: Some(5),
        ..SecAggConfig::default()
    };
    let plan =
        DropoutPlan::with(6, &[(0, Step::MaskedInputCollection), (4, Step::ShareKeys)]).unwrap();
    match aggregate_in_process(&xs, &cfg, &plan, 1, SecretSource::Os) {
        Err(SecAggError::BelowThreshold {
            step,
            alive,
            threshold,
        }) => {
            // Client 4 left before sharing (U2 = 5 is still enough), client 0 before masking (U3 = 4).
            assert_eq!(
                (step, alive, threshold),
                (Step::MaskedInputCollection, 4, 5)
            );
        }
        other => panic!("expected an abort, got {other:?}"),
    }
    // Dropping only at unmasking: the masked inputs arrived, but too few share holders answer.
    let plan = DropoutPlan::with(6, &[(1, Step::Unmasking), (2, Step::Unmasking)]).unwrap();
    let err = aggregate_in_process(&xs, &cfg, &plan, 1, SecretSource::Os).unwrap_err();
    assert!(matches!(
        err,
        SecAggError::BelowThreshold {
            step: Step::Unmasking,
            ..
        }
    ));
    assert!(err.to_string().contains("threshold is 5"));
    // Invalid configurations are refused up front.
    for bad in [Some(1), Some(7)] {
        let cfg = SecAggConfig {
            threshold: bad,
            ..SecAggConfig::default()
        };
        assert!(matches!(
            aggregate_in_process(&xs, &cfg, &DropoutPlan::default(), 1, SecretSource::Os),
            Err(SecAggError::InvalidConfig(_))
        ));
    }
    assert!(
        aggregate_in_process(
            &xs[..1],
            &SecAggConfig::default(),
            &DropoutPlan::default(),
            1,
            SecretSource::Os
        )
        .is_err()
    );
}

#[test]
fn graph_neighbourhood_without_enough_share_holders_aborts() {
    // Degree 4, threshold 5 of 5 share holders: one dropped neighbour at masking makes the
    // dropped client's key unrecoverable... and the survivors' b too.
    let xs = inputs(12, 4, 8);
    let cfg = SecAggConfig {
        degree: Some(4),
        threshold: Some(5),
        ..SecAggConfig::default()
    };
    let plan = DropoutPlan::with(12, &[(5, Step::Unmasking)]).unwrap();
    let err = aggregate_in_process(&xs, &cfg, &plan, 2, SecretSource::Os).unwrap_err();
    assert!(
        matches!(
            err,
            SecAggError::NotEnoughShares {
                needed: 5,
                got: 4,
                ..
            }
        ),
        "{err}"
    );
}

/// Runs the state machines directly (no channels) up to the masked inputs.
struct Direct {
    params: RoundParams,
    clients: Vec<ClientState>,
    server: ServerState,
}

impl Direct {
    fn new(xs: &[Vec<f32>], cfg: &SecAggConfig) -> Direct {
        let params = RoundParams::new(xs.len(), xs[0].len(), cfg, [9; 16]).unwrap();
        let clients = xs
            .iter()
            .enumerate()
            .map(|(i, x)| {
                ClientState::new(i as u32, x, &params, prg::seeded(100 + i as u64)).unwrap()
            })
            .collect();
        let server = ServerState::new(&params, 5);
        Direct {
            params,
            clients,
            server,
        }
    }

    fn keys(&mut self) -> Vec<(u32, KeyBroadcast)> {
        for c in &mut self.clients {
            self.server
                .receive_keys(c.advertise_keys().unwrap())
                .unwrap();
        }
        self.server.broadcast_keys().unwrap()
    }

    fn shares(&mut self) -> Vec<(u32, ForwardedShares)> {
        for (u, kb) in self.keys() {
            let m = self.clients[u as usize].share_keys(kb).unwrap();
            self.server.receive_shares(u, m).unwrap();
        }
        self.server.forward_shares().unwrap()
    }
}

#[test]
fn tampered_or_truncated_shares_are_rejected() {
    let xs = inputs(4, 8, 5);
    let mut d = Direct::new(&xs, &SecAggConfig::default());
    let mut fwd = d.shares();
    let (v, mut msg) = fwd.remove(1);
    let good = msg.clone();
    msg.shares[0].ct[20] ^= 0x40;
    let err = d.clients[v as usize].masked_input(msg).unwrap_err();
    assert!(
        matches!(err, SecAggError::Decryption { to, .. } if to == v),
        "{err}"
    );

    // Truncated ciphertext.
    let mut d = Direct::new(&xs, &SecAggConfig::default());
    let mut fwd = d.shares();
    let (v, mut msg) = fwd.remove(2);
    msg.shares[1].ct.truncate(50);
    assert!(matches!(
        d.clients[v as usize].masked_input(msg),
        Err(SecAggError::Malformed(_))
    ));

    // A share relabelled as coming from another client fails authentication.
    let mut d = Direct::new(&xs, &SecAggConfig::default());
    let mut fwd = d.shares();
    let (v, mut msg) = fwd.remove(0);
    let other = msg.shares[1].peer;
    msg.shares[0].peer = other;
    msg.shares.remove(1);
    assert!(matches!(
        d.clients[v as usize].masked_input(msg),
        Err(SecAggError::Decryption { .. })
    ));
    // The untampered message still works on a fresh run.
    assert!(!good.shares.is_empty());
}

#[test]
fn server_rejects_bad_client_messages() {
    let xs = inputs(4, 8, 6);
    let mut d = Direct::new(&xs, &SecAggConfig::default());
    let kbs = d.keys();
    let mut msgs: Vec<ShareKeys> = kbs
        .into_iter()
        .map(|(u, kb)| d.clients[u as usize].share_keys(kb).unwrap())
        .collect();
    // Wrong id: client 1's message on client 0's channel.
    assert!(matches!(
        d.server.receive_shares(0, msgs[1].clone()),
        Err(SecAggError::WrongId {
            expected: 0,
            got: 1
        })
    ));
    // Truncated ciphertext, unknown recipient, duplicate recipient.
    let mut bad = msgs[0].clone();
    bad.shares[0].ct.pop();
    assert!(matches!(
        d.server.receive_shares(0, bad),
        Err(SecAggError::Malformed(_))
    ));
    let mut bad = msgs[0].clone();
    bad.shares[0].peer = 77;
    assert!(matches!(
        d.server.receive_shares(0, bad),
        Err(SecAggError::UnknownClient(77))
    ));
    let mut bad = msgs[0].clone();
    bad.shares[1].peer = bad.shares[0].peer;
    assert!(matches!(
        d.server.receive_shares(0, bad),
        Err(SecAggError::Duplicate(_))
    ));
    for (u, m) in msgs.drain(..).enumerate() {
        d.server.receive_shares(u as u32, m).unwrap();
    }
    // Out of order: keys again.
    assert!(matches!(
        d.server.receive_keys(AdvertiseKeys {
            id: 0,
            c_pk: [1; 32],
            s_pk: [1; 32]
        }),
        Err(SecAggError::WrongPhase { .. })
    ));
    let fwd = d.server.forward_shares().unwrap();
    let masked: Vec<MaskedInput> = fwd
        .into_iter()
        .map(|(v, f)| d.clients[v as usize].masked_input(f).unwrap())
        .collect();
    let mut short = masked[0].clone();
    short.packed.pop();
    assert!(matches!(
        d.server.receive_masked(0, &short),
        Err(SecAggError::Malformed(_))
    ));
    let mut long = masked[0].clone();
    long.len += 1;
    assert!(matches!(
        d.server.receive_masked(0, &long),
        Err(SecAggError::DimMismatch { .. })
    ));
    for (u, m) in masked.iter().enumerate() {
        d.server.receive_masked(u as u32, m).unwrap();
    }
    assert!(matches!(
        d.server.receive_masked(0, &masked[0]),
        Err(SecAggError::Duplicate(0))
    ));
    let reqs = d.server.unmask_requests().unwrap();
    let resps: Vec<UnmaskResponse> = reqs
        .into_iter()
        .map(|(v, r)| d.clients[v as usize].unmask(r).unwrap())
        .collect();
    let mut incomplete = resps[0].clone();
    incomplete.b_shares.pop();
    assert!(matches!(
        d.server.receive_unmask(0, incomplete),
        Err(SecAggError::Malformed(_))
    ));
    for (u, r) in resps.into_iter().enumerate() {
        d.server.receive_unmask(u as u32, r).unwrap();
    }
    let out = d.server.finish().unwrap();
    let ids: Vec<u32> = (0..4).collect();
    assert_eq!(out.sum, plain_sum(&xs, &ids, &d.params));
}

#[test]
fn client_refuses_to_unmask_a_client_twice() {
    let xs = inputs(5, 8, 7);
    let mut d = Direct::new(&xs, &SecAggConfig::default());
    for (v, f) in d.shares() {
        let m = d.clients[v as usize].masked_input(f).unwrap();
        d.server.receive_masked(v, &m).unwrap();
    }
    // A curious server asks client 0 for both the b-share and the key share of client 2.
    let req = UnmaskRequest {
        survivors: vec![0, 1, 2, 3, 4],
        dropped: vec![2],
    };
    assert!(matches!(
        d.clients[0].unmask(req),
        Err(SecAggError::UnmaskConflict { client: 2 })
    ));
}

#[test]
fn truncated_frames_are_decode_errors() {
    let (mut a, mut b) = in_memory_pair(&NetConfig::default());
    let msg = MaskedInput {
        id: 1,
        len: 3,
        packed: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    };
    let mut bytes = ppml_net::encode(&msg).unwrap();
    bytes.truncate(bytes.len() - 3);
    a.send_bytes(bytes).unwrap();
    assert!(matches!(
        b.recv::<MaskedInput>(),
        Err(ppml_net::NetError::Decode(_))
    ));
}

/// Chi-square statistic of the top 4 bits of k-bit values against the uniform law.
fn chi_square(v: &[u64], k: u32) -> f64 {
    let mut bins = [0f64; 16];
    for &x in v {
        bins[(x >> (k - 4)) as usize & 15] += 1.0;
    }
    let e = v.len() as f64 / 16.0;
    bins.iter().map(|o| (o - e) * (o - e) / e).sum()
}

#[test]
fn server_view_is_uniform_whatever_the_input() {
    // The masked vector of client 0 (what the server receives) looks uniform in Z_2^k
    // both for an all-zero input and for a constant input, and never equals the input.
    let d = 20_000;
    for fill in [-1.0f32, 0.0, 0.7] {
        let mut xs = inputs(3, d, 9);
        xs[0] = vec![fill; d];
        let mut s = Direct::new(&xs, &SecAggConfig::default());
        let k = s.params.ring_bits;
        let fwd = s.shares();
        let (v, f) = fwd.into_iter().next().unwrap();
        assert_eq!(v, 0);
        let m = s.clients[0].masked_input(f).unwrap();
        let y = pack::unpack(&m.packed, k, d).unwrap();
        let chi = chi_square(&y, k);
        // 15 degrees of freedom: P(chi2 > 45) < 1e-4.
        assert!(chi < 45.0, "chi-square {chi} for input {fill}");
        let q = s.params.quantizer().unwrap().encode(&xs[0]).unwrap();
        let equal = y.iter().zip(&q).filter(|(a, b)| a == b).count();
        assert!(equal < 10, "{equal} coordinates unmasked");
    }
    // Sanity check of the statistic: an unmasked constant vector is far from uniform.
    assert!(chi_square(&vec![1u64 << 19; d], 20) > 1000.0);
}

#[test]
fn over_tcp() {
    use std::net::TcpListener;
    let n = 4;
    let xs = inputs(n, 16, 11);
    let cfg = SecAggConfig::default();
    let params = RoundParams::new(n, 16, &cfg, [3; 16]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let net = NetConfig::default();
    let mut clients = Vec::new();
    for (i, x) in xs.iter().enumerate() {
        let (p, x, net) = (params.clone(), x.clone(), net.clone());
        clients.push(std::thread::spawn(move || {
            let ch = ppml_net::tcp::connect(addr, &net)?;
            let st = ClientState::new(i as u32, &x, &p, prg::from_entropy())?;
            // Client 2 drops before sending its masked input.
            let drop = (i == 2).then_some(Step::MaskedInputCollection);
            run_client(ch, st, drop)
        }));
    }
    let chans: Vec<_> = (0..n)
        .map(|_| ppml_net::tcp::accept(&listener, &net).unwrap())
        .collect();
    let run = run_server(chans, ServerState::new(&params, 1)).unwrap();
    for c in clients {
        c.join().unwrap().unwrap();
    }
    assert_eq!(run.output.survivors, vec![0, 1, 3]);
    assert_eq!(run.output.sum, plain_sum(&xs, &[0, 1, 3], &params));
    assert!(run.stats.traffic.bytes_received > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn any_plan_gives_the_exact_sum_or_a_clean_abort(
        n in 3usize..14, d in 1usize..12, frac in 0.0f64..0.6, seed in any::<u64>(), graph in any::<bool>(),
    ) {
        let xs = inputs(n, d, seed);
        let cfg = SecAggConfig { graph, degree: graph.then_some(4), ..SecAggConfig::default() };
        let plan = DropoutPlan::random(n, frac, seed).unwrap();
        match aggregate_in_process(&xs, &cfg, &plan, seed, SecretSource::Os) {
            Ok(out) => prop_assert_eq!(out.sum_quantised, plain_sum(&xs, &out.survivors, &out.params)),
            Err(SecAggError::BelowThreshold { .. }) | Err(SecAggError::NotEnoughShares { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

/// The exactness check `ppml secagg-bench` reports: true for a correct round,
/// false as soon as one coordinate of the server's sum is off by one, or when
/// a dropped client's input is counted.
#[test]
fn exactness_check_catches_a_wrong_sum() {
    let xs: Vec<Vec<f32>> = (0..6)
        .map(|i| {
            (0..40)
                .map(|j| ((i * 7 + j) % 11) as f32 / 11.0 - 0.5)
                .collect()
        })
        .collect();
    let plan = DropoutPlan::with(6, &[(2, Step::MaskedInputCollection)]).unwrap();
    let out =
        aggregate_in_process(&xs, &SecAggConfig::default(), &plan, 3, SecretSource::Os).unwrap();
    assert!(out.sum_is_exact(&xs).unwrap());
    assert!(out.max_abs_error(&xs) <= out.error_bound);
    let mut bad = out.clone();
    bad.sum_quantised[17] = bad.sum_quantised[17].wrapping_add(1);
    assert!(!bad.sum_is_exact(&xs).unwrap());
    let mut counted_dropout = out.clone();
    counted_dropout.survivors = vec![0, 1, 2, 3, 4, 5];
    assert!(!counted_dropout.sum_is_exact(&xs).unwrap());
    assert!(counted_dropout.max_abs_error(&xs) > out.error_bound);
}
