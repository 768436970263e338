//! `ppml secagg-bench`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct SecaggBenchArgs {}

pub fn run(_args: SecaggBenchArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml secagg-bench` is not implemented yet")
}
