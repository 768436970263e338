//! Privacy tests that can fail: what each of the five roles receives must be
//! simulatable from what that role is allowed to know.
//!
//! * **Conditional views** (p0, p1, p2, model-owner, data-owner). The
//!   role's randomness is fixed (every stream seed it holds is the same in
//!   every run, through the test-only seed hook) while everyone else's
//!   randomness is fresh in each run, and the secrets change between two
//!   worlds with the same public information (shapes, batch sizes, the
//!   plan's widths, and the role's own input and output). A simulatable view
//!   then has the same distribution in both worlds. Every frame of every size
//!   is checked: equal structure, and each ring word (or byte) either varies
//!   in both worlds or is the same constant in both. A word that the role's
//!   own randomness fixes but the secret changes is a leak. The same check
//!   runs on what an attacker would decode: differences of two frames from
//!   one sender (a reused mask cancels), and every frame plus or minus the
//!   key stream of every 32-byte frame received (a seed that reached the
//!   wrong party unmasks a value). Byte histograms of each frame, pooled
//!   over runs, are compared too.
//! * **Ideal functionality** (data owner): its view must be what the ideal
//!   private inference gives it: the public plan, and per batch two uniformly
//!   random shares that sum to the predicted classes, nothing more.
//! * **Mutation suite**: each deliberately leaky variant (test-only hooks,
//!   `ppml_smpc::party::TestOnlyLeak`) must be caught by these checks.

use ppml_net::{FrameLog, NetConfig, Network, RecordingTransport};
use ppml_nn::{Conv2d, Layer, Linear, MaxPool2d, Model};
use ppml_smpc::inference::{ModelPlan, RoleInput, run_role};
use ppml_smpc::party::{
    DATA_OWNER, MODEL_OWNER, P0, P1, P2, Party, Prg, ProtocolConfig, Stream, TestOnlyHooks,
    TestOnlyLeak, party_name,
};
use ppml_smpc::range::DEFAULT_INPUT_RANGE;
use std::sync::{Arc, Mutex};

const STREAMS: [Stream; 7] = [
    Stream::S01,
    Stream::S02,
    Stream::S12,
    Stream::M02,
    Stream::M12,
    Stream::D02,
    Stream::D12,
];
/// Runs per world. A uniform ring word, or a uniform Z_67 byte, repeats in
/// all of them with probability below 67^-11.
const REPS: usize = 12;
const BATCH: usize = 3;
const IMAGES: usize = 6;

/// What one role received, per sender, in order.
type View = Vec<Vec<Vec<u8>>>;

/// A small deterministic generator for test data (not secrets).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        for c in s.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        s
    }
}

fn linear(inp: usize, out: usize, g: &mut Lcg) -> Linear {
    Linear {
        weight: (0..inp * out).map(|_| g.unit() * 2.0 - 1.0).collect(),
        bias: (0..out).map(|_| g.unit() - 0.5).collect(),
        in_features: inp,
        out_features: out,
    }
}

/// A tiny MLP (6-5-3) and a tiny CNN (conv 1->2 on 4x4, ReLU, 2x2 max pool,
/// linear 8->3), so that every frame is small and runs are fast.
fn tiny_models(seed: u64) -> Vec<Model> {
    let mut g = Lcg(seed);
    let mlp = Model {
        arch: "tiny-mlp".into(),
        layers: vec![
            Layer::Linear(linear(6, 5, &mut g)),
            Layer::Relu,
            Layer::Linear(linear(5, 3, &mut g)),
        ],
        input_shape: vec![6],
    };
    let conv = Conv2d {
        in_channels: 1,
        out_channels: 2,
        kernel: 3,
        stride: 1,
        padding: 1,
        input_hw: (4, 4),
        weight: (0..18).map(|_| g.unit() - 0.5).collect(),
        bias: vec![0.1, -0.2],
    };
    let mut cnn_head = linear(8, 3, &mut g);
    cnn_head.in_features = 8;
    let cnn = Model {
        arch: "tiny-cnn".into(),
        layers: vec![
            Layer::Conv2d(conv),
            Layer::Relu,
            Layer::MaxPool2d(MaxPool2d {
                kernel: 2,
                stride: 2,
                channels: 2,
                input_hw: (4, 4),
            }),
            Layer::Flatten,
            Layer::Linear(cnn_head),
        ],
        input_shape: vec![1, 4, 4],
    };
    vec![mlp, cnn]
}

/// The same function with other weights: the first weighted layer's output
/// units (or channels) permuted, and the next layer's inputs with them.
fn permuted(model: &Model) -> Model {
    let mut m = model.clone();
    match (&m.layers[0], m.layers.last()) {
        (Layer::Linear(_), _) => {
            let (Layer::Linear(a), Layer::Linear(b)) = (m.layers[0].clone(), m.layers[2].clone())
            else {
                unreachable!("tiny MLP layout")
            };
            let perm: Vec<usize> = (0..a.out_features).rev().collect();
            let mut a2 = a.clone();
            let mut b2 = b.clone();
            for (new, &old) in perm.iter().enumerate() {
                for i in 0..a.in_features {
                    a2.weight[new * a.in_features + i] = a.weight[old * a.in_features + i];
                }
                a2.bias[new] = a.bias[old];
                for o in 0..b.out_features {
                    b2.weight[o * b.in_features + new] = b.weight[o * b.in_features + old];
                }
            }
            m.layers[0] = Layer::Linear(a2);
            m.layers[2] = Layer::Linear(b2);
        }
        (Layer::Conv2d(_), _) => {
            let (Layer::Conv2d(c), Layer::Linear(l)) = (m.layers[0].clone(), m.layers[4].clone())
            else {
                unreachable!("tiny CNN layout")
            };
            // Swap the two channels; the head's inputs are channel-major (2 x 4).
            let (mut c2, mut l2) = (c.clone(), l.clone());
            for ch in 0..2 {
                c2.weight[ch * 9..(ch + 1) * 9]
                    .copy_from_slice(&c.weight[(1 - ch) * 9..(2 - ch) * 9]);
                c2.bias[ch] = c.bias[1 - ch];
                for o in 0..3 {
                    for p in 0..4 {
                        l2.weight[o * 8 + ch * 4 + p] = l.weight[o * 8 + (1 - ch) * 4 + p];
                    }
                }
            }
            m.layers[0] = Layer::Conv2d(c2);
            m.layers[4] = Layer::Linear(l2);
        }
        _ => unreachable!("tiny models start with a weighted layer"),
    }
    m
}

fn images(model: &Model, seed: u64) -> Vec<f32> {
    let mut g = Lcg(seed);
    let (lo, hi) = DEFAULT_INPUT_RANGE;
    (0..IMAGES * model.input_size())
        .map(|_| lo as f32 + (hi - lo) as f32 * 0.999 * g.unit())
        .collect()
}

/// One run of all five roles; returns every role's received frames per
/// sender and the data owner's predictions.
fn run(
    model: &Model,
    imgs: &[f32],
    leak: TestOnlyLeak,
    seeds: [[u8; 32]; 7],
) -> (Vec<View>, Vec<u8>) {
    let logs: Vec<Vec<FrameLog>> = (0..5)
        .map(|_| (0..5).map(|_| Arc::new(Mutex::new(Vec::new()))).collect())
        .collect();
    let l2 = logs.clone();
    let nets = Network::in_memory_with(5, &NetConfig::default(), move |me, peer, t| {
        Box::new(RecordingTransport::with_log(t, Arc::clone(&l2[me][peer])))
    });
    let outs: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = nets
            .into_iter()
            .map(|net| {
                s.spawn(move || {
                    let id = net.me();
                    // The generator is unused: every seed comes from the hook.
                    let mut unused =
                        ppml_smpc::SecretSource::InsecureDeterministic(0).rng("unused");
                    let hooks = TestOnlyHooks::new(leak, Some(seeds));
                    let mut party =
                        Party::setup_test_only(net, ProtocolConfig::default(), &mut unused, hooks)
                            .expect("setup");
                    let input = match id {
                        MODEL_OWNER => RoleInput::Model(model),
                        DATA_OWNER => RoleInput::Data {
                            images: imgs,
                            batch: BATCH,
                        },
                        _ => RoleInput::Computing,
                    };
                    run_role(&mut party, &input).expect("role")
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let views = logs
        .iter()
        .map(|per| per.iter().map(|l| l.lock().unwrap().clone()).collect())
        .collect();
    (views, outs[DATA_OWNER].clone())
}

/// Seeds for one run: the streams `role` holds get fixed seeds, all others
/// fresh ones.
fn seeds_for(role: usize, fresh: &mut Lcg) -> [[u8; 32]; 7] {
    let mut out = [[0u8; 32]; 7];
    for (i, s) in STREAMS.iter().enumerate() {
        out[i] = if s.holders().contains(&role) {
            [i as u8 + 1; 32]
        } else {
            fresh.seed()
        };
    }
    out
}

/// A frame as units: little-endian u64 words when its length allows, else bytes.
fn units(frame: &[u8]) -> Vec<u64> {
    if frame.len().is_multiple_of(8) {
        frame
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    } else {
        frame.iter().map(|&b| u64::from(b)).collect()
    }
}

/// A leak if some unit is fixed by the role's randomness but differs between
/// the worlds, or is fixed in one world while clearly random (at least four
/// distinct values) in the other. (A unit with little entropy, such as the
/// last byte of a packed Z_67 message holding one high bit, can repeat by
/// chance in one world; it is not flagged for that alone.) `a`, `b`: one unit
/// vector per run.
fn determinism_leak(a: &[Vec<u64>], b: &[Vec<u64>]) -> Option<String> {
    let len = a[0].len();
    let distinct = |v: &[Vec<u64>], i: usize| {
        let mut d: Vec<u64> = v.iter().map(|x| x[i]).collect();
        d.sort_unstable();
        d.dedup();
        d.len()
    };
    for i in 0..len {
        let (da, db) = (distinct(a, i), distinct(b, i));
        let both_fixed_differ = da == 1 && db == 1 && a[0][i] != b[0][i];
        let one_fixed = (da == 1 && db >= 4) || (db == 1 && da >= 4);
        if both_fixed_differ || one_fixed {
            return Some(format!(
                "unit {i} of {len}: {da} distinct value(s) in world A, {db} in world B \
                 (first values {:#x} / {:#x})",
                a[0][i], b[0][i]
            ));
        }
    }
    None
}

/// Two-sample chi-square statistic of two byte histograms and its degrees of freedom.
fn chi2(a: &[u8], b: &[u8]) -> (f64, f64) {
    let (mut ha, mut hb) = ([0f64; 256], [0f64; 256]);
    a.iter().for_each(|&x| ha[x as usize] += 1.0);
    b.iter().for_each(|&x| hb[x as usize] += 1.0);
    let (mut stat, mut bins) = (0.0, 0.0);
    for i in 0..256 {
        let s = ha[i] + hb[i];
        if s > 0.0 {
            stat += (ha[i] - hb[i]).powi(2) / s;
            bins += 1.0;
        }
    }
    (stat, (bins - 1.0f64).max(1.0))
}

fn keystream(seed: &[u8], len: usize) -> Vec<u64> {
    let mut s = [0u8; 32];
    s.copy_from_slice(seed);
    let mut v = vec![0u64; len];
    Prg::from_seed(s).fill_u64(&mut v);
    v
}

/// Every privacy violation in `role`'s views of world A and world B (one
/// view per run), with the decodings described in the module docs.
fn conditional_violations(role: usize, va: &[View], vb: &[View]) -> Vec<String> {
    let name = party_name(role);
    let mut out = Vec::new();
    // Structure: who sent how many frames of which lengths.
    let shape = |v: &View| -> Vec<Vec<usize>> {
        v.iter()
            .map(|fs| fs.iter().map(|f| f.len()).collect())
            .collect()
    };
    let s0 = shape(&va[0]);
    if let Some(v) = va.iter().chain(vb).find(|v| shape(v) != s0) {
        out.push(format!(
            "{name}: frame structure differs between runs: {:?} vs {s0:?}",
            shape(v)
        ));
        return out;
    }
    // Candidate frames: every received frame, differences of two equal-length
    // frames from one sender, and each frame +- the key stream of each
    // 32-byte frame (a seed).
    type Derive<'a> = Box<dyn Fn(&View) -> Vec<u64> + 'a>;
    let mut cands: Vec<(String, Derive)> = Vec::new();
    let frames: Vec<(usize, usize)> = s0
        .iter()
        .enumerate()
        .flat_map(|(p, fs)| (0..fs.len()).map(move |k| (p, k)))
        .collect();
    for &(p, k) in &frames {
        cands.push((
            format!("frame {k} from {}", party_name(p)),
            Box::new(move |v: &View| units(&v[p][k])),
        ));
    }
    for &(p, k) in &frames {
        for &(q, l) in &frames {
            let same = p == q && k < l && s0[p][k] == s0[q][l] && s0[p][k] % 8 == 0;
            if same {
                cands.push((
                    format!("frame {k} - frame {l} from {}", party_name(p)),
                    Box::new(move |v: &View| {
                        units(&v[p][k])
                            .iter()
                            .zip(units(&v[q][l]))
                            .map(|(a, b)| a.wrapping_sub(b))
                            .collect()
                    }),
                ));
            }
            if s0[p][k] == 32 && s0[q][l] % 8 == 0 && s0[q][l] > 0 && (p, k) != (q, l) {
                for sign in [1u64, u64::MAX] {
                    cands.push((
                        format!(
                            "frame {l} from {} {} stream of 32-byte frame {k} from {}",
                            party_name(q),
                            if sign == 1 { "+" } else { "-" },
                            party_name(p)
                        ),
                        Box::new(move |v: &View| {
                            let g = units(&v[q][l]);
                            let ks = keystream(&v[p][k], g.len());
                            g.iter()
                                .zip(&ks)
                                .map(|(a, b)| a.wrapping_add(b.wrapping_mul(sign)))
                                .collect()
                        }),
                    ));
                }
            }
        }
    }
    for (what, derive) in &cands {
        let a: Vec<Vec<u64>> = va.iter().map(derive).collect();
        let b: Vec<Vec<u64>> = vb.iter().map(derive).collect();
        if let Some(why) = determinism_leak(&a, &b) {
            out.push(format!("{name}: {what}: {why}"));
        }
    }
    // Byte histograms of every frame, pooled over the runs.
    for &(p, k) in &frames {
        let pool = |vs: &[View]| -> Vec<u8> { vs.iter().flat_map(|v| v[p][k].clone()).collect() };
        let (a, b) = (pool(va), pool(vb));
        if a == b {
            continue; // a public frame, identical in every run
        }
        let (stat, dof) = chi2(&a, &b);
        // Mean dof, sd sqrt(2 dof): 8 sd is a generous bound for a true null.
        if stat > dof + 8.0 * (2.0 * dof).sqrt() {
            out.push(format!(
                "{name}: frame {k} from {} ({} bytes): byte histograms differ, chi2 {stat:.0} for {dof} dof",
                party_name(p),
                s0[p][k]
            ));
        }
    }
    out
}

/// Runs `role`'s conditional check for one model: world A and world B share
/// the public information; for the data owner (whose own input and output
/// must be the same in both worlds) the images stay, for the others they change.
fn role_violations(role: usize, model: &Model, leak: TestOnlyLeak) -> Vec<String> {
    let model_b = permuted(model);
    let imgs_a = images(model, 1);
    let imgs_b = if role == DATA_OWNER {
        imgs_a.clone()
    } else {
        images(model, 2)
    };
    let mut fresh = Lcg(0xF00D + role as u64);
    let mut collect = |m: &Model, imgs: &[f32]| -> Vec<View> {
        (0..REPS)
            .map(|_| run(m, imgs, leak, seeds_for(role, &mut fresh)).0[role].clone())
            .collect()
    };
    let va = collect(model, &imgs_a);
    let vb = collect(&model_b, &imgs_b);
    conditional_violations(role, &va, &vb)
}

/// The data owner's view against the ideal functionality: the public plan
/// from the model owner, then per batch one frame from P0 and one from P1 of
/// `batch` ring words each, summing to the plaintext model's predicted class,
/// P0's share varying from run to run; nothing else.
fn data_owner_ideal_violations(model: &Model, leak: TestOnlyLeak) -> Vec<String> {
    let imgs = images(model, 3);
    let plain = model.predict(&imgs, IMAGES);
    let plan = ModelPlan::for_protocol(model, &ProtocolConfig::default(), DEFAULT_INPUT_RANGE)
        .expect("plan");
    let plan_frame = postcard::to_allocvec(&plan).expect("plan encodes");
    let mut fresh = Lcg(77);
    let mut out = Vec::new();
    let mut first_shares: Vec<Vec<u64>> = Vec::new();
    for _ in 0..4 {
        let seeds = seeds_for(DATA_OWNER, &mut fresh);
        let (views, _) = run(model, &imgs, leak, seeds);
        let v = &views[DATA_OWNER];
        for (p, frames) in v.iter().enumerate() {
            let ok = match p {
                MODEL_OWNER => frames.len() == 1 && frames[0] == plan_frame,
                P0 | P1 => {
                    frames.len() == IMAGES / BATCH && frames.iter().all(|f| f.len() == BATCH * 8)
                }
                _ => frames.is_empty(),
            };
            if !ok {
                out.push(format!(
                    "data-owner: frames from {} are not the ideal ones (lengths {:?})",
                    party_name(p),
                    frames.iter().map(|f| f.len()).collect::<Vec<_>>()
                ));
            }
        }
        if !out.is_empty() {
            return out;
        }
        let s0: Vec<u64> = v[P0].iter().flat_map(|f| units(f)).collect();
        let s1: Vec<u64> = v[P1].iter().flat_map(|f| units(f)).collect();
        let sum: Vec<u64> = s0
            .iter()
            .zip(&s1)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        let want: Vec<u64> = plain.iter().map(|&c| u64::from(c)).collect();
        if sum != want {
            out.push(format!(
                "data-owner: shares sum to {sum:?}, the ideal output is {want:?}"
            ));
        }
        first_shares.push(s0);
    }
    if first_shares.windows(2).any(|w| w[0] == w[1]) {
        out.push("data-owner: p0's prediction share repeats across runs".into());
    }
    out
}

/// All violations, for every role and both tiny models.
fn all_violations(leak: TestOnlyLeak) -> Vec<String> {
    let mut out = Vec::new();
    for model in tiny_models(5) {
        for role in [P0, P1, P2, MODEL_OWNER, DATA_OWNER] {
            out.extend(
                role_violations(role, &model, leak)
                    .into_iter()
                    .map(|v| format!("[{}] {v}", model.arch)),
            );
        }
        out.extend(
            data_owner_ideal_violations(&model, leak)
                .into_iter()
                .map(|v| format!("[{}] {v}", model.arch)),
        );
    }
    out
}

#[test]
fn the_tiny_worlds_share_their_public_information() {
    // The checks below are only meaningful if the two worlds' public
    // information (the plan, widths included) and the data owner's output are equal.
    for model in tiny_models(5) {
        let b = permuted(&model);
        let cfg = ProtocolConfig::default();
        let pa = ModelPlan::for_protocol(&model, &cfg, DEFAULT_INPUT_RANGE).unwrap();
        let pb = ModelPlan::for_protocol(&b, &cfg, DEFAULT_INPUT_RANGE).unwrap();
        assert_eq!(
            postcard::to_allocvec(&pa).unwrap(),
            postcard::to_allocvec(&pb).unwrap()
        );
        assert_ne!(model.params_flat(), b.params_flat(), "the secret differs");
        let imgs = images(&model, 1);
        assert_eq!(model.predict(&imgs, IMAGES), b.predict(&imgs, IMAGES));
        // And the private run computes the plaintext prediction.
        let (_, preds) = run(&model, &imgs, TestOnlyLeak::None, [[9u8; 32]; 7]);
        assert_eq!(preds, model.predict(&imgs, IMAGES));
    }
}

#[test]
fn every_role_view_is_simulatable() {
    let v = all_violations(TestOnlyLeak::None);
    assert!(v.is_empty(), "privacy violations:\n{}", v.join("\n"));
}

/// Each mutation must be caught, by a check on the role it leaks to.
fn assert_caught(leak: TestOnlyLeak, role: &str) {
    let v = all_violations(leak);
    for s in v.iter().filter(|s| s.contains(role)).take(3) {
        eprintln!("{leak:?} caught: {s}");
    }
    assert!(
        v.iter().any(|s| s.contains(role)),
        "{leak:?} was not caught on {role}; violations: {v:#?}"
    );
}

#[test]
fn mutation_p0_knows_its_weight_mask_is_caught() {
    assert_caught(TestOnlyLeak::WeightMaskKnownToP0, "p0:");
}

#[test]
fn mutation_input_mask_reused_across_batches_is_caught() {
    assert_caught(TestOnlyLeak::InputMaskReused, "p0:");
}

#[test]
fn mutation_seed_sent_to_the_wrong_party_is_caught() {
    assert_caught(TestOnlyLeak::SeedToWrongParty, "p0:");
}

#[test]
fn mutation_share_sent_unmasked_is_caught() {
    assert_caught(TestOnlyLeak::ShareUnmasked, "p1:");
}

#[test]
fn mutation_logits_to_the_data_owner_is_caught() {
    assert_caught(TestOnlyLeak::LogitsToDataOwner, "data-owner:");
}
