//! `ppml.Model`: a ppml_nn model description with plaintext prediction,
//! training, evaluation, flat parameters and model files.

use crate::errors::{self, SignalPoll, check_finite};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use ppml_nn::layers::{Conv2d, Layer, Linear, MaxPool2d};
use ppml_nn::{LrSchedule, Normalization, TrainConfig, Workspace};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rand::SeedableRng;
use std::path::PathBuf;

/// A feed-forward model: layers applied in order (Linear, ReLU, Conv2d,
/// MaxPool2d, Flatten). Build one with `Model.from_torch`, `Model.load` or
/// `Model.arch`.
#[pyclass(module = "ppml", name = "Model")]
#[derive(Clone)]
pub struct Model {
    pub inner: ppml_nn::Model,
}

/// The contiguous `float32` values of `x`, checked to be a whole number of
/// model inputs; returns the values and the number of samples.
pub fn input_view<'a>(
    model: &ppml_nn::Model,
    x: &'a PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<(&'a [f32], usize)> {
    let shape = x.shape().to_vec();
    let per = model.input_size();
    let want = &model.input_shape;
    let ok = match shape.len() {
        0 => false,
        _ if shape[1..] == want[..] => true,
        2 => shape[1] == per,
        _ => false,
    };
    if !ok {
        return Err(PyValueError::new_err(format!(
            "input of shape {shape:?} does not fit the model: expected (N, {}) or (N, {per})",
            want.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let data = x
        .as_slice()
        .map_err(|_| PyValueError::new_err("input must be a C-contiguous float32 array"))?;
    Ok((data, shape[0]))
}

fn labels_view<'a>(y: &'a PyReadonlyArray1<'_, u8>, n: usize) -> PyResult<&'a [u8]> {
    let s = y
        .as_slice()
        .map_err(|_| PyValueError::new_err("labels must be a contiguous uint8 array"))?;
    if s.len() != n {
        return Err(PyValueError::new_err(format!(
            "{} labels for {n} samples",
            s.len()
        )));
    }
    Ok(s)
}

fn get<'py, T: FromPyObject<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    d.get_item(key)?
        .ok_or_else(|| PyValueError::new_err(format!("layer description lacks `{key}`")))?
        .extract()
}

fn floats(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Vec<f32>> {
    let a: PyReadonlyArrayDyn<'_, f32> = get(d, key)?;
    let v = a.as_array().iter().copied().collect::<Vec<f32>>();
    check_finite(&v, key)?;
    Ok(v)
}

fn layer_from_dict(d: &Bound<'_, PyDict>) -> PyResult<Layer> {
    let kind: String = get(d, "type")?;
    Ok(match kind.as_str() {
        "linear" => Layer::Linear(Linear {
            weight: floats(d, "weight")?,
            bias: floats(d, "bias")?,
            in_features: get(d, "in_features")?,
            out_features: get(d, "out_features")?,
        }),
        "conv2d" => Layer::Conv2d(Conv2d {
            in_channels: get(d, "in_channels")?,
            out_channels: get(d, "out_channels")?,
            kernel: get(d, "kernel")?,
            stride: get(d, "stride")?,
            padding: get(d, "padding")?,
            input_hw: get(d, "input_hw")?,
            weight: floats(d, "weight")?,
            bias: floats(d, "bias")?,
        }),
        "relu" => Layer::Relu,
        "maxpool2d" => Layer::MaxPool2d(MaxPool2d {
            kernel: get(d, "kernel")?,
            stride: get(d, "stride")?,
            channels: get(d, "channels")?,
            input_hw: get(d, "input_hw")?,
        }),
        "flatten" => Layer::Flatten,
        other => {
            return Err(PyValueError::new_err(format!(
                "unsupported layer type `{other}`"
            )));
        }
    })
}

#[pymethods]
impl Model {
    /// Builds a model from layer descriptions (dicts with a `type` of
    /// `linear`, `conv2d`, `relu`, `maxpool2d`, `flatten` and its fields;
    /// weights as float32 arrays in PyTorch's layout). `Model.from_torch`
    /// produces these.
    #[staticmethod]
    #[pyo3(signature = (input_shape, layers, arch = "custom".to_string()))]
    fn from_layers(
        input_shape: Vec<usize>,
        layers: &Bound<'_, PyList>,
        arch: String,
    ) -> PyResult<Self> {
        let layers = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let d = l
                    .downcast::<PyDict>()
                    .map_err(|_| PyValueError::new_err(format!("layer {i} is not a dict")))?;
                layer_from_dict(d).map_err(|e| PyValueError::new_err(format!("layer {i}: {e}")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        if layers.is_empty() {
            return Err(PyValueError::new_err("a model needs at least one layer"));
        }
        let inner = ppml_nn::Model {
            arch,
            layers,
            input_shape,
        };
        inner.validate().map_err(errors::nn)?;
        Ok(Model { inner })
    }

    /// A named architecture (see `ppml.ARCHS`) with PyTorch-style random
    /// initialisation from `seed`.
    #[staticmethod]
    #[pyo3(signature = (name, seed = 0))]
    fn arch(name: &str, seed: u64) -> PyResult<Self> {
        ppml_nn::Model::from_arch(name, seed)
            .map(|inner| Model { inner })
            .map_err(errors::nn)
    }

    /// Loads a model file: `.ppml`, `.onnx` (a chain of supported ops, as
    /// torch.onnx.export writes it), or `.safetensors` with PyTorch names for
    /// the architecture `arch`.
    #[staticmethod]
    #[pyo3(signature = (path, arch = None))]
    fn load(path: PathBuf, arch: Option<&str>) -> PyResult<Self> {
        ppml_nn::load_model(&path, arch)
            .map(|loaded| Model {
                inner: loaded.model,
            })
            .map_err(errors::nn)
    }

    /// Writes the model: `.safetensors` (PyTorch names) by extension,
    /// otherwise a `.ppml` file.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        if path.extension().is_some_and(|e| e == "safetensors") {
            self.inner.save_safetensors(&path)
        } else {
            self.inner.save(&path)
        }
        .map_err(errors::nn)
    }

    /// Plaintext class predictions of `x` (shape `(N, *input_shape)` or
    /// `(N, input_size)`, float32), as int64.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (data, n) = input_view(&self.inner, &x)?;
        let model = &self.inner;
        let preds = py.detach(|| -> PyResult<Vec<i64>> {
            check_finite(data, "input")?;
            Ok(ppml_smpc::inference::predict_plain(model, data, n)
                .into_iter()
                .map(i64::from)
                .collect())
        })?;
        Ok(PyArray1::from_vec(py, preds))
    }

    /// Plaintext logits of `x`, shape `(N, outputs)`.
    fn logits<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (data, n) = input_view(&self.inner, &x)?;
        let model = &self.inner;
        let out = model.output_size();
        let logits = py.detach(|| -> PyResult<Vec<f32>> {
            check_finite(data, "input")?;
            model.try_forward(data, n).map_err(errors::nn)
        })?;
        PyArray1::from_vec(py, logits).reshape([n, out])
    }

    /// Trains with minibatch SGD on `(x, y)` (labels uint8) for `epochs`
    /// epochs, shuffled from `seed`. Returns a dict with the mean loss of each
    /// epoch (`losses`), the last (`loss`), `steps` and `seconds`.
    #[pyo3(signature = (x, y, epochs = 1, batch_size = 64, lr = 0.01, momentum = 0.0,
                        weight_decay = 0.0, schedule = "constant", seed = 0))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        y: PyReadonlyArray1<'py, u8>,
        epochs: usize,
        batch_size: usize,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        schedule: &str,
        seed: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        if !(lr.is_finite() && lr > 0.0 && momentum.is_finite() && weight_decay.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "bad optimiser settings: lr {lr}, momentum {momentum}, weight_decay {weight_decay}"
            )));
        }
        let (data, n) = input_view(&self.inner, &x)?;
        let labels = labels_view(&y, n)?;
        let cfg = TrainConfig {
            epochs,
            batch: batch_size,
            lr,
            momentum,
            weight_decay,
            schedule: schedule.parse::<LrSchedule>().map_err(errors::nn)?,
            seed,
        };
        // Zero epochs would return a NaN loss and an untouched model.
        cfg.validate().map_err(errors::nn)?;
        let model = &mut self.inner;
        let (losses, steps, seconds) = py.detach(|| -> PyResult<(Vec<f32>, usize, f64)> {
            let mut opt = cfg.optimizer();
            let mut ws = Workspace::new();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut poll = SignalPoll::new();
            let (mut losses, mut steps, mut seconds) = (Vec::new(), 0, 0.0);
            for epoch in 0..epochs {
                let r = ppml_nn::train_epoch_on(
                    model,
                    data,
                    labels,
                    &cfg,
                    epoch,
                    &mut opt,
                    &mut ws,
                    &mut rng,
                    &mut |_, _, _| poll.keep_going(),
                );
                if let Some(e) = poll.pending.take() {
                    return Err(e);
                }
                let s = r.map_err(errors::nn)?;
                losses.push(s.mean_loss);
                steps += s.steps;
                seconds += s.seconds;
            }
            Ok((losses, steps, seconds))
        })?;
        let d = PyDict::new(py);
        d.set_item("loss", losses.last().copied().unwrap_or(f32::NAN))?;
        d.set_item("losses", losses)?;
        d.set_item("steps", steps)?;
        d.set_item("seconds", seconds)?;
        d.set_item("samples", n)?;
        Ok(d)
    }

    /// Accuracy and mean loss on `(x, y)`: a dict `{accuracy, loss, samples}`.
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
        y: PyReadonlyArray1<'py, u8>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (data, n) = input_view(&self.inner, &x)?;
        let labels = labels_view(&y, n)?;
        let model = &self.inner;
        let (acc, loss) = py.detach(|| -> PyResult<(f64, f64)> {
            check_finite(data, "input")?;
            let per = model.input_size();
            let out = model.output_size();
            if let Some(&bad) = labels.iter().find(|&&l| out > 1 && l as usize >= out) {
                return Err(PyValueError::new_err(format!(
                    "label {bad} does not fit {out} outputs"
                )));
            }
            let (mut correct, mut loss_sum) = (0usize, 0.0f64);
            let mut poll = SignalPoll::new();
            for (xs, ys) in data.chunks(1000 * per).zip(labels.chunks(1000)) {
                let b = ys.len();
                let logits = model.try_forward(xs, b).map_err(errors::nn)?;
                let pred = ppml_nn::argmax_rows(&logits, out);
                correct += pred.iter().zip(ys).filter(|(p, y)| p == y).count();
                let mut grad = vec![0.0; logits.len()];
                loss_sum += ppml_nn::loss_grad(&logits, ys, b, out, &mut grad) as f64 * b as f64;
                if !poll.keep_going() {
                    break;
                }
            }
            if let Some(e) = poll.pending.take() {
                return Err(e);
            }
            let n = labels.len().max(1) as f64;
            Ok((correct as f64 / n, loss_sum / n))
        })?;
        let d = PyDict::new(py);
        d.set_item("accuracy", acc)?;
        d.set_item("loss", loss)?;
        d.set_item("samples", n)?;
        Ok(d)
    }

    /// All parameters as one float32 vector (per layer: weight, then bias).
    fn get_params<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_vec(py, self.inner.params_flat())
    }

    /// Replaces all parameters from a float32 vector laid out as `get_params`.
    fn set_params(&mut self, p: PyReadonlyArray1<'_, f32>) -> PyResult<()> {
        let s = p
            .as_slice()
            .map_err(|_| PyValueError::new_err("parameters must be a contiguous float32 array"))?;
        check_finite(s, "parameters")?;
        self.inner.set_params_flat(s).map_err(errors::nn)
    }

    /// Number of parameters.
    #[getter]
    fn num_params(&self) -> usize {
        self.inner.num_params()
    }

    /// Per-sample input shape.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.inner.input_shape.clone()
    }

    /// Number of outputs (classes).
    #[getter]
    fn output_size(&self) -> usize {
        self.inner.output_size()
    }

    /// Architecture name (`custom` for imported models).
    #[getter]
    fn name(&self) -> String {
        self.inner.arch.clone()
    }

    /// Layer descriptions, e.g. `Linear(784->500)`.
    #[getter]
    fn layers(&self) -> Vec<String> {
        self.inner.layers.iter().map(|l| l.describe()).collect()
    }

    fn copy(&self) -> Self {
        self.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "ppml.Model({}, input {:?}, [{}], {} parameters)",
            self.inner.arch,
            self.inner.input_shape,
            self.layers().join(", "),
            self.inner.num_params()
        )
    }
}

/// Loads MNIST (the four IDX files, gzipped or not) from `data_dir` (default
/// `$PPML_DATA` or `data/mnist`): returns `(x_train, y_train, x_test, y_test)`
/// with images as float32 `(N, 784)` normalised by `normalize` (`standard`:
/// `(x/255 - 0.1307)/0.3081`, or `unit`: `x/255`) and labels uint8.
#[pyfunction]
#[pyo3(signature = (data_dir = None, normalize = "standard"))]
#[allow(clippy::type_complexity)]
pub fn load_mnist<'py>(
    py: Python<'py>,
    data_dir: Option<PathBuf>,
    normalize: &str,
) -> PyResult<(
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<u8>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<u8>>,
)> {
    let norm: Normalization = normalize.parse().map_err(errors::nn)?;
    let dir = data_dir.unwrap_or_else(ppml_nn::mnist::default_data_dir);
    let m = py
        .detach(|| ppml_nn::mnist::load(&dir, norm))
        .map_err(errors::nn)?;
    let (ntr, pix) = (m.train.len(), m.train.pixels());
    let nte = m.test.len();
    Ok((
        PyArray1::from_vec(py, m.train.images).reshape([ntr, pix])?,
        PyArray1::from_vec(py, m.train.labels),
        PyArray1::from_vec(py, m.test.images).reshape([nte, pix])?,
        PyArray1::from_vec(py, m.test.labels),
    ))
}
