//! `ppml fl-client`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct FlClientArgs {}

pub fn run(_args: FlClientArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml fl-client` is not implemented yet")
}
