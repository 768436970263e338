//! `ppml demo`: placeholder until the sharing/net crates land.

use super::{CommonArgs, Report};
use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    anyhow::bail!("`ppml demo` is not implemented yet")
}
