//! Wire format of split learning.
//!
//! Every frame (ppml-net adds its own 4-byte length prefix) starts with a one-byte tag:
//!
//! - [`TENSOR_TAG`]: a dense `rows x cols` f32 matrix, raw little-endian (4 bytes per
//!   value, no varint), after a 16-byte header
//!   `tag u8 | kind u8 | reserved u16 (0) | step u32 LE | rows u32 LE | cols u32 LE`;
//! - [`CONTROL_TAG`]: a postcard-encoded [`Control`] message (handshake, evaluation results).
//!
//! A full batch of 64 cut-layer activations of width 640 is therefore
//! `4 + 16 + 64*640*4 = 163,860` bytes on the wire, as many for its gradient.
//!
//! The receiver always states what it expects ([`Expect`]: kind, step, shape) and any
//! difference, a truncated payload, or a non-finite value is a [`SplitError::Protocol`]
//! error: a party never feeds a matrix of an unagreed shape into its model.

use crate::SplitError;
use serde::{Deserialize, Serialize};

/// First byte of a tensor frame.
pub const TENSOR_TAG: u8 = 0xA7;
/// First byte of a control frame.
pub const CONTROL_TAG: u8 = 0xC0;
/// Bytes of the tensor header (tag included).
pub const TENSOR_HEADER_BYTES: usize = 16;
/// Version of this protocol, checked in the handshake.
pub const PROTOCOL_VERSION: u32 = 2;

/// What a tensor frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TensorKind {
    /// Cut-layer activations of a training batch (data holder -> remote).
    Activations = 1,
    /// Gradient of the loss w.r.t. the cut-layer activations (towards the data holder).
    Gradients = 2,
    /// Cut-layer activations of test images (data holder -> remote).
    EvalActivations = 3,
    /// U-shaped: the middle's output for a training batch (server -> data holder).
    MidActivations = 4,
    /// U-shaped: gradient w.r.t. the middle's output (data holder -> server).
    MidGradients = 5,
    /// U-shaped: the middle's output for test images (server -> data holder).
    EvalMid = 6,
}

impl TensorKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => TensorKind::Activations,
            2 => TensorKind::Gradients,
            3 => TensorKind::EvalActivations,
            4 => TensorKind::MidActivations,
            5 => TensorKind::MidGradients,
            6 => TensorKind::EvalMid,
            _ => return None,
        })
    }
}

/// The split-learning variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Variant {
    /// Data holder: bottom + images. Label holder: top + labels + loss.
    #[default]
    Vanilla,
    /// Data holder: bottom, head, images and labels. Server: the middle only.
    UShaped,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Vanilla => "vanilla",
            Variant::UShaped => "u-shaped",
        })
    }
}

impl std::str::FromStr for Variant {
    type Err = SplitError;
    fn from_str(s: &str) -> Result<Self, SplitError> {
        match s {
            "vanilla" => Ok(Variant::Vanilla),
            "u-shaped" | "ushaped" | "u" => Ok(Variant::UShaped),
            o => Err(SplitError::Config(format!(
                "unknown variant `{o}` (vanilla, u-shaped)"
            ))),
        }
    }
}

/// The session parameters the data holder proposes; the remote party checks them against
/// its own model and labels before accepting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub variant: Variant,
    /// Width of what the data holder sends (the cut layer; U-shaped: the bottom's output).
    pub send_width: u32,
    /// Width of what the remote sends forward (U-shaped only: the middle's output; 0 otherwise).
    pub return_width: u32,
    pub train_samples: u64,
    pub test_samples: u64,
    pub batch: u32,
    pub epochs: u32,
    /// The data holder's share of the seed of the shared shuffling PRG; the label holder
    /// answers with its own share and both use [`joint_shuffle_seed`] of the two, so
    /// neither party picks the order of samples alone (and no sample ids travel).
    pub shuffle_seed: u64,
    /// Test images per evaluation message.
    pub eval_chunk: u32,
    /// Whether every epoch ends with an evaluation on the test set.
    pub evaluate: bool,
    /// Index of this data holder among several (round-robin), and their count.
    pub holder: u32,
    pub holders: u32,
}

/// The shuffle seed both parties use, derived from both parties' shares
/// through ppml-random's one labelled derivation (BLAKE3), so neither share
/// alone fixes it.
pub fn joint_shuffle_seed(data_share: u64, label_share: u64) -> u64 {
    ppml_random::PublicSeed::new(data_share)
        .derive_u64(&format!("splitnn/joint-shuffle/{label_share}"))
}

/// Control messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    Hello(Hello),
    /// The handshake is accepted; carries the label holder's share of the shuffle seed.
    Accept {
        shuffle_share: u64,
    },
    Reject(String),
    /// Vanilla: the label holder's evaluation of one epoch (the only thing it reveals).
    EvalResult {
        epoch: u32,
        correct: u64,
        total: u64,
        /// Mean test loss.
        test_loss: f64,
        /// Mean training loss of the epoch (over this holder's batches).
        train_loss: f64,
    },
    /// Round-robin: the bottom model's parameters handed to the next data holder.
    BottomWeights(Vec<f32>),
}

/// What the receiver of a tensor frame expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub kind: TensorKind,
    pub step: u32,
    pub rows: usize,
    pub cols: usize,
}

/// Encodes a `rows x cols` matrix (`data.len() == rows * cols`).
pub fn encode_tensor(
    kind: TensorKind,
    step: u32,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> Result<Vec<u8>, SplitError> {
    if data.len() != rows * cols {
        return Err(SplitError::Protocol(format!(
            "cannot send {kind:?}: {} values for a {rows}x{cols} matrix",
            data.len()
        )));
    }
    let r = u32::try_from(rows).map_err(|_| SplitError::Protocol("too many rows".into()))?;
    let c = u32::try_from(cols).map_err(|_| SplitError::Protocol("too many columns".into()))?;
    let mut out = vec![0u8; TENSOR_HEADER_BYTES + 4 * data.len()];
    let (head, body) = out.split_at_mut(TENSOR_HEADER_BYTES);
    head[..4].copy_from_slice(&[TENSOR_TAG, kind as u8, 0, 0]);
    head[4..8].copy_from_slice(&step.to_le_bytes());
    head[8..12].copy_from_slice(&r.to_le_bytes());
    head[12..16].copy_from_slice(&c.to_le_bytes());
    // Fixed-size chunks: the compiler turns this into a plain (vectorised) copy.
    for (d, v) in body.chunks_exact_mut(4).zip(data) {
        d.copy_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a tensor frame into `out` (resized to `rows * cols`), checking kind, step and
/// shape against `want`, the payload length, and that every value is finite.
pub fn decode_tensor_into(
    bytes: &[u8],
    want: Expect,
    out: &mut Vec<f32>,
) -> Result<(), SplitError> {
    let what = format!(
        "{:?} of shape {}x{} for step {}",
        want.kind, want.rows, want.cols, want.step
    );
    if bytes.first() == Some(&CONTROL_TAG) {
        let msg = match decode_control(bytes) {
            Ok(Control::Reject(r)) => return Err(SplitError::Rejected(r)),
            Ok(c) => format!("{c:?}").chars().take(60).collect::<String>(),
            Err(_) => "an undecodable control message".into(),
        };
        return Err(SplitError::Protocol(format!(
            "expected {what}, got control message {msg}"
        )));
    }
    if bytes.len() < TENSOR_HEADER_BYTES || bytes[0] != TENSOR_TAG {
        return Err(SplitError::Protocol(format!(
            "expected {what}, got a {}-byte frame that is not a tensor",
            bytes.len()
        )));
    }
    let kind = TensorKind::from_u8(bytes[1]);
    if kind != Some(want.kind) {
        return Err(SplitError::Protocol(format!(
            "expected {what}, got tensor kind {}",
            match kind {
                Some(k) => format!("{k:?}"),
                None => format!("#{} (unknown)", bytes[1]),
            }
        )));
    }
    let (step, rows, cols) = (le_u32(bytes, 4), le_u32(bytes, 8), le_u32(bytes, 12));
    if step != want.step {
        return Err(SplitError::Protocol(format!(
            "expected {what}, got step {step} (parties out of sync)"
        )));
    }
    if rows as usize != want.rows || cols as usize != want.cols {
        return Err(SplitError::Protocol(format!(
            "expected {what}, got shape {rows}x{cols}"
        )));
    }
    let n = want.rows * want.cols;
    let body = &bytes[TENSOR_HEADER_BYTES..];
    if body.len() != 4 * n {
        return Err(SplitError::Protocol(format!(
            "expected {what}: {} payload bytes, got {}",
            4 * n,
            body.len()
        )));
    }
    out.clear();
    out.resize(n, 0.0);
    let mut finite = true;
    for (d, c) in out.iter_mut().zip(body.chunks_exact(4)) {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        finite &= v.is_finite();
        *d = v;
    }
    if !finite && let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(SplitError::Protocol(format!(
            "{what}: value {i} is not finite ({})",
            out[i]
        )));
    }
    Ok(())
}

/// Encodes a control message.
pub fn encode_control(c: &Control) -> Result<Vec<u8>, SplitError> {
    let mut out = vec![CONTROL_TAG];
    let body = postcard::to_stdvec(c)
        .map_err(|e| SplitError::Protocol(format!("cannot encode {c:?}: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a control message (the whole frame must be one [`Control`]).
pub fn decode_control(bytes: &[u8]) -> Result<Control, SplitError> {
    match bytes.split_first() {
        Some((&CONTROL_TAG, body)) => {
            let (c, rest): (Control, &[u8]) = postcard::take_from_bytes(body)
                .map_err(|e| SplitError::Protocol(format!("corrupt control message: {e}")))?;
            if !rest.is_empty() {
                return Err(SplitError::Protocol(format!(
                    "control message with {} trailing bytes",
                    rest.len()
                )));
            }
            Ok(c)
        }
        Some((&TENSOR_TAG, _)) => Err(SplitError::Protocol(
            "expected a control message, got a tensor".into(),
        )),
        _ => Err(SplitError::Protocol(format!(
            "expected a control message, got {} unrecognised bytes",
            bytes.len()
        ))),
    }
}

/// Bytes one tensor message of `rows x cols` takes on the wire, including ppml-net's
/// 4-byte frame prefix.
pub fn tensor_wire_bytes(rows: usize, cols: usize) -> u64 {
    (ppml_net::FRAME_HEADER_BYTES + TENSOR_HEADER_BYTES + 4 * rows * cols) as u64
}

/// Protocol name in the session handshake (ppml-net).
pub const SESSION_PROTOCOL: &str = "splitnn";
/// Party name of the data holder in the parties file.
pub const DATA_HOLDER: &str = "data-holder";
/// Party name of the label holder (or U-shaped middle server) in the parties file.
pub const LABEL_HOLDER: &str = "label-holder";

/// The data holder's channel: connects to the label holder (retrying until it listens);
/// over TLS only the label holder's pinned certificate is accepted.
pub fn connect_label_holder(session: &ppml_net::Session) -> Result<ppml_net::Channel, SplitError> {
    session
        .connect(LABEL_HOLDER)
        .map_err(|e| SplitError::net(e, "connecting to the label holder"))
}

/// The label holder's channel: listens on its address and waits for the data holder
/// (stray or impostor connections are refused and logged, see ppml-net's session layer).
pub fn accept_data_holder(session: &ppml_net::Session) -> Result<ppml_net::Channel, SplitError> {
    let mut acc = session
        .listen()
        .map_err(|e| SplitError::net(e, "listening for the data holder"))?;
    eprintln!("{} listening on {}", session.name(), acc.local_addr());
    let mut chans = acc
        .accept(&[DATA_HOLDER], session.config().connect_timeout)
        .map_err(|e| SplitError::net(e, "waiting for the data holder"))?;
    chans
        .pop()
        .ok_or_else(|| SplitError::Protocol("no data holder channel".into()))
}
