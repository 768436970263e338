//! `ppml party`: not implemented yet (tracked in the issues).

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct PartyArgs {}

pub fn run(_args: PartyArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml party` is not implemented yet")
}
