//! The MNIST IDX loader (gzipped files, checked magic numbers, dimensions and counts).
//!
//! The four standard files (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
//! `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`) are read from a directory:
//! `data/mnist` by default, or `$PPML_DATA` (see [`default_data_dir`]). Uncompressed
//! files (same names without `.gz`) are accepted too.

use crate::NnError;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Mean of the MNIST training pixels in `[0,1]` (PyTorch tutorial constant).
pub const MEAN: f32 = 0.1307;
/// Standard deviation of the MNIST training pixels in `[0,1]`.
pub const STD: f32 = 0.3081;

/// How raw pixels `0..=255` become model inputs. A model file records the
/// one its model was trained with (see [`crate::io`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Normalization {
    /// `(x/255 - 0.1307) / 0.3081`, as in the PyTorch tutorials.
    #[default]
    Standard,
    /// `x/255` in `[0, 1]`.
    UnitRange,
}

impl Normalization {
    /// Maps one raw pixel to its normalised value.
    #[inline]
    pub fn apply(self, p: u8) -> f32 {
        self.apply_unit(p as f32 / 255.0)
    }

    /// Maps a value already scaled to `[0, 1]` (`pixel / 255`).
    #[inline]
    pub fn apply_unit(self, x: f32) -> f32 {
        match self {
            Normalization::Standard => (x - MEAN) / STD,
            Normalization::UnitRange => x,
        }
    }

    /// The name the command line uses: `standard` or `unit`.
    pub fn name(self) -> &'static str {
        match self {
            Normalization::Standard => "standard",
            Normalization::UnitRange => "unit",
        }
    }
}

impl std::fmt::Display for Normalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Normalization {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self, NnError> {
        match s {
            "standard" | "std" => Ok(Normalization::Standard),
            "unit" | "unit-range" | "01" => Ok(Normalization::UnitRange),
            other => Err(NnError::Invalid(format!(
                "unknown normalisation `{other}` (expected `standard` or `unit`)"
            ))),
        }
    }
}

/// A set of images with labels. Images are `len() x (rows*cols)` row-major,
/// already normalised; image `i` is `images[i*rows*cols .. (i+1)*rows*cols]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Dataset {
    /// Builds a dataset, checking that `images` holds `labels.len()` images of `rows*cols`.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, NnError> {
        if images.len() != labels.len() * rows * cols {
            return Err(NnError::Shape(format!(
                "{} pixel values for {} labels of {rows}x{cols} images",
                images.len(),
                labels.len()
            )));
        }
        Ok(Dataset {
            images,
            labels,
            rows,
            cols,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`rows * cols`).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i` (panics if `i >= len()`, like slice indexing).
    pub fn image(&self, i: usize) -> &[f32] {
        let p = self.pixels();
        &self.images[i * p..(i + 1) * p]
    }

    /// The images with the given indices, in that order (panics on an out-of-range index).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let p = self.pixels();
        let mut images = Vec::with_capacity(idx.len() * p);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            images,
            labels,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// A contiguous range of images (panics if out of range, like slice indexing).
    pub fn slice(&self, range: Range<usize>) -> Dataset {
        let p = self.pixels();
        Dataset {
            images: self.images[range.start * p..range.end * p].to_vec(),
            labels: self.labels[range].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Only the images whose label is in `keep` (e.g. `&[0, 1]` for the 0-vs-1 task).
    pub fn filter_labels(&self, keep: &[u8]) -> Dataset {
        let idx: Vec<usize> = (0..self.len())
            .filter(|&i| keep.contains(&self.labels[i]))
            .collect();
        self.subset(&idx)
    }
}

/// The MNIST training (60,000) and test (10,000) sets.
#[derive(Debug, Clone)]
pub struct Mnist {
    pub train: Dataset,
    pub test: Dataset,
}

/// `$PPML_DATA` if set, else `data/mnist` (relative to the working directory).
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("PPML_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from("data/mnist"),
    }
}

fn find_file(dir: &Path, stem: &str) -> Result<PathBuf, NnError> {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let raw = dir.join(stem);
    if raw.is_file() {
        return Ok(raw);
    }
    Err(NnError::Data(format!(
        "MNIST file {} not found (looked for {stem}.gz and {stem} in {}; use --data DIR or PPML_DATA)",
        gz.display(),
        dir.display()
    )))
}

/// The test images and labels files of `dir` (gzipped or raw).
pub fn test_files(dir: &Path) -> Result<(PathBuf, PathBuf), NnError> {
    Ok((
        find_file(dir, "t10k-images-idx3-ubyte")?,
        find_file(dir, "t10k-labels-idx1-ubyte")?,
    ))
}

/// Loads the four MNIST files of `dir`, normalised with `norm`.
pub fn load(dir: &Path, norm: Normalization) -> Result<Mnist, NnError> {
    let train = load_pair(
        &find_file(dir, "train-images-idx3-ubyte")?,
        &find_file(dir, "train-labels-idx1-ubyte")?,
        norm,
    )?;
    let test = load_pair(
        &find_file(dir, "t10k-images-idx3-ubyte")?,
        &find_file(dir, "t10k-labels-idx1-ubyte")?,
        norm,
    )?;
    Ok(Mnist { train, test })
}

/// Loads one images file and its labels file, checking that the counts match.
pub fn load_pair(images: &Path, labels: &Path, norm: Normalization) -> Result<Dataset, NnError> {
    let (n, rows, cols, pixels) = load_idx_images(images)?;
    let lab = load_idx_labels(labels)?;
    if lab.len() != n {
        return Err(NnError::Data(format!(
            "{} holds {n} images but {} holds {} labels",
            images.display(),
            labels.display(),
            lab.len()
        )));
    }
    if let Some(bad) = lab.iter().find(|&&l| l > 9) {
        return Err(NnError::Data(format!(
            "{}: label {bad} is not a digit",
            labels.display()
        )));
    }
    let images: Vec<f32> = pixels.iter().map(|&p| norm.apply(p)).collect();
    Dataset::new(images, lab, rows, cols)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads an IDX3 images file (magic `0x00000803`): returns `(count, rows, cols, raw pixels)`.
pub fn load_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), NnError> {
    let b = crate::input::read_maybe_gz(path)?;
    parse_idx_images(&b).map_err(|e| NnError::Data(format!("{}: {e}", path.display())))
}

/// Reads an IDX1 labels file (magic `0x00000801`).
pub fn load_idx_labels(path: &Path) -> Result<Vec<u8>, NnError> {
    let b = crate::input::read_maybe_gz(path)?;
    parse_idx_labels(&b).map_err(|e| NnError::Data(format!("{}: {e}", path.display())))
}

/// Parses an uncompressed IDX3 images buffer.
pub fn parse_idx_images(b: &[u8]) -> Result<(usize, usize, usize, Vec<u8>), String> {
    if b.len() < 16 {
        return Err(format!("truncated IDX header ({} bytes, need 16)", b.len()));
    }
    let magic = be_u32(b, 0);
    if magic != 0x0000_0803 {
        return Err(format!(
            "bad magic number {magic:#010x} (expected 0x00000803 for IDX3 images)"
        ));
    }
    let n = be_u32(b, 4) as usize;
    let rows = be_u32(b, 8) as usize;
    let cols = be_u32(b, 12) as usize;
    if rows == 0 || cols == 0 || rows > 4096 || cols > 4096 {
        return Err(format!("implausible image size {rows}x{cols}"));
    }
    let need = n
        .checked_mul(rows * cols)
        .ok_or_else(|| format!("image count {n} overflows"))?;
    let body = &b[16..];
    if body.len() != need {
        return Err(format!(
            "{} {n} images of {rows}x{cols} need {need} pixel bytes, found {}",
            if body.len() < need {
                "truncated:"
            } else {
                "trailing data:"
            },
            body.len()
        ));
    }
    Ok((n, rows, cols, body.to_vec()))
}

/// Parses an uncompressed IDX1 labels buffer.
pub fn parse_idx_labels(b: &[u8]) -> Result<Vec<u8>, String> {
    if b.len() < 8 {
        return Err(format!("truncated IDX header ({} bytes, need 8)", b.len()));
    }
    let magic = be_u32(b, 0);
    if magic != 0x0000_0801 {
        return Err(format!(
            "bad magic number {magic:#010x} (expected 0x00000801 for IDX1 labels)"
        ));
    }
    let n = be_u32(b, 4) as usize;
    let body = &b[8..];
    if body.len() != n {
        return Err(format!(
            "{} header says {n} labels, found {}",
            if body.len() < n {
                "truncated:"
            } else {
                "trailing data:"
            },
            body.len()
        ));
    }
    Ok(body.to_vec())
}
