//! `ppml infer` as one library call: read any model and any input files,
//! normalise as the model says, classify in plaintext or privately (five
//! roles in this process), and write the data owner's predictions.
//!
//! The command line only parses flags into an [`InferJob`] and prints the
//! [`JobReport`]; the Python package can call [`run_infer_job`] too.

use crate::SmpcError;
use crate::inference::{InferConfig, InferenceReport, run_in_process};
use crate::scoring::{PrivateReport, Reveal, run_private};
use ppml_nn::input;
use ppml_nn::io::LoadedModel;
use ppml_nn::output::{self, Logits};
use ppml_nn::{Normalization, argmax_rows};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Everything `ppml infer` needs.
#[derive(Debug, Clone)]
pub struct InferJob {
    /// The model and the normalisation its file records.
    pub model: LoadedModel,
    /// Images to classify; `None`: the MNIST test set of `data_dir`.
    pub input: Option<PathBuf>,
    /// Labels, only for accuracy (with `input`); the MNIST test labels by default.
    pub labels: Option<PathBuf>,
    /// Where the MNIST files are.
    pub data_dir: PathBuf,
    /// `--normalize`: overrides the model's normalisation (with a warning)
    /// and is applied to float inputs too.
    pub normalize: Option<Normalization>,
    /// Classify the first N images only.
    pub limit: Option<usize>,
    /// Run privately (P0, P1, P2, model owner, data owner).
    pub encrypted: bool,
    /// What the data owner learns when encrypted.
    pub reveal: Reveal,
    /// `--output`: predictions file (`.npy` or `.csv`).
    pub output: Option<PathBuf>,
    /// Timed repetitions of the plaintext evaluation.
    pub repeat: usize,
    /// Private inference parameters.
    pub cfg: InferConfig,
}

/// Plaintext timing.
#[derive(Debug, Clone, Serialize)]
pub struct PlainStats {
    pub images: usize,
    /// Median over `repeat` runs.
    pub seconds: f64,
    pub min_seconds: f64,
    pub repeat: usize,
    pub images_per_second: f64,
}

/// What [`run_infer_job`] did. Serialises flat, as the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub mode: &'static str,
    pub model: String,
    pub model_format: &'static str,
    /// The normalisation used (uint8 inputs; float inputs only with --normalize).
    pub normalization: &'static str,
    pub input: String,
    pub input_dtype: &'static str,
    /// Accuracy of the predictions (or of the private count) against the labels.
    pub accuracy: Option<f64>,
    /// Plaintext model on the same inputs: a check this in-process run can
    /// make because it holds both the model and the data.
    pub plaintext_accuracy: Option<f64>,
    pub plaintext_correct: Option<u64>,
    pub plaintext_agreement: Option<f64>,
    pub private_eval: bool,
    /// Files written for the data owner.
    pub outputs: Vec<String>,
    pub warnings: Vec<String>,
    #[serde(flatten)]
    pub plain: Option<PlainStats>,
    #[serde(flatten)]
    pub private: Option<PrivateReport>,
    /// The default run (classes only, labels known): the full in-process
    /// report with latencies and modelled network times.
    #[serde(flatten)]
    pub inference: Option<InferenceReport>,
    #[serde(skip)]
    pub predictions: Vec<u8>,
}

impl JobReport {
    /// One or two human lines.
    pub fn summary(&self) -> String {
        let acc = |a: Option<f64>| {
            a.map_or("n/a (no labels)".to_string(), |a| {
                format!("{:.2}%", a * 100.0)
            })
        };
        let mut s = match (&self.plain, &self.private) {
            (Some(p), _) => format!(
                "{} (plaintext): accuracy {} on {} images, {:.1} ms ({:.0} images/s, median of {})",
                self.model,
                acc(self.accuracy),
                p.images,
                p.seconds * 1e3,
                p.images_per_second,
                p.repeat
            ),
            (_, _) if self.inference.is_some() => {
                let r = self.inference.as_ref().expect("checked above");
                let mut h = format!(
                    "{} (encrypted, 3 parties): accuracy {:.2}% (plaintext {:.2}%), agreement {:.4} on {} images\n\
                     {:.2} s ({:.0} images/s), {:.1} KB/image sent in total, {} rounds\n\
                     comparison widths {:?} (proven exact for inputs in [{}, {}]), {} truncation \
                     (failure probability per image at most {:.1e})",
                    r.arch,
                    r.accuracy * 100.0,
                    r.plaintext_accuracy * 100.0,
                    r.plaintext_agreement,
                    r.images,
                    r.seconds,
                    r.images_per_second,
                    r.bytes_per_image / 1e3,
                    r.rounds,
                    r.cmp_widths,
                    r.input_range.0,
                    r.input_range.1,
                    r.truncation,
                    r.truncation_failure_per_image
                );
                if let (Some(p50), Some(p99)) = (r.latency_ms_p50, r.latency_ms_p99) {
                    h.push_str(&format!(
                        "\nlatency per query: p50 {p50:.2} ms, p99 {p99:.2} ms, {:.1} rounds per query",
                        r.rounds_per_image
                    ));
                }
                if let (Some(lan), Some(wan)) = (r.modelled_seconds_lan, r.modelled_seconds_wan) {
                    h.push_str(&format!(
                        "\nmodelled: {lan:.2} s on a LAN (1 Gbit/s, 0.2 ms RTT), {wan:.2} s on a WAN (100 Mbit/s, 40 ms RTT)"
                    ));
                }
                h
            }
            (_, Some(r)) if r.reveal == Reveal::CorrectCount => format!(
                "{} (encrypted, private scoring): {} of {} correct ({}), revealed to the model owner and the data owner only; no prediction was revealed\n\
                 {:.2} s ({:.0} images/s), {:.1} KB/image sent in total, {} rounds",
                self.model,
                r.correct.unwrap_or(0),
                r.images,
                acc(self.accuracy),
                r.seconds,
                r.images_per_second,
                r.bytes_per_image / 1e3,
                r.rounds
            ),
            (_, Some(r)) => format!(
                "{} (encrypted, 3 parties): accuracy {} (plaintext {}), agreement {:.4} on {} images\n\
                 {:.2} s ({:.0} images/s), {:.1} KB/image sent in total, {} rounds",
                self.model,
                acc(self.accuracy),
                acc(self.plaintext_accuracy),
                self.plaintext_agreement.unwrap_or(0.0),
                r.images,
                r.seconds,
                r.images_per_second,
                r.bytes_per_image / 1e3,
                r.rounds
            ),
            _ => String::new(),
        };
        for o in &self.outputs {
            s.push_str(&format!("\nwrote {o}"));
        }
        s
    }
}

fn frac(n: usize, of: usize) -> f64 {
    n as f64 / of.max(1) as f64
}

/// A warning when float inputs fed as given lie outside the range MNIST
/// models see after normalisation ([`crate::range::DEFAULT_INPUT_RANGE`],
/// also what `--encrypted` accepts): raw 0-255 values or unnormalised
/// `[0, 1]` values still produce predictions in plaintext, just not the
/// ones the model would give its intended inputs.
fn float_range_warning(x: &[f32]) -> Option<String> {
    let (lo, hi) = crate::range::DEFAULT_INPUT_RANGE;
    let (min, max) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let inside = f64::from(min) >= lo && f64::from(max) <= hi;
    (!x.is_empty() && !inside).then(|| {
        format!(
            "the float inputs span [{min}, {max}], outside [{lo}, {hi}], the range MNIST models \
             see after normalisation (and the one --encrypted accepts); they are fed as given. \
             Values in [0, 1] need --normalize standard or unit; 0-255 pixels belong in a uint8 \
             array"
        )
    })
}

/// Runs the job; warnings (normalisation defaults and overrides) are in the
/// report and also returned first so the caller can print them early.
pub fn run_infer_job(job: &InferJob) -> Result<JobReport, SmpcError> {
    if let Some(p) = &job.output {
        // Before the run: a bad name must not cost a long encrypted run.
        output::check_output_path(p).map_err(|e| SmpcError::Output(e.to_string()))?;
    }
    if job.repeat == 0 {
        return Err(SmpcError::Config(
            "repeat must be at least 1 (timed repetitions of the plaintext evaluation)".into(),
        ));
    }
    let model = &job.model.model;
    let (norm, warnings) = job.model.resolve_normalization(job.normalize);
    let input::Dataset {
        mut images,
        labels,
        name: input_name,
        is_default: default_input,
    } = input::load_dataset(job.input.as_deref(), job.labels.as_deref(), &job.data_dir)
        .map_err(|e| SmpcError::Input(e.to_string()))?;
    images.check_fits(model)?;
    let mut labels = labels;
    if default_input && model.output_size() == 1 {
        // The perceptron's task is 0 vs 1: keep those test images.
        if let Some(l) = &labels {
            let keep: Vec<usize> = (0..l.len()).filter(|&i| l[i] <= 1).collect();
            images = images.select(&keep);
            labels = Some(keep.iter().map(|&i| l[i]).collect());
        }
    }
    if let Some(n) = job.limit {
        images.truncate(n);
        if let Some(l) = &mut labels {
            l.truncate(n);
        }
    }
    let n = images.count;
    let float_input = !images.is_u8();
    // A float input without --normalize is fed as given: the model's
    // normalisation (recorded or default) does not apply, nor its warnings.
    let warnings = if float_input && job.normalize.is_none() {
        Vec::new()
    } else {
        warnings
    };
    let x = images.to_model_input(norm, job.normalize)?;
    let mut warnings = warnings;
    if float_input
        && job.normalize.is_none()
        && let Some(w) = float_range_warning(&x)
    {
        warnings.push(w);
    }
    let out = model.output_size();
    let plain_preds = crate::inference::predict_plain(model, &x, n);
    let count_ok = |p: &[u8]| {
        labels
            .as_ref()
            .map(|l| p.iter().zip(l).filter(|(a, b)| a == b).count())
    };
    let plaintext_correct = count_ok(&plain_preds);
    let mut report = JobReport {
        mode: if job.encrypted {
            "encrypted"
        } else {
            "plaintext"
        },
        model: model.arch.clone(),
        model_format: job.model.format.name(),
        normalization: if float_input && job.normalize.is_none() {
            "none (float input fed as given)"
        } else {
            norm.name()
        },
        input: input_name,
        input_dtype: if float_input { "float32" } else { "uint8" },
        accuracy: None,
        plaintext_accuracy: plaintext_correct.map(|c| frac(c, n)),
        plaintext_correct: plaintext_correct.map(|c| c as u64),
        plaintext_agreement: None,
        private_eval: job.encrypted && job.reveal == Reveal::CorrectCount,
        outputs: Vec::new(),
        warnings,
        plain: None,
        private: None,
        inference: None,
        predictions: Vec::new(),
    };
    let (preds, logits) = if !job.encrypted {
        let mut times = Vec::new();
        let mut logits = Vec::new();
        for _ in 0..job.repeat {
            let t = Instant::now();
            logits = plain_logits(model, &x, n);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let secs = times[times.len() / 2];
        report.plain = Some(PlainStats {
            images: n,
            seconds: secs,
            min_seconds: times[0],
            repeat: times.len(),
            images_per_second: n as f64 / secs.max(1e-12),
        });
        let p = argmax_rows(&logits, out);
        report.accuracy = count_ok(&p).map(|c| frac(c, n));
        (p, logits)
    } else {
        if job.reveal == Reveal::CorrectCount && labels.is_none() {
            return Err(SmpcError::Config(
                "--private-eval needs labels (--labels FILE, or the default MNIST test set)".into(),
            ));
        }
        if let (Reveal::Classes, Some(l)) = (job.reveal, labels.as_deref()) {
            let r = run_in_process(model, &x, l, &job.cfg)?;
            report.accuracy = Some(r.accuracy);
            report.plaintext_agreement = Some(r.plaintext_agreement);
            let preds = r.predictions.clone();
            report.inference = Some(r);
            return finish(job, report, preds, Vec::new(), out);
        }
        let r = run_private(model, &x, labels.as_deref(), job.reveal, &job.cfg)?;
        if let Some(c) = r.correct {
            report.accuracy = Some(frac(c as usize, n));
        } else {
            report.accuracy = count_ok(&r.predictions).map(|c| frac(c, n));
            report.plaintext_agreement = Some(frac(
                r.predictions
                    .iter()
                    .zip(&plain_preds)
                    .filter(|(a, b)| a == b)
                    .count(),
                n,
            ));
        }
        let out = (r.predictions.clone(), r.logits.clone());
        report.private = Some(r);
        out
    };
    finish(job, report, preds, logits, out)
}

/// Writes the data owner's outputs.
fn finish(
    job: &InferJob,
    mut report: JobReport,
    preds: Vec<u8>,
    logits: Vec<f32>,
    out: usize,
) -> Result<JobReport, SmpcError> {
    if let Some(path) = &job.output {
        if job.encrypted && job.reveal == Reveal::CorrectCount {
            return Err(SmpcError::Config(
                "--private-eval reveals only the count: there are no predictions to write".into(),
            ));
        }
        let l = (job.reveal == Reveal::ClassesAndLogits).then_some(Logits {
            values: &logits,
            width: out,
        });
        let files = output::write_predictions(path, &preds, l)
            .map_err(|e| SmpcError::Output(e.to_string()))?;
        report.outputs = files.iter().map(|f| f.display().to_string()).collect();
    }
    report.predictions = preds;
    Ok(report)
}

fn plain_logits(model: &ppml_nn::Model, x: &[f32], n: usize) -> Vec<f32> {
    let per = model.input_size();
    let mut out = Vec::with_capacity(n * model.output_size());
    for chunk in x.chunks(1000 * per) {
        out.extend(model.forward(chunk, chunk.len() / per));
    }
    out
}
