//! Load any input file: images to classify and, optionally, their labels.
//!
//! [`load_images`] reads
//! - a `.npy` array of shape `[N, ...]`: uint8 (pixels `0..=255`) or float
//!   (float32; float64 is narrowed);
//! - an IDX3 images file, gzipped or raw (MNIST's format);
//! - a directory of PNG images (sorted by file name, converted to 8-bit
//!   grey), all of one size.
//!
//! [`load_labels`] reads a `.npy` integer array or an IDX1 labels file.
//!
//! [`Images::to_model_input`] turns them into model inputs: uint8 pixels are
//! scaled to `[0, 1]` and then normalised as the model expects; float arrays
//! are fed exactly as given unless a normalisation is asked for explicitly.
//!
//! ```
//! use ppml_nn::{Normalization, input, npy};
//! let dir = std::env::temp_dir().join(format!("ppml-input-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("x.npy");
//! std::fs::write(&path, npy::encode_u8(&[0, 255, 51, 102], &[2, 2])).unwrap();
//! let images = input::load_images(&path).unwrap();
//! assert_eq!((images.count, images.sample_shape.clone()), (2, vec![2]));
//! let x = images.to_model_input(Normalization::UnitRange, None).unwrap();
//! assert_eq!(x, vec![0.0, 1.0, 0.2, 0.4]);
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use crate::mnist::Normalization;
use crate::npy::{NpyArray, NpyData};
use crate::{Model, NnError};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest decompressed size of a gzipped input file (4 GiB): a gzip bomb
/// is an error, not an allocation abort.
pub const MAX_DECOMPRESSED: u64 = 4 << 30;

/// Image values as read from the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// Raw pixels `0..=255`.
    U8(Vec<u8>),
    /// Floats, fed to the model as given unless asked otherwise.
    F32(Vec<f32>),
}

/// A set of images: `count` samples of `sample_shape` each, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub pixels: Pixels,
    pub count: usize,
    /// Per-sample shape (e.g. `[28, 28]` for IDX, `[1, 28, 28]` for a `.npy`
    /// of shape `[N, 1, 28, 28]`).
    pub sample_shape: Vec<usize>,
}

impl Images {
    /// Values per sample.
    pub fn sample_size(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// True for raw uint8 pixels.
    pub fn is_u8(&self) -> bool {
        matches!(self.pixels, Pixels::U8(_))
    }

    /// The images with the given indices, in that order (panics on an
    /// out-of-range index, like slice indexing).
    pub fn select(&self, idx: &[usize]) -> Images {
        let p = self.sample_size();
        let pixels = match &self.pixels {
            Pixels::U8(v) => Pixels::U8(
                idx.iter()
                    .flat_map(|&i| v[i * p..(i + 1) * p].iter().copied())
                    .collect(),
            ),
            Pixels::F32(v) => Pixels::F32(
                idx.iter()
                    .flat_map(|&i| v[i * p..(i + 1) * p].iter().copied())
                    .collect(),
            ),
        };
        Images {
            pixels,
            count: idx.len(),
            sample_shape: self.sample_shape.clone(),
        }
    }

    /// Keeps the first `n` images.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.count {
            return;
        }
        let keep = n * self.sample_size();
        match &mut self.pixels {
            Pixels::U8(v) => v.truncate(keep),
            Pixels::F32(v) => v.truncate(keep),
        }
        self.count = n;
    }

    /// Checks that each image has the model's input size.
    pub fn check_fits(&self, model: &Model) -> Result<(), NnError> {
        if self.sample_size() != model.input_size() {
            return Err(NnError::Shape(format!(
                "images of shape {:?} ({} values) do not fit model {} which takes {:?} ({} values)",
                self.sample_shape,
                self.sample_size(),
                model.arch,
                model.input_shape,
                model.input_size()
            )));
        }
        Ok(())
    }

    /// Model inputs, `count x sample_size` row-major. uint8 pixels: `p/255`
    /// then `norm`. Floats: as given if `float_norm` is `None`, else
    /// `float_norm` applied to them as values in `[0, 1]`. Non-finite floats
    /// are an error.
    pub fn to_model_input(
        &self,
        norm: Normalization,
        float_norm: Option<Normalization>,
    ) -> Result<Vec<f32>, NnError> {
        match &self.pixels {
            Pixels::U8(v) => Ok(v.iter().map(|&p| norm.apply(p)).collect()),
            Pixels::F32(v) => {
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(NnError::Data(format!(
                        "input value {i} (image {}) is {}, not a finite number",
                        i / self.sample_size().max(1),
                        v[i]
                    )));
                }
                Ok(match float_norm {
                    None => v.clone(),
                    Some(n) => v.iter().map(|&x| n.apply_unit(x)).collect(),
                })
            }
        }
    }
}

/// Reads a model or data file the user named: a regular file of at most
/// [`ppml_files::MAX_DATA_FILE`] bytes (a device, a pipe or a larger file
/// is an error, never a hang or an exhausted machine).
pub fn read_file(path: &Path) -> Result<Vec<u8>, NnError> {
    ppml_files::read_bounded(path, ppml_files::MAX_DATA_FILE)
        .map_err(|e| NnError::Io(format!("cannot read {}: {e}", path.display())))
}

/// Reads a file, gunzipping it if it starts with the gzip magic bytes
/// (at most [`MAX_DECOMPRESSED`] bytes once decompressed).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, NnError> {
    let raw = read_file(path)?;
    gunzip_if_gz(raw, MAX_DECOMPRESSED)
        .map_err(|e| NnError::Data(format!("{}: {e}", path.display())))
}

/// `raw` itself, or its gzip decompression (at most `limit` bytes).
pub fn gunzip_if_gz(raw: Vec<u8>, limit: u64) -> Result<Vec<u8>, String> {
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("corrupt gzip stream: {e}"))?;
        if out.len() as u64 > limit {
            return Err(format!("decompresses to more than {limit} bytes"));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn is_npy(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Decodes images from the bytes of a `.npy` file (shape `[N, ...]`).
pub fn images_from_npy(b: &[u8]) -> Result<Images, NnError> {
    let a = NpyArray::parse(b)?;
    let Some((&count, rest)) = a.shape.split_first() else {
        return Err(NnError::Shape(
            "npy: a 0-dimensional array holds no images (shape [N, ...] expected)".into(),
        ));
    };
    let sample_shape = if rest.is_empty() {
        vec![1]
    } else {
        rest.to_vec()
    };
    let pixels = match a.data {
        NpyData::U8(v) => Pixels::U8(v),
        NpyData::F32(v) => Pixels::F32(v),
        NpyData::I64(_) => {
            return Err(NnError::Data(
                "npy: images must be uint8 (pixels) or float32, not a wider integer type".into(),
            ));
        }
    };
    Ok(Images {
        pixels,
        count,
        sample_shape,
    })
}

/// Decodes images from an uncompressed IDX3 buffer.
pub fn images_from_idx(b: &[u8]) -> Result<Images, NnError> {
    let (n, rows, cols, px) = crate::mnist::parse_idx_images(b).map_err(NnError::Data)?;
    Ok(Images {
        pixels: Pixels::U8(px),
        count: n,
        sample_shape: vec![rows, cols],
    })
}

fn png_files(dir: &Path) -> Result<Vec<PathBuf>, NnError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| NnError::Io(format!("cannot list {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for e in rd {
        let p = e
            .map_err(|e| NnError::Io(format!("cannot list {}: {e}", dir.display())))?
            .path();
        if p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("png"))
        {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every `*.png` of a directory (sorted by name) as 8-bit grey images.
pub fn images_from_png_dir(dir: &Path) -> Result<Images, NnError> {
    let files = png_files(dir)?;
    if files.is_empty() {
        return Err(NnError::Data(format!(
            "{} holds no .png file",
            dir.display()
        )));
    }
    let mut pixels = Vec::new();
    let mut size = None;
    for f in &files {
        let img = image::load_from_memory_with_format(&read_file(f)?, image::ImageFormat::Png)
            .map_err(|e| NnError::Data(format!("{}: not a readable PNG: {e}", f.display())))?
            .to_luma8();
        let (w, h) = img.dimensions();
        let hw = (h as usize, w as usize);
        match size {
            None => size = Some(hw),
            Some(s) if s != hw => {
                return Err(NnError::Shape(format!(
                    "{} is {}x{}, the images before it are {}x{} (all images must have one size)",
                    f.display(),
                    hw.0,
                    hw.1,
                    s.0,
                    s.1
                )));
            }
            Some(_) => {}
        }
        pixels.extend_from_slice(img.as_raw());
    }
    let (h, w) = size.unwrap_or((0, 0));
    Ok(Images {
        pixels: Pixels::U8(pixels),
        count: files.len(),
        sample_shape: vec![h, w],
    })
}

/// Images to classify with their labels, if known, and a name for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Images,
    /// One label per image (checked), if a labels file was given or the
    /// default MNIST test set is used.
    pub labels: Option<Vec<u8>>,
    /// `input` as given, or "MNIST test set (DIR)".
    pub name: String,
    /// True when no `input` was given (the MNIST test set of `data_dir`).
    pub is_default: bool,
}

impl Dataset {
    /// Keeps the first `n` images (and labels).
    pub fn truncate(&mut self, n: usize) {
        self.images.truncate(n);
        if let Some(l) = &mut self.labels {
            l.truncate(n);
        }
    }
}

/// The images of `input` with the labels of `labels` (if given); without
/// `input`, the MNIST test set of `data_dir` with its labels (or `labels`).
/// A label count that differs from the image count is an error.
pub fn load_dataset(
    input: Option<&Path>,
    labels: Option<&Path>,
    data_dir: &Path,
) -> Result<Dataset, NnError> {
    let (images, labels, name, is_default) = match input {
        Some(p) => (
            load_images(p)?,
            labels.map(load_labels).transpose()?,
            p.display().to_string(),
            false,
        ),
        None => {
            let (ip, lp) = crate::mnist::test_files(data_dir)?;
            (
                load_images(&ip)?,
                Some(load_labels(labels.unwrap_or(&lp))?),
                format!("MNIST test set ({})", data_dir.display()),
                true,
            )
        }
    };
    if let Some(l) = &labels
        && l.len() != images.count
    {
        return Err(NnError::Shape(format!(
            "{} labels for {} images",
            l.len(),
            images.count
        )));
    }
    Ok(Dataset {
        images,
        labels,
        name,
        is_default,
    })
}

/// Reads images from a `.npy` file, an IDX3 file (gzipped or raw) or a
/// directory of PNG images; see the module docs.
pub fn load_images(path: &Path) -> Result<Images, NnError> {
    let ctx = |e: NnError| match e {
        NnError::Data(m) if !m.contains(&*path.to_string_lossy()) => {
            NnError::Data(format!("{}: {m}", path.display()))
        }
        NnError::Shape(m) => NnError::Shape(format!("{}: {m}", path.display())),
        o => o,
    };
    if path.is_dir() {
        return images_from_png_dir(path);
    }
    let b = read_maybe_gz(path)?;
    if is_npy(path) || b.starts_with(b"\x93NUMPY") {
        images_from_npy(&b).map_err(ctx)
    } else {
        images_from_idx(&b).map_err(ctx)
    }
}

/// Decodes labels from a `.npy` integer array of shape `[N]` (values 0..=255).
pub fn labels_from_npy(b: &[u8]) -> Result<Vec<u8>, NnError> {
    let a = NpyArray::parse(b)?;
    if a.shape.len() != 1 {
        return Err(NnError::Shape(format!(
            "npy: labels must have shape [N], not {:?}",
            a.shape
        )));
    }
    match a.data {
        NpyData::U8(v) => Ok(v),
        NpyData::I64(v) => v
            .iter()
            .map(|&l| {
                u8::try_from(l)
                    .map_err(|_| NnError::Data(format!("npy: label {l} is not a class in 0..=255")))
            })
            .collect(),
        NpyData::F32(_) => Err(NnError::Data(
            "npy: labels must be integers, not floats".into(),
        )),
    }
}

/// Reads labels from a `.npy` integer array or an IDX1 file (gzipped or raw).
pub fn load_labels(path: &Path) -> Result<Vec<u8>, NnError> {
    let b = read_maybe_gz(path)?;
    let r = if is_npy(path) || b.starts_with(b"\x93NUMPY") {
        labels_from_npy(&b)
    } else {
        crate::mnist::parse_idx_labels(&b).map_err(NnError::Data)
    };
    r.map_err(|e| match e {
        NnError::Data(m) => NnError::Data(format!("{}: {m}", path.display())),
        NnError::Shape(m) => NnError::Shape(format!("{}: {m}", path.display())),
        o => o,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy;

    #[test]
    fn float_npy_is_fed_as_given_unless_normalised() {
        let b = npy::encode_f32(&[0.5, -3.0, 7.25, 1.0], &[2, 1, 2]);
        let im = images_from_npy(&b).unwrap();
        assert_eq!((im.count, im.sample_shape.clone()), (2, vec![1, 2]));
        let x = im.to_model_input(Normalization::Standard, None).unwrap();
        assert_eq!(x, vec![0.5, -3.0, 7.25, 1.0]);
        let x = im
            .to_model_input(Normalization::Standard, Some(Normalization::Standard))
            .unwrap();
        assert!((x[0] - (0.5 - crate::mnist::MEAN) / crate::mnist::STD).abs() < 1e-6);
    }

    #[test]
    fn uint8_npy_is_scaled_then_normalised() {
        let im = images_from_npy(&npy::encode_u8(&[255, 0], &[2])).unwrap();
        assert_eq!(im.sample_shape, vec![1]);
        let x = im.to_model_input(Normalization::Standard, None).unwrap();
        assert!((x[0] - (1.0 - crate::mnist::MEAN) / crate::mnist::STD).abs() < 1e-6);
        assert!((x[1] + crate::mnist::MEAN / crate::mnist::STD).abs() < 1e-6);
    }

    #[test]
    fn nan_inputs_are_errors() {
        let im = images_from_npy(&npy::encode_f32(&[0.5, f32::NAN], &[1, 2])).unwrap();
        let e = im
            .to_model_input(Normalization::UnitRange, None)
            .unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
    }

    #[test]
    fn labels_from_wide_integers_are_range_checked() {
        assert_eq!(
            labels_from_npy(&npy::encode_i64(&[3, 9, 0], &[3])).unwrap(),
            vec![3, 9, 0]
        );
        assert!(labels_from_npy(&npy::encode_i64(&[300], &[1])).is_err());
        assert!(labels_from_npy(&npy::encode_i64(&[-1], &[1])).is_err());
        assert!(labels_from_npy(&npy::encode_f32(&[1.0], &[1])).is_err());
        assert!(labels_from_npy(&npy::encode_i64(&[1, 2], &[1, 2])).is_err());
    }

    #[test]
    fn gzip_bombs_are_cut_off() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&vec![0u8; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip_if_gz(gz.clone(), 10_000).unwrap().len(), 10_000);
        assert!(gunzip_if_gz(gz, 9_999).unwrap_err().contains("more than"));
    }
}
