//! `ppml splitnn`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct SplitnnArgs {}

pub fn run(_args: SplitnnArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml splitnn` is not implemented yet")
}
