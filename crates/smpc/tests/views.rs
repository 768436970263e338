//! "P0, P1 and P2 never see the secret": what each role receives must not
//! depend on the model weights or the images. Two runs with very different
//! secrets (an all-zero model and all-zero images, versus a random model and
//! random images) and independent randomness must give every role frames of
//! the same lengths whose byte distributions are statistically the same. A
//! frame carrying a plaintext (or a badly masked value) of the all-zero
//! secret would be degenerate and fail the test.

use ppml_net::{FrameLog, NetConfig, Network, RecordingTransport};
use ppml_nn::Model;
use ppml_smpc::SecretSource;
use ppml_smpc::inference::{RoleInput, run_role};
use ppml_smpc::party::{DATA_OWNER, MODEL_OWNER, ProtocolConfig};
use ppml_smpc::sim;
use std::sync::{Arc, Mutex};

fn views(model: &Model, images: &[f32], seed: u64) -> Vec<Vec<Vec<u8>>> {
    let logs: Vec<FrameLog> = (0..5).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let l2 = logs.clone();
    let nets = Network::in_memory_with(5, &NetConfig::default(), move |me, _peer, t| {
        Box::new(RecordingTransport::with_log(t, Arc::clone(&l2[me])))
    });
    sim::run_networks(
        nets,
        ProtocolConfig::default(),
        SecretSource::InsecureDeterministic(seed),
        |party| {
            let input = match party.id {
                MODEL_OWNER => RoleInput::Model(model),
                DATA_OWNER => RoleInput::Data { images, batch: 8 },
                _ => RoleInput::Computing,
            };
            run_role(party, &input)
        },
    )
    .unwrap();
    logs.iter().map(|l| l.lock().unwrap().clone()).collect()
}

/// Two-sample chi-square statistic of two byte histograms and its degrees of freedom.
fn chi2(a: &[u8], b: &[u8]) -> (f64, f64) {
    let (mut ha, mut hb) = ([0f64; 256], [0f64; 256]);
    a.iter().for_each(|&x| ha[x as usize] += 1.0);
    b.iter().for_each(|&x| hb[x as usize] += 1.0);
    let mut stat = 0.0;
    let mut bins = 0.0;
    for i in 0..256 {
        let s = ha[i] + hb[i];
        if s > 0.0 {
            stat += (ha[i] - hb[i]).powi(2) / s;
            bins += 1.0;
        }
    }
    (stat, (bins - 1.0f64).max(1.0))
}

#[test]
fn every_role_view_is_independent_of_the_secrets() {
    let mut zero = Model::from_arch("net-a", 1).unwrap();
    let n = zero.num_params();
    zero.set_params_flat(&vec![0.0; n]).unwrap();
    let random = Model::from_arch("net-a", 99).unwrap();
    let count = 24;
    let zeros = vec![0f32; count * 784];
    let noise: Vec<f32> = (0..count * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
        .collect();
    let va = views(&zero, &zeros, 1);
    let vb = views(&random, &noise, 2);
    for role in 0..5 {
        assert_eq!(
            va[role].len(),
            vb[role].len(),
            "role {role}: number of frames"
        );
        let mut checked = 0;
        for (k, (fa, fb)) in va[role].iter().zip(&vb[role]).enumerate() {
            assert_eq!(fa.len(), fb.len(), "role {role} frame {k}: length");
            if fa.len() < 2048 {
                continue; // seeds, the public plan and batch sizes, tiny frames
            }
            let (stat, dof) = chi2(fa, fb);
            // Mean dof, sd sqrt(2 dof): 8 sd is a generous bound for a true null.
            assert!(
                stat < dof + 8.0 * (2.0 * dof).sqrt(),
                "role {role} frame {k} ({} bytes): chi2 {stat:.0} for {dof} dof",
                fa.len()
            );
            // Degenerate (plaintext-like) frames have few distinct byte values.
            assert!(
                dof >= 60.0,
                "role {role} frame {k}: only {} distinct byte values",
                dof + 1.0
            );
            checked += 1;
        }
        if role < 3 {
            assert!(checked > 3, "role {role}: only {checked} frames checked");
        }
    }
}
