//! Hostile sizes announced by peers: a data owner that announces a batch of
//! 2^40 images, or a model owner whose plan claims an absurd layer, makes the
//! computing parties stop with a clear error instead of aborting on an
//! allocation of terabytes.

use ppml_net::{NetConfig, Network};
use ppml_nn::Model;
use ppml_smpc::inference::{LayerPlan, ModelPlan, computing_party, model_owner};
use ppml_smpc::party::{DATA_OWNER, MODEL_OWNER, P0, P1, P2, ProtocolConfig};
use ppml_smpc::{SmpcError, sim};
use std::time::Duration;

fn run(hostile_plan: Option<ModelPlan>, batches: Vec<usize>) -> Vec<Result<(), SmpcError>> {
    let nets = Network::in_memory(
        5,
        &NetConfig::default().with_timeout(Duration::from_secs(5)),
    );
    let model = Model::from_arch("mlp500", 1).unwrap();
    let runs = sim::run_networks(
        nets,
        ProtocolConfig::default(),
        ppml_smpc::SecretSource::Os,
        |party| match party.id {
            P0 | P1 | P2 => computing_party(party),
            MODEL_OWNER => match &hostile_plan {
                None => model_owner(party, &model),
                Some(plan) => {
                    for peer in [P0, P1, P2, DATA_OWNER] {
                        party.net.send(peer, plan)?;
                    }
                    Ok(())
                }
            },
            _ => {
                let _plan: ModelPlan = party.net.recv(MODEL_OWNER)?;
                for peer in [P0, P1, P2] {
                    party.net.send(peer, &batches)?;
                }
                Ok(())
            }
        },
    );
    match runs {
        // Some party failed: collect each computing party's own error by rerunning is not
        // possible, so the first error is what we check.
        Err(e) => vec![Err(e)],
        Ok(r) => r.into_iter().map(|_| Ok(())).collect(),
    }
}

#[test]
fn a_batch_of_two_to_the_forty_is_refused_with_a_clear_error() {
    let r = run(None, vec![1 << 40]);
    let err = r.into_iter().find_map(Result::err).expect("an error");
    let msg = err.to_string();
    assert!(
        msg.contains("batch size") && msg.contains("above the limit"),
        "{msg}"
    );
}

#[test]
fn an_absurd_plan_is_refused_with_a_clear_error() {
    let plan = ModelPlan {
        arch: "hostile".into(),
        input_size: 784,
        output_size: 10,
        layers: vec![LayerPlan::Linear {
            in_features: 784,
            out_features: 1 << 40,
        }],
        ranges: Default::default(),
    };
    let r = run(Some(plan), vec![10]);
    let err = r.into_iter().find_map(Result::err).expect("an error");
    let msg = err.to_string();
    assert!(
        msg.contains("out_features") && msg.contains("above the limit"),
        "{msg}"
    );
}

#[test]
fn a_plan_whose_layers_lie_about_their_inputs_is_refused_with_a_clear_error() {
    // A true cnn plan (valid ranges), then one layer lies: a convolution
    // over two channels of a one-channel image, or a pool window of zero,
    // larger than the image, or over an image four times the real one.
    // Parties that trusted these numbers would index outside their shares.
    let cnn = Model::from_arch("cnn", 1).unwrap();
    let cfg = ProtocolConfig::default();
    let truth =
        ModelPlan::for_protocol(&cnn, &cfg, ppml_smpc::inference::DEFAULT_INPUT_RANGE).unwrap();
    let lies: Vec<fn(&mut LayerPlan)> = vec![
        |l| {
            if let LayerPlan::Conv { in_channels, .. } = l {
                *in_channels = 2;
            }
        },
        |l| {
            if let LayerPlan::MaxPool { kernel, .. } = l {
                *kernel = 0;
            }
        },
        |l| {
            if let LayerPlan::MaxPool { kernel, .. } = l {
                *kernel = 29;
            }
        },
        |l| {
            if let LayerPlan::MaxPool { input_hw, .. } = l {
                *input_hw = (56, 56);
            }
        },
    ];
    for lie in lies {
        let mut plan = truth.clone();
        plan.layers.iter_mut().for_each(lie);
        assert_ne!(plan, truth);
        let r = run(Some(plan), vec![10]);
        let err = r.into_iter().find_map(Result::err).expect("an error");
        let msg = err.to_string();
        assert!(msg.contains("does not fit"), "{msg}");
    }
}
