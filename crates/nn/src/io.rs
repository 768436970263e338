//! Load any model file, save a model with its input normalisation.
//!
//! [`load_model`] is the one entry point every command (and the Python
//! package) uses to read a model: it picks the format from the extension and
//! returns the model together with the input normalisation the file records.
//!
//! | extension | format | normalisation |
//! | --- | --- | --- |
//! | `.onnx` | ONNX graph exported by `torch.onnx.export` ([`crate::onnx`]) | not recorded: inputs in `[0, 1]` unless overridden |
//! | `.safetensors` | PyTorch weights of a named architecture (`arch` required) | recorded if the file's metadata has `ppml.normalization` |
//! | anything else | `.ppml` (version 2 records it; version 1 does not) | recorded (v2) |
//!
//! ```
//! use ppml_nn::{Model, Normalization, io};
//! let dir = std::env::temp_dir().join(format!("ppml-io-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("m.ppml");
//! let model = Model::from_arch("net-a", 1).unwrap();
//! io::save_model(&path, &model, Normalization::UnitRange).unwrap();
//! let loaded = io::load_model(&path, None).unwrap();
//! assert_eq!(loaded.model, model);
//! let (norm, warnings) = loaded.resolve_normalization(None);
//! assert_eq!(norm, Normalization::UnitRange);
//! assert!(warnings.is_empty());
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use crate::mnist::Normalization;
use crate::{Model, NnError};
use std::path::Path;

/// The file format a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// `.ppml`, with its format version.
    Ppml { version: u32 },
    /// PyTorch `.safetensors` weights of a named architecture.
    Safetensors,
    /// An ONNX graph.
    Onnx,
}

impl ModelFormat {
    /// Short name: `ppml`, `safetensors` or `onnx`.
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Ppml { .. } => "ppml",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Onnx => "onnx",
        }
    }
}

/// A model read by [`load_model`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedModel {
    pub model: Model,
    /// The input normalisation the file records (`None`: not recorded).
    pub normalization: Option<Normalization>,
    pub format: ModelFormat,
}

impl LoadedModel {
    /// The normalisation to use and the warnings to show: `flag` (a
    /// command-line override) wins, with a warning if it differs from what
    /// the file records; otherwise the recorded one; otherwise a default with
    /// a warning (`.ppml` version 1: `standard`, the old `infer` default;
    /// ONNX and safetensors: `unit`, i.e. pixels scaled to `[0, 1]`).
    pub fn resolve_normalization(
        &self,
        flag: Option<Normalization>,
    ) -> (Normalization, Vec<String>) {
        let mut warnings = Vec::new();
        let norm = match (flag, self.normalization) {
            (Some(f), Some(r)) => {
                if f != r {
                    warnings.push(format!(
                        "--normalize {f} overrides the normalisation `{r}` the model file records"
                    ));
                }
                f
            }
            (Some(f), None) => f,
            (None, Some(r)) => r,
            (None, None) => {
                let d = self.default_normalization();
                warnings.push(match self.format {
                    ModelFormat::Ppml { version } => format!(
                        "model file version {version} does not record its input normalisation; \
                         assuming `{d}` (pass --normalize standard|unit to choose, or re-save the model)"
                    ),
                    _ => format!(
                        "{} model: no input normalisation recorded; pixels are scaled to [0, 1] \
                         (`{d}`; pass --normalize standard if the model was trained on standardised inputs)",
                        self.format.name()
                    ),
                });
                d
            }
        };
        (norm, warnings)
    }

    /// The normalisation assumed when neither the file nor a flag gives one.
    pub fn default_normalization(&self) -> Normalization {
        match self.format {
            ModelFormat::Ppml { .. } => Normalization::Standard,
            ModelFormat::Safetensors | ModelFormat::Onnx => Normalization::UnitRange,
        }
    }
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn with_path(path: &Path, e: NnError) -> NnError {
    match e {
        NnError::Format(m) if !m.contains(&*path.to_string_lossy()) => {
            NnError::Format(format!("{}: {m}", path.display()))
        }
        other => other,
    }
}

/// Reads any model file (see the module docs): `.onnx`, `.safetensors` (needs
/// `arch`: one of `ARCHS`), else `.ppml`.
pub fn load_model(path: &Path, arch: Option<&str>) -> Result<LoadedModel, NnError> {
    if has_ext(path, "onnx") {
        let b = read(path)?;
        let model = crate::onnx::import(&b).map_err(|e| with_path(path, e))?;
        return Ok(LoadedModel {
            model,
            normalization: None,
            format: ModelFormat::Onnx,
        });
    }
    if has_ext(path, "safetensors") {
        let arch = arch.ok_or_else(|| {
            NnError::Invalid(format!(
                "{}: a .safetensors file holds weights only and needs --arch ({})",
                path.display(),
                crate::ARCHS.join(", ")
            ))
        })?;
        let (model, normalization) = crate::safetensors_io::load_with_metadata(path, arch)?;
        return Ok(LoadedModel {
            model,
            normalization,
            format: ModelFormat::Safetensors,
        });
    }
    let b = read(path)?;
    let f = Model::decode_file(&b).map_err(|e| with_path(path, e))?;
    Ok(LoadedModel {
        model: f.model,
        normalization: f.normalization,
        format: ModelFormat::Ppml { version: f.version },
    })
}

/// Saves `model` with the input normalisation it was trained with:
/// `.safetensors` (PyTorch names, the normalisation in the metadata) or
/// `.ppml` (anything else).
pub fn save_model(path: &Path, model: &Model, normalization: Normalization) -> Result<(), NnError> {
    if has_ext(path, "safetensors") {
        crate::safetensors_io::save_with_metadata(model, path, Some(normalization))
    } else {
        model.save_with(path, Some(normalization))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, NnError> {
    crate::input::read_file(path)
}
