//! Rust errors as Python exceptions, with the Rust message unchanged.

use ppml_nn::NnError;
use ppml_secagg::SecAggError;
use ppml_smpc::SmpcError;
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::time::{Duration, Instant};

create_exception!(
    ppml,
    ProtocolError,
    PyRuntimeError,
    "A protocol run failed: a party's channel broke or timed out, a peer sent a bad message, or a round was aborted."
);

/// `ValueError` for bad input, `OSError` for files.
pub fn nn(e: NnError) -> PyErr {
    match e {
        NnError::Io(_) => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// `ValueError` for a model or input the caller can fix, `ProtocolError` for
/// what went wrong between the parties.
pub fn smpc(e: SmpcError) -> PyErr {
    match e {
        SmpcError::Shape(_)
        | SmpcError::FixedPoint(_)
        | SmpcError::Model(_)
        | SmpcError::Input(_)
        | SmpcError::Output(_)
        | SmpcError::Config(_)
        | SmpcError::Range(_) => PyValueError::new_err(e.to_string()),
        _ => ProtocolError::new_err(e.to_string()),
    }
}

/// `ValueError` for bad parameters or inputs, `ProtocolError` for a bad or
/// out-of-order message or an aborted round.
pub fn secagg(e: SecAggError) -> PyErr {
    match e {
        SecAggError::InvalidConfig(_)
        | SecAggError::DimMismatch { .. }
        | SecAggError::NonFinite { .. } => PyValueError::new_err(e.to_string()),
        _ => ProtocolError::new_err(e.to_string()),
    }
}

/// `ValueError` unless every value is finite.
pub fn check_finite(x: &[f32], what: &str) -> PyResult<()> {
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(PyValueError::new_err(format!(
            "{what} contains NaN or infinity (first at flat index {i})"
        ))),
    }
}

/// Polls for Python signals (Ctrl-C) at most every 100 ms from code that
/// runs without the GIL: re-attaching briefly is cheap at that rate.
pub struct SignalPoll {
    last: Instant,
    pub pending: Option<PyErr>,
}

impl SignalPoll {
    pub fn new() -> Self {
        Self {
            last: Instant::now(),
            pending: None,
        }
    }

    /// `false` once a signal handler raised (the error is kept in `pending`).
    pub fn keep_going(&mut self) -> bool {
        if self.pending.is_some() {
            return false;
        }
        if self.last.elapsed() < Duration::from_millis(100) {
            return true;
        }
        self.last = Instant::now();
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => true,
            Err(e) => {
                self.pending = Some(e);
                false
            }
        }
    }
}
