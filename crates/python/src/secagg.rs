//! Secure aggregation (Bonawitz et al. 2017 / SecAgg+) for any Python FL
//! framework: ppml-secagg's IO-free client and server state machines, with
//! every message as `bytes` (postcard) that the framework carries.

use crate::errors::{self, ProtocolError};
use numpy::{PyArray1, PyReadonlyArray1};
use ppml_secagg::messages::{
    AdvertiseKeys, ForwardedShares, KeyBroadcast, MaskedInput, ShareKeys, UnmaskRequest,
    UnmaskResponse,
};
use ppml_secagg::{ClientState, RoundParams, SecAggConfig, ServerState};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;

fn encode<'py, T: Serialize>(py: Python<'py>, msg: &T) -> PyResult<Bound<'py, PyBytes>> {
    let b = postcard::to_stdvec(msg)
        .map_err(|e| ProtocolError::new_err(format!("cannot encode message: {e}")))?;
    Ok(PyBytes::new(py, &b))
}

fn decode<T: DeserializeOwned>(b: &[u8], what: &str) -> PyResult<T> {
    postcard::from_bytes(b)
        .map_err(|e| ProtocolError::new_err(format!("malformed {what} message: {e}")))
}

fn by_client<'py, T: Serialize>(
    py: Python<'py>,
    msgs: Vec<(u32, T)>,
) -> PyResult<BTreeMap<u32, Bound<'py, PyBytes>>> {
    msgs.into_iter()
        .map(|(id, m)| Ok((id, encode(py, &m)?)))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn round_params(
    n: usize,
    dim: usize,
    bits: u32,
    clip: f32,
    threshold: Option<usize>,
    graph: bool,
    degree: Option<usize>,
    session: &[u8],
) -> PyResult<RoundParams> {
    let session: [u8; 16] = session.try_into().map_err(|_| {
        PyValueError::new_err(format!("session must be 16 bytes, got {}", session.len()))
    })?;
    if !(clip.is_finite() && clip > 0.0) {
        return Err(PyValueError::new_err(format!(
            "clip {clip} must be positive"
        )));
    }
    let cfg = SecAggConfig {
        threshold,
        bits,
        clip,
        graph,
        degree,
        ..SecAggConfig::default()
    };
    RoundParams::new(n, dim, &cfg, session).map_err(errors::secagg)
}

/// The OS CSPRNG (every secret of a client, and the session id).
fn os_rng() -> PyResult<ppml_random::SecretRng> {
    ppml_random::try_os_rng().map_err(|e| ProtocolError::new_err(format!("no OS randomness: {e}")))
}

fn vector<'a>(x: &'a PyReadonlyArray1<'_, f32>) -> PyResult<&'a [f32]> {
    x.as_slice()
        .map_err(|_| PyValueError::new_err("the vector must be a contiguous float32 array"))
}

/// The server of one secure aggregation round. It learns the sum of the
/// surviving clients' vectors and nothing else. Drive it step by step:
/// `receive_keys` from every client, `broadcast_keys()`, `receive_shares`,
/// `forward_shares()`, `receive_masked`, `unmask_requests()`,
/// `receive_unmask`, then `finish()`. Clients that never answer a step are
/// dropouts; the round survives as long as `threshold` of them remain.
/// `params` is the dict of public round parameters every client needs
/// (`SecAggClient(id, x, **server.params)`).
#[pyclass(module = "ppml")]
pub struct SecAggServer {
    state: ServerState,
    session: [u8; 16],
    clip: f32,
    graph: bool,
}

#[pymethods]
impl SecAggServer {
    /// `n` clients (ids `0..n`) with vectors of `dim` values, clipped to
    /// `[-clip, clip]` and quantised to `bits` bits; `threshold` (default
    /// n/2+1, or the SecAgg+ default) shares reconstruct a secret; `graph`
    /// or `degree` select SecAgg+; `session` (16 bytes, default random)
    /// binds every key to this round; `graph_seed` draws the SecAgg+ graph.
    #[new]
    #[pyo3(signature = (n, dim, bits = 16, clip = 1.0, threshold = None, graph = false,
                        degree = None, session = None, graph_seed = 0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        n: usize,
        dim: usize,
        bits: u32,
        clip: f32,
        threshold: Option<usize>,
        graph: bool,
        degree: Option<usize>,
        session: Option<Vec<u8>>,
        graph_seed: u64,
    ) -> PyResult<Self> {
        let session = match session {
            Some(s) => s,
            None => {
                use rand::RngExt;
                let s: [u8; 16] = os_rng()?.random();
                s.to_vec()
            }
        };
        let p = round_params(n, dim, bits, clip, threshold, graph, degree, &session)?;
        Ok(Self {
            session: p.session,
            state: ServerState::new(&p, graph_seed),
            clip,
            graph,
        })
    }

    /// The public parameters of the round, to send to every client.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.state.params();
        let d = PyDict::new(py);
        d.set_item("n", p.n)?;
        d.set_item("dim", p.dim)?;
        d.set_item("bits", p.bits)?;
        d.set_item("clip", self.clip)?;
        d.set_item("threshold", p.threshold)?;
        d.set_item("graph", self.graph || p.degree.is_some())?;
        d.set_item("degree", p.degree)?;
        d.set_item("session", PyBytes::new(py, &self.session))?;
        Ok(d)
    }

    /// `k`: the sum lives in `Z_2^k` (`bits + ceil(log2 n)`).
    #[getter]
    fn ring_bits(&self) -> u32 {
        self.state.params().ring_bits
    }

    /// Step 0: client `client`'s advertised keys.
    fn receive_keys(&mut self, client: u32, msg: &[u8]) -> PyResult<()> {
        let m: AdvertiseKeys = decode(msg, "AdvertiseKeys")?;
        if m.id != client {
            return Err(errors::secagg(ppml_secagg::SecAggError::WrongId {
                expected: client,
                got: m.id,
            }));
        }
        self.state.receive_keys(m).map_err(errors::secagg)
    }

    /// End of step 0: `{client: message}` with each client's neighbours' keys.
    fn broadcast_keys<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u32, Bound<'py, PyBytes>>> {
        let m = self.state.broadcast_keys().map_err(errors::secagg)?;
        by_client(py, m)
    }

    /// Step 1: client `client`'s encrypted shares.
    fn receive_shares(&mut self, client: u32, msg: &[u8]) -> PyResult<()> {
        let m: ShareKeys = decode(msg, "ShareKeys")?;
        self.state.receive_shares(client, m).map_err(errors::secagg)
    }

    /// End of step 1: `{client: message}` with the shares addressed to it.
    fn forward_shares<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u32, Bound<'py, PyBytes>>> {
        let m = self.state.forward_shares().map_err(errors::secagg)?;
        by_client(py, m)
    }

    /// Step 2: client `client`'s masked vector.
    fn receive_masked(&mut self, py: Python<'_>, client: u32, msg: &[u8]) -> PyResult<()> {
        let m: MaskedInput = decode(msg, "MaskedInput")?;
        let state = &mut self.state;
        py.detach(|| state.receive_masked(client, &m))
            .map_err(errors::secagg)
    }

    /// End of step 2: `{client: message}` asking each survivor for shares.
    fn unmask_requests<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<BTreeMap<u32, Bound<'py, PyBytes>>> {
        let m = self.state.unmask_requests().map_err(errors::secagg)?;
        by_client(py, m)
    }

    /// Step 3: client `client`'s unmasking shares.
    fn receive_unmask(&mut self, client: u32, msg: &[u8]) -> PyResult<()> {
        let m: UnmaskResponse = decode(msg, "UnmaskResponse")?;
        self.state.receive_unmask(client, m).map_err(errors::secagg)
    }

    /// Removes the masks: a dict with `sum` (float32, the decoded sum of the
    /// survivors' clipped vectors), `sum_quantised` (uint64, exact, mod
    /// 2^ring_bits), `survivors` (client ids in the sum), `error_bound`
    /// (largest |decoded - exact| per value) and `set_sizes`.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let state = &mut self.state;
        let out = py.detach(|| state.finish()).map_err(errors::secagg)?;
        let q = self.state.params().quantizer().map_err(errors::secagg)?;
        let count = out.survivors.len();
        let d = PyDict::new(py);
        d.set_item("sum", PyArray1::from_vec(py, q.decode_sum(&out.sum, count)))?;
        d.set_item("sum_quantised", PyArray1::from_vec(py, out.sum))?;
        d.set_item("survivors", out.survivors)?;
        d.set_item("error_bound", q.sum_error_bound(count))?;
        d.set_item("set_sizes", out.set_sizes.to_vec())?;
        Ok(d)
    }
}

/// One client of a secure aggregation round, holding its vector `x` and its
/// secrets (drawn from the OS CSPRNG). Each method consumes the server's
/// previous message (bytes) and returns the client's next one (bytes).
#[pyclass(module = "ppml")]
pub struct SecAggClient {
    state: ClientState,
}

#[pymethods]
impl SecAggClient {
    /// Client `id` (0-based) with float32 vector `x`; the other arguments are
    /// the server's `params`.
    #[new]
    #[pyo3(signature = (id, x, n, dim, bits = 16, clip = 1.0, threshold = None, graph = false,
                        degree = None, session = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u32,
        x: PyReadonlyArray1<'_, f32>,
        n: usize,
        dim: usize,
        bits: u32,
        clip: f32,
        threshold: Option<usize>,
        graph: bool,
        degree: Option<usize>,
        session: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let session = session.ok_or_else(|| {
            PyValueError::new_err("session (16 bytes from the server's params) is required")
        })?;
        let p = round_params(n, dim, bits, clip, threshold, graph, degree, &session)?;
        let state = ClientState::new(id, vector(&x)?, &p, os_rng()?).map_err(errors::secagg)?;
        Ok(Self { state })
    }

    /// This client's id.
    #[getter]
    fn id(&self) -> u32 {
        self.state.id()
    }

    /// Step 0: the client's two public keys.
    fn advertise_keys<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let m = self.state.advertise_keys().map_err(errors::secagg)?;
        encode(py, &m)
    }

    /// Step 1: from the server's key broadcast, the encrypted shares.
    fn share_keys<'py>(&mut self, py: Python<'py>, msg: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let m: KeyBroadcast = decode(msg, "KeyBroadcast")?;
        let out = self.state.share_keys(m).map_err(errors::secagg)?;
        encode(py, &out)
    }

    /// Step 2: from the forwarded shares, the masked vector.
    fn masked_input<'py>(&mut self, py: Python<'py>, msg: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let m: ForwardedShares = decode(msg, "ForwardedShares")?;
        let state = &mut self.state;
        let out = py
            .detach(|| state.masked_input(m))
            .map_err(errors::secagg)?;
        encode(py, &out)
    }

    /// Step 3: from the unmasking request, the requested shares.
    fn unmask<'py>(&mut self, py: Python<'py>, msg: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let m: UnmaskRequest = decode(msg, "UnmaskRequest")?;
        let out = self.state.unmask(m).map_err(errors::secagg)?;
        encode(py, &out)
    }
}

/// The quantisation secure aggregation applies to a client vector: clipped to
/// `[-clip, clip]`, mapped to integers below `2^bits` (uint64). Summing these
/// over the survivors mod 2^ring_bits gives `finish()["sum_quantised"]`.
#[pyfunction]
#[pyo3(signature = (x, bits = 16, clip = 1.0))]
pub fn secagg_quantize<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    bits: u32,
    clip: f32,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let q = ppml_secagg::Quantizer::new(bits, clip).map_err(errors::secagg)?;
    let v = q.encode(vector(&x)?).map_err(errors::secagg)?;
    Ok(PyArray1::from_vec(py, v))
}
