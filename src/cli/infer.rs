//! `ppml infer`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct InferArgs {}

pub fn run(_args: InferArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml infer` is not implemented yet")
}
