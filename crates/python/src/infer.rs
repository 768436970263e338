//! `ppml.encrypted_predict`: three-party private inference with the model
//! owner, the data owner and P0, P1, P2 as threads of this process.

use crate::errors::{self, check_finite};
use crate::model::{Model, input_view};
use numpy::{PyArray1, PyReadonlyArrayDyn};
use ppml_smpc::party::ProtocolConfig;
use ppml_smpc::{InferConfig, PrivateRun};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `model` on `x` under 3-party secret sharing, all five roles in this
/// process over in-memory channels. Only the data owner's reconstructed
/// predictions come back, with a report dict: `seconds`, `images`,
/// `images_per_second`, `bytes_total`, `bytes_per_image`, `bytes_per_party`
/// (bytes sent by each role), `rounds` (largest of a computing party),
/// `parties` (full traffic per role), `frac_bits`, `cmp_bits`, `batch_size`.
///
/// Options: `batch_size` (images per batch, default 1000), `frac_bits`
/// (fixed-point fraction bits, default 16), `cmp_bits` (widest comparison
/// allowed; the model owner's range analysis picks the width per layer and
/// refuses a model that needs more; default 63, the whole ring),
/// `truncation` (`exact`, the default, or `local`: SecureML local truncation,
/// cheaper, with a small failure probability), `timeout` (seconds a party
/// waits for a message, default 60).
/// Ctrl-C raises `KeyboardInterrupt` at once; the parties' threads then end
/// on their own when their run completes.
#[pyfunction]
#[pyo3(signature = (model, x, batch_size = 1000, frac_bits = None, cmp_bits = None,
                    truncation = "exact", timeout = 60.0))]
#[allow(clippy::too_many_arguments)]
pub fn encrypted_predict<'py>(
    py: Python<'py>,
    model: &Model,
    x: PyReadonlyArrayDyn<'py, f32>,
    batch_size: usize,
    frac_bits: Option<u32>,
    cmp_bits: Option<u32>,
    truncation: &str,
    timeout: f64,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyDict>)> {
    let (data, n) = input_view(&model.inner, &x)?;
    if n == 0 {
        return Err(PyValueError::new_err("no images to predict"));
    }
    if batch_size == 0 {
        return Err(PyValueError::new_err("batch_size must be at least 1"));
    }
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 86_400.0) {
        return Err(PyValueError::new_err(format!(
            "timeout {timeout} must be in (0, 86400] seconds"
        )));
    }
    let d = ProtocolConfig::default();
    let protocol = ProtocolConfig {
        frac_bits: frac_bits.unwrap_or(d.frac_bits),
        cmp_bits: cmp_bits.unwrap_or(d.cmp_bits),
        truncation: truncation.parse().map_err(errors::smpc)?,
        comparison: d.comparison,
    };
    protocol.validate().map_err(errors::smpc)?;
    let cfg = InferConfig {
        batch: batch_size,
        protocol,
        secrets: ppml_random::SecretSource::Os,
        timeout: Duration::from_secs_f64(timeout),
        // Free in-memory channels: measure the computation, not an emulated link.
        emulate: None,
    };
    // The run goes to its own thread so that this one can wait for Ctrl-C:
    // it owns copies of the model and the images (the protocol encodes the
    // images into the ring anyway, so the copy is small next to the run).
    let images = py.detach(|| -> PyResult<Vec<f32>> {
        check_finite(data, "input")?;
        Ok(data.to_vec())
    })?;
    let owned = model.inner.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("ppml-encrypted-predict".into())
        .spawn(move || {
            // The receiver may be gone after Ctrl-C; then nobody wants the result.
            let _ = tx.send(ppml_smpc::predict_in_process(&owned, &images, &cfg));
        })
        .map_err(|e| errors::ProtocolError::new_err(format!("cannot start the parties: {e}")))?;
    let mut rx = Some(rx);
    let run: PrivateRun = loop {
        // The receiver is Send but not Sync: move it into the detached closure and back.
        let (got, back) = py.detach(move || {
            let r = rx.take();
            let got = r
                .as_ref()
                .map(|r| r.recv_timeout(Duration::from_millis(100)));
            (got, r)
        });
        rx = back;
        let got = got.unwrap_or(Err(mpsc::RecvTimeoutError::Disconnected));
        match got {
            Ok(r) => break r.map_err(errors::smpc)?,
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(errors::ProtocolError::new_err(
                    "the parties' thread ended without a result (a party panicked)",
                ));
            }
        }
    };
    let report = PyDict::new(py);
    report.set_item("seconds", run.seconds)?;
    report.set_item("images", n)?;
    report.set_item("images_per_second", n as f64 / run.seconds.max(1e-12))?;
    report.set_item("bytes_total", run.bytes_total)?;
    report.set_item("bytes_per_image", run.bytes_total as f64 / n as f64)?;
    report.set_item("rounds", run.rounds)?;
    let per_party = PyDict::new(py);
    let parties = PyList::empty(py);
    for p in &run.parties {
        per_party.set_item(&p.party, p.bytes_sent)?;
        let d = PyDict::new(py);
        d.set_item("party", &p.party)?;
        d.set_item("bytes_sent", p.bytes_sent)?;
        d.set_item("bytes_received", p.bytes_received)?;
        d.set_item("messages_sent", p.messages_sent)?;
        d.set_item("rounds", p.rounds)?;
        parties.append(d)?;
    }
    report.set_item("bytes_per_party", per_party)?;
    report.set_item("parties", parties)?;
    report.set_item("frac_bits", protocol.frac_bits)?;
    report.set_item("cmp_bits", protocol.cmp_bits)?;
    report.set_item("truncation", protocol.truncation.to_string())?;
    report.set_item("batch_size", batch_size)?;
    let preds: Vec<i64> = run.predictions.into_iter().map(i64::from).collect();
    Ok((PyArray1::from_vec(py, preds), report))
}
