//! # ppml-python: the `ppml` Python package's native module (`ppml._native`)
//!
//! Thin PyO3 bindings over the ppml crates: models (`ppml_nn`), encrypted
//! inference with all five roles in-process (`ppml_smpc`), and secure
//! aggregation state machines whose messages travel as bytes (`ppml_secagg`).
//! The Python half of the package (`python/ppml/`) adds `Model.from_torch` and
//! argument conversion; this crate only checks, converts and calls.
//!
//! Conventions:
//! - numpy arrays come in as borrowed, contiguous `float32` views (the Python
//!   layer converts other dtypes once) and go out as arrays that take
//!   ownership of the Rust vector (`PyArray::from_vec`, no copy);
//! - the GIL is released while Rust computes (`Python::detach`), and long runs
//!   poll for signals so Ctrl-C raises `KeyboardInterrupt`;
//! - errors keep the Rust message: bad input raises `ValueError`, missing
//!   files `OSError`, protocol failures `ppml.ProtocolError` (a `RuntimeError`).
//!
//! Built by maturin (`pip install ./crates/python`); see `crates/python/README.md`:
//!
//! ```python
//! import ppml, numpy as np
//! model = ppml.Model.arch("2nn", seed=1)
//! preds, report = ppml.encrypted_predict(model, np.zeros((4, 784), np.float32))
//! ```

use pyo3::prelude::*;

mod errors;
mod infer;
mod model;
mod secagg;

pub use errors::ProtocolError;

/// The native half of the `ppml` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ProtocolError", m.py().get_type::<ProtocolError>())?;
    m.add_class::<model::Model>()?;
    m.add_class::<secagg::SecAggClient>()?;
    m.add_class::<secagg::SecAggServer>()?;
    m.add_function(wrap_pyfunction!(infer::encrypted_predict, m)?)?;
    m.add_function(wrap_pyfunction!(model::load_mnist, m)?)?;
    m.add_function(wrap_pyfunction!(secagg::secagg_quantize, m)?)?;
    m.add("ARCHS", ppml_nn::ARCHS.to_vec())?;
    m.add("INPUT_RANGE", ppml_smpc::inference::DEFAULT_INPUT_RANGE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
