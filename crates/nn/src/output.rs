//! Predictions out: the data owner's classes (and, if asked, logits) as
//! `.npy` or `.csv`.
//!
//! - `.npy`: the classes as int64 of shape `[N]`; logits go to a second file
//!   beside it, `<stem>.logits.npy`, float32 of shape `[N, C]`.
//! - `.csv`: a header `index,class` (plus `logit_0..logit_{C-1}` with
//!   logits), one row per image.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("ppml-output-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let p = dir.join("p.csv");
//! ppml_nn::output::write_predictions(&p, &[7, 2], None).unwrap();
//! assert_eq!(std::fs::read_to_string(&p).unwrap(), "index,class\n0,7\n1,2\n");
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use crate::NnError;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Logits of `classes.len()` images, `rows x width` row-major.
#[derive(Debug, Clone, Copy)]
pub struct Logits<'a> {
    pub values: &'a [f32],
    pub width: usize,
}

/// Where [`write_predictions`] puts the logits of a `.npy` output.
pub fn logits_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "predictions".into());
    output.with_file_name(format!("{stem}.logits.npy"))
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Checks an output path before a run whose results it will hold: it must
/// end in `.npy` or `.csv` (any other name used to get `.npy` bytes
/// silently), not be a directory, and its directory must exist. Cheap, so
/// callers run it before a long encrypted run instead of failing after.
pub fn check_output_path(path: &Path) -> Result<(), NnError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("npy" | "csv")) {
        return Err(NnError::Invalid(format!(
            "output {}: the name must end in .npy or .csv",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(NnError::Invalid(format!(
            "output {} is a directory",
            path.display()
        )));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent
        && !dir.is_dir()
    {
        return Err(NnError::Invalid(format!(
            "output {}: directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn write(path: &Path, b: &[u8]) -> Result<(), NnError> {
    std::fs::write(path, b)
        .map_err(|e| NnError::Io(format!("cannot write {}: {e}", path.display())))
}

/// Writes predicted classes (and logits) to `path`: `.csv`, else `.npy`.
/// Returns the files written.
pub fn write_predictions(
    path: &Path,
    classes: &[u8],
    logits: Option<Logits<'_>>,
) -> Result<Vec<PathBuf>, NnError> {
    if let Some(l) = logits
        && (l.width == 0 || l.values.len() != classes.len() * l.width)
    {
        return Err(NnError::Shape(format!(
            "{} logits for {} images of width {}",
            l.values.len(),
            classes.len(),
            l.width
        )));
    }
    check_output_path(path)?;
    if is_csv(path) {
        let mut s = String::from("index,class");
        if let Some(l) = logits {
            for j in 0..l.width {
                let _ = write!(s, ",logit_{j}");
            }
        }
        s.push('\n');
        for (i, c) in classes.iter().enumerate() {
            let _ = write!(s, "{i},{c}");
            if let Some(l) = logits {
                for v in &l.values[i * l.width..(i + 1) * l.width] {
                    let _ = write!(s, ",{v}");
                }
            }
            s.push('\n');
        }
        write(path, s.as_bytes())?;
        return Ok(vec![path.to_path_buf()]);
    }
    let cls: Vec<i64> = classes.iter().map(|&c| i64::from(c)).collect();
    write(path, &crate::npy::encode_i64(&cls, &[cls.len()]))?;
    let mut files = vec![path.to_path_buf()];
    if let Some(l) = logits {
        let lp = logits_path(path);
        write(
            &lp,
            &crate::npy::encode_f32(l.values, &[classes.len(), l.width]),
        )?;
        files.push(lp);
    }
    Ok(files)
}
