//! Finite-difference gradient checks for every layer and both losses.

use ppml_nn::{Conv2d, Layer, Linear, MaxPool2d, Model};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Checks d(loss)/d(params) and d(loss)/d(input) against central differences (in f64 sums of f32 evals).
fn check(model: &Model, batch: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = rand_vec(batch * model.input_size(), &mut rng);
    let out = model.output_size();
    let labels: Vec<u8> = (0..batch)
        .map(|i| (i % out.max(2)) as u8 % (out.max(2) as u8))
        .collect();
    let labels: Vec<u8> = if out == 1 {
        labels.iter().map(|l| l % 2).collect()
    } else {
        labels
    };

    // analytic: loss gradient w.r.t. logits, then model.backward
    let cache = model.forward_train(&x, batch);
    let mut dl = vec![0.0; cache.output().len()];
    ppml_nn::loss_grad(cache.output(), &labels, batch, out, &mut dl);
    let (grads, gx) = model.backward(&cache, &dl);
    let (loss2, grads2) = model.loss_and_grad(&x, &labels, batch);
    assert_eq!(
        grads, grads2,
        "loss_and_grad agrees with forward_train + backward"
    );
    assert!((loss2 - model.loss(&x, &labels, batch)).abs() < 1e-6);

    // small enough that a step rarely crosses a ReLU kink or flips a max-pool
    // winner, large enough for f32 round-off (~1e-7 * loss / eps)
    let eps = 3e-3f32;
    let p0 = model.params_flat();
    assert_eq!(grads.flat.len(), p0.len());
    let mut m = model.clone();
    let n_checks = p0.len().min(60);
    let mut worst = 0.0f32;
    for c in 0..n_checks {
        let i = if p0.len() <= 60 {
            c
        } else {
            rng.random_range(0..p0.len())
        };
        let mut p = p0.clone();
        p[i] = p0[i] + eps;
        m.set_params_flat(&p).unwrap();
        let lp = m.loss(&x, &labels, batch);
        p[i] = p0[i] - eps;
        m.set_params_flat(&p).unwrap();
        let lm = m.loss(&x, &labels, batch);
        let num = (lp - lm) / (2.0 * eps);
        let err = (num - grads.flat[i]).abs() / (1.0f32).max(num.abs());
        worst = worst.max(err);
        assert!(
            err < 2e-2,
            "param {i}: numeric {num} vs analytic {}",
            grads.flat[i]
        );
    }
    for c in 0..x.len().min(40) {
        let i = if x.len() <= 40 {
            c
        } else {
            rng.random_range(0..x.len())
        };
        let mut xp = x.clone();
        xp[i] += eps;
        let lp = model.loss(&xp, &labels, batch);
        xp[i] -= 2.0 * eps;
        let lm = model.loss(&xp, &labels, batch);
        let num = (lp - lm) / (2.0 * eps);
        let err = (num - gx[i]).abs() / (1.0f32).max(num.abs());
        assert!(err < 2e-2, "input {i}: numeric {num} vs analytic {}", gx[i]);
    }
    // the gradients are not trivially zero
    assert!(grads.flat.iter().any(|g| g.abs() > 1e-4));
    assert!(gx.iter().any(|g| g.abs() > 1e-4));
}

#[test]
fn linear_and_softmax_nll() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let m = Model {
        arch: "t".into(),
        layers: vec![Layer::Linear(Linear::new(7, 5, &mut rng))],
        input_shape: vec![7],
    };
    check(&m, 4, 2);
}

#[test]
fn linear_relu_linear() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let m = Model {
        arch: "t".into(),
        layers: vec![
            Layer::Linear(Linear::new(9, 8, &mut rng)),
            Layer::Relu,
            Layer::Linear(Linear::new(8, 6, &mut rng)),
        ],
        input_shape: vec![9],
    };
    check(&m, 7, 4);
}

#[test]
fn large_linear_through_matrixmultiply() {
    // dims above nalgebra's small-matrix threshold exercise the sgemm path
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let m = Model {
        arch: "t".into(),
        layers: vec![
            Layer::Linear(Linear::new(30, 20, &mut rng)),
            Layer::Relu,
            Layer::Linear(Linear::new(20, 10, &mut rng)),
        ],
        input_shape: vec![30],
    };
    check(&m, 12, 6);
}

#[test]
fn binary_logistic_output() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let m = Model {
        arch: "t".into(),
        layers: vec![Layer::Linear(Linear::new(10, 1, &mut rng))],
        input_shape: vec![10],
    };
    check(&m, 6, 8);
}

#[test]
fn conv_relu_pool_flatten_linear() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let c1 = Conv2d::new(2, 3, 3, 1, 1, (6, 6), &mut rng);
    let m = Model {
        arch: "t".into(),
        layers: vec![
            Layer::Conv2d(c1),
            Layer::Relu,
            Layer::MaxPool2d(MaxPool2d {
                kernel: 2,
                stride: 2,
                channels: 3,
                input_hw: (6, 6),
            }),
            Layer::Flatten,
            Layer::Linear(Linear::new(27, 4, &mut rng)),
        ],
        input_shape: vec![2, 6, 6],
    };
    m.validate().unwrap();
    check(&m, 3, 10);
}

#[test]
fn strided_unpadded_conv_and_second_conv() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let c1 = Conv2d::new(1, 4, 3, 2, 0, (9, 9), &mut rng); // -> 4 x 4 x 4
    let c2 = Conv2d::new(4, 6, 2, 1, 1, (4, 4), &mut rng); // -> 6 x 5 x 5
    let m = Model {
        arch: "t".into(),
        layers: vec![
            Layer::Conv2d(c1),
            Layer::Relu,
            Layer::Conv2d(c2),
            Layer::Flatten,
            Layer::Linear(Linear::new(150, 3, &mut rng)),
        ],
        input_shape: vec![1, 9, 9],
    };
    m.validate().unwrap();
    check(&m, 2, 12);
}

#[test]
fn conv_matches_direct_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let c = Conv2d::new(2, 3, 3, 2, 1, (5, 5), &mut rng);
    let (ho, wo) = c.output_hw();
    let m = Model {
        arch: "t".into(),
        layers: vec![Layer::Conv2d(c.clone())],
        input_shape: vec![2, 5, 5],
    };
    let x = rand_vec(2 * 25, &mut rng);
    let y = m.forward(&x, 1);
    for o in 0..3 {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut s = c.bias[o];
                for i in 0..2 {
                    for ki in 0..3 {
                        for kj in 0..3 {
                            let iy = (oy * 2 + ki) as isize - 1;
                            let ix = (ox * 2 + kj) as isize - 1;
                            if (0..5).contains(&iy) && (0..5).contains(&ix) {
                                s += c.weight[((o * 2 + i) * 3 + ki) * 3 + kj]
                                    * x[i * 25 + iy as usize * 5 + ix as usize];
                            }
                        }
                    }
                }
                let got = y[(o * ho + oy) * wo + ox];
                assert!((got - s).abs() < 1e-5, "{got} vs {s}");
            }
        }
    }
}

#[test]
fn maxpool_alone() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let m = Model {
        arch: "t".into(),
        layers: vec![
            Layer::MaxPool2d(MaxPool2d {
                kernel: 2,
                stride: 2,
                channels: 2,
                input_hw: (4, 6),
            }),
            Layer::Flatten,
            Layer::Linear(Linear::new(12, 3, &mut rng)),
        ],
        input_shape: vec![2, 4, 6],
    };
    m.validate().unwrap();
    check(&m, 3, 16);
}

#[test]
fn conv_relu_alone() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let m = Model {
        arch: "t".into(),
        layers: vec![
            Layer::Conv2d(Conv2d::new(2, 3, 3, 1, 1, (6, 6), &mut rng)),
            Layer::Relu,
            Layer::Flatten,
            Layer::Linear(Linear::new(108, 4, &mut rng)),
        ],
        input_shape: vec![2, 6, 6],
    };
    check(&m, 3, 18);
}
