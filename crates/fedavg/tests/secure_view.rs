//! What the server receives in a secure round does not depend on any single
//! client's update: every frame the server's channels receive is recorded
//! (ppml-net's `RecordingTransport`) for two runs in which client 0 holds
//! opposite extreme updates. The frames have the same shapes in both runs,
//! and client 0's masked input is indistinguishable from uniform in `Z_2^k`
//! in both, by a chi-square test that flags the unmasked input (the
//! deliberately leaky variant: what a server summing in the clear receives).

use ppml_fedavg::net::ToServer;
use ppml_fedavg::secure::{SecureSlot, client_round, default_config, server_round};
use ppml_net::{Channel, NetConfig, RecordingTransport, in_memory_transport_pair};
use ppml_secagg::messages::MaskedInput;
use ppml_secagg::pack::unpack;
use ppml_secagg::{Quantizer, RoundParams};
use std::time::Duration;

const N: usize = 4;
const DIM: usize = 2048;

/// Runs one secure round; returns every frame each server channel received.
fn server_view(x0: f32) -> (Vec<Vec<Vec<u8>>>, RoundParams) {
    let cfg = default_config(None, false);
    let params = RoundParams::new(N, DIM, &cfg, [1; 16]).unwrap();
    let net = NetConfig::default().with_timeout(Duration::from_secs(30));
    let mut server_chs = Vec::new();
    let mut logs = Vec::new();
    let mut client_chs = Vec::new();
    for _ in 0..N {
        let (s, c) = in_memory_transport_pair(&net);
        let rec = RecordingTransport::new(s);
        logs.push(rec.log());
        server_chs.push(Channel::new(Box::new(rec), &net));
        client_chs.push(Channel::new(Box::new(c), &net));
    }
    let out = std::thread::scope(|s| {
        for (i, mut ch) in client_chs.into_iter().enumerate() {
            let slot = SecureSlot {
                index: i as u32,
                params: params.clone(),
            };
            let x = if i == 0 {
                vec![x0; DIM]
            } else {
                vec![0.25; DIM]
            };
            s.spawn(move || client_round(&mut ch, 1, &slot, &x, None).unwrap());
        }
        let mut links: Vec<&mut Channel> = server_chs.iter_mut().collect();
        server_round(&mut links, 1, &params, 5)
    });
    assert!(out.aborted.is_none() && out.survivors.len() == N, "{out:?}");
    let view = logs
        .iter()
        .map(|l| l.lock().unwrap().clone())
        .collect::<Vec<_>>();
    (view, params)
}

/// Client 0's masked input as the server received it.
fn masked_of_client0(view: &[Vec<Vec<u8>>], params: &RoundParams) -> Vec<u64> {
    for f in &view[0] {
        if let Ok(ToServer::Secure { step: 2, msg, .. }) = ppml_net::decode::<ToServer>(f) {
            let m: MaskedInput = ppml_net::decode(&msg).unwrap();
            return unpack(&m.packed, params.ring_bits, m.len as usize).unwrap();
        }
    }
    panic!("no masked input from client 0");
}

/// Chi-square statistic of the top 4 bits of `k`-bit values over 16 bins.
fn chi_square_top_bits(v: &[u64], k: u32) -> f64 {
    let mut bins = [0f64; 16];
    for &x in v {
        bins[(x >> (k - 4)) as usize & 15] += 1.0;
    }
    let e = v.len() as f64 / 16.0;
    bins.iter().map(|&o| (o - e) * (o - e) / e).sum()
}

// 15 degrees of freedom: P(chi2 > 60) < 1e-6 for uniform data.
const CHI2_LIMIT: f64 = 60.0;

#[test]
fn the_servers_view_does_not_depend_on_a_single_clients_update() {
    let (low, params) = server_view(-2.0);
    let (high, _) = server_view(2.0);
    // Same frames, same sizes, whatever client 0 holds.
    for (a, b) in low.iter().zip(&high) {
        let la: Vec<usize> = a.iter().map(Vec::len).collect();
        let lb: Vec<usize> = b.iter().map(Vec::len).collect();
        assert_eq!(la, lb);
    }
    let k = params.ring_bits;
    for view in [&low, &high] {
        let y = masked_of_client0(view, &params);
        let chi = chi_square_top_bits(&y, k);
        assert!(chi < CHI2_LIMIT, "masked input not uniform: chi2 {chi}");
    }
    // The leaky variant: the quantised input as an unmasked sum would see it.
    let q = Quantizer::new(params.bits, f32::from_bits(params.clip_bits)).unwrap();
    for x0 in [-2.0f32, 2.0, 0.3] {
        let leaky = q.encode(&vec![x0; DIM]).unwrap();
        let chi = chi_square_top_bits(&leaky, k);
        assert!(
            chi > CHI2_LIMIT,
            "the test cannot see a plaintext input ({chi})"
        );
    }
    // And the raw bytes of the plaintext input appear in no received frame.
    let plain = ppml_secagg::pack::pack(&q.encode(&vec![2.0f32; DIM]).unwrap(), k);
    for frames in &high {
        for f in frames {
            assert!(
                !f.windows(64).any(|w| w == &plain[..64]),
                "plaintext input bytes in the server's view"
            );
        }
    }
}
