//! `ppml train`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct TrainArgs {}

pub fn run(_args: TrainArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml train` is not implemented yet")
}
