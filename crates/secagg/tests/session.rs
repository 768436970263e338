//! Secure aggregation over TLS sessions: clients are authenticated by their
//! certificates, and a client claiming another client's id is rejected.

use ppml_net::local::LocalDeployment;
use ppml_net::{NetConfig, Session};
use ppml_secagg::*;
use std::time::Duration;

fn cfg() -> NetConfig {
    NetConfig::default()
        .with_timeout(Duration::from_secs(20))
        .with_connect_timeout(Duration::from_secs(20))
}

#[test]
fn tls_round_with_a_client_lying_about_its_id() {
    let n = 4;
    let names = ["server", "client-0", "client-1", "client-2", "client-3"];
    let d = LocalDeployment::new(&names).unwrap();
    let session = |me: &str| {
        Session::tls(
            me,
            d.parties().unwrap(),
            &d.keys_dir(),
            SESSION_PROTOCOL,
            cfg(),
        )
        .unwrap()
    };
    let xs: Vec<Vec<f32>> = (0..n)
        .map(|i| (0..8).map(|j| (i * 8 + j) as f32 / 100.0).collect())
        .collect();
    let params = RoundParams::new(n, 8, &SecAggConfig::default(), [5; 16]).unwrap();
    let mut acceptor = session("server").listen().unwrap();
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let (s, p, x) = (session(names[i + 1]), params.clone(), xs[i].clone());
            std::thread::spawn(move || {
                let ch = connect_server(&s)?;
                // client-3 authenticates as itself but claims to be client 0 in its keys.
                let claimed = if i == 3 { 0 } else { i as u32 };
                let st = ClientState::new(claimed, &x, &p, ppml_random::os_rng())?;
                run_client(ch, st, None)
            })
        })
        .collect();
    let run = run_server_over(
        &mut acceptor,
        ServerState::new(&params, 1),
        Duration::from_secs(20),
    )
    .unwrap();
    for (i, c) in clients.into_iter().enumerate() {
        let r = c.join().unwrap();
        assert_eq!(r.is_ok(), i != 3, "client {i}: {r:?}");
    }
    assert_eq!(run.output.survivors, vec![0, 1, 2]);
    assert!(
        run.rejected
            .iter()
            .any(|(_, why)| why.contains("client-3 claims to be client 0")),
        "{:?}",
        run.rejected
    );
    let qz = params.quantizer().unwrap();
    let mut want = vec![0u64; params.dim];
    for x in &xs[..3] {
        for (a, v) in want.iter_mut().zip(qz.encode(x).unwrap()) {
            *a = (*a + v) & ring_mask(params.ring_bits);
        }
    }
    assert_eq!(run.output.sum, want);
}
