//! Accuracy-per-round curves as PNG (plotters, bitmap backend).
//!
//! Axis labels need a system font (plotters' `ttf` feature goes through
//! font-kit / fontconfig). If no font can be loaded, the curve is drawn without
//! any text (grid, curve and target line only) and [`PlotOutcome::labels`] is false.

use crate::FedError;
use plotters::prelude::*;
use std::path::Path;

/// What was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlotOutcome {
    /// Whether text (title, axis labels) could be rendered.
    pub labels: bool,
}

/// Draws test accuracy (percent) against round (1-based) into a PNG at `path`,
/// with a dashed horizontal line at `target` if given.
pub fn accuracy_curve(
    path: &Path,
    accuracy: &[f64],
    target: Option<f64>,
    title: &str,
) -> Result<PlotOutcome, FedError> {
    if accuracy.is_empty() {
        return Err(FedError::Plot("no rounds to plot".into()));
    }
    match draw(path, accuracy, target, title, true) {
        Ok(()) => Ok(PlotOutcome { labels: true }),
        Err(_) => {
            draw(path, accuracy, target, title, false).map_err(FedError::Plot)?;
            Ok(PlotOutcome { labels: false })
        }
    }
}

fn draw(
    path: &Path,
    accuracy: &[f64],
    target: Option<f64>,
    title: &str,
    labels: bool,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let n = accuracy.len();
    let pts: Vec<(f64, f64)> = accuracy
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_finite())
        .map(|(i, &a)| ((i + 1) as f64, 100.0 * a))
        .collect();
    let lo = pts
        .iter()
        .map(|p| p.1)
        .chain(target.map(|t| 100.0 * t))
        .fold(100.0f64, f64::min);
    let ymin = (lo - 2.0).clamp(0.0, 99.0).floor();
    let xmax = (n as f64).max(2.0);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder
            .caption(title, ("sans-serif", 24))
            .x_label_area_size(45)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(1.0..xmax, ymin..100.0)
        .map_err(|x| e(&x))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("round").y_desc("test accuracy (%)");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(|x| e(&x))?;
    if let Some(t) = target {
        let t = 100.0 * t;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(1.0, t), (xmax, t)],
                8,
                6,
                RED.stroke_width(2),
            ))
            .map_err(|x| e(&x))?;
    }
    chart
        .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
