//! ppml-nn: the plaintext half of ppml. Tensors on nalgebra (f32), the layers
//! of the MNIST models (Linear, ReLU, Conv2d, MaxPool2d, Flatten; log-softmax +
//! NLL as the loss), SGD with momentum, the named architectures (`mlp500`,
//! `net-a`, `2nn`, `split`, `cnn`, `perceptron`), model files (postcard with a
//! header, and PyTorch `.safetensors`), and the MNIST IDX loader.
//!
//! Layout contract: every batch is a row-major `batch x features` `&[f32]`;
//! [`Linear::weight`] is `out x in` row-major like PyTorch; parameters flatten
//! (weight then bias, layer by layer) with [`Model::params_flat`].
//!
//! ```
//! use ppml_nn::{Model, Sgd, Workspace};
//! let mut model = Model::from_arch("2nn", 7).unwrap();
//! let x = vec![0.5f32; 4 * 784];
//! let labels = [1u8, 2, 3, 4];
//! let mut opt = Sgd::new(0.1, 0.5);
//! let mut ws = Workspace::new();
//! let first = opt.train_step(&mut model, &x, &labels, 4, &mut ws);
//! for _ in 0..20 { opt.train_step(&mut model, &x, &labels, 4, &mut ws); }
//! let logits = model.forward(&x, 4);
//! assert_eq!(logits.len(), 4 * 10);
//! assert!(model.loss(&x, &labels, 4) < first);
//! ```

pub mod gemm;
pub mod layers;
pub mod mnist;
pub mod model;
pub mod safetensors_io;
pub mod small;
pub mod train;

pub use layers::{Conv2d, Layer, Linear, MaxPool2d};
pub use mnist::{Dataset, Mnist, Normalization};
pub use model::{
    ARCHS, ForwardCache, Gradients, InferBuffers, Model, Workspace, argmax_rows, loss_grad,
};
pub use train::{EpochStats, LrSchedule, Sgd, TrainConfig, train_epoch, train_epoch_on};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A missing, truncated, corrupt or mismatched data file.
    #[error("MNIST data: {0}")]
    Data(String),
    /// Sizes that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An architecture name [`Model::from_arch`] does not know.
    #[error("unknown architecture {0}")]
    UnknownArch(String),
    /// A foreign, corrupt or unsupported model file.
    #[error("model file: {0}")]
    Format(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// An invalid argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
}
