//! `ppml fl-server`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct FlServerArgs {}

pub fn run(_args: FlServerArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml fl-server` is not implemented yet")
}
