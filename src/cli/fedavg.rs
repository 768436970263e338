//! `ppml fedavg`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct FedavgArgs {}

pub fn run(_args: FedavgArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml fedavg` is not implemented yet")
}
