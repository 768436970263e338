//! `ppml keygen --name NAME --out DIR`: a party's key pair and self-signed
//! certificate (ppml-net). The key stays on the party's host; the
//! certificate goes into every host's parties file.

use super::{CommonArgs, Report};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

/// Make a party's private key (DIR/NAME.key) and certificate (DIR/NAME.crt).
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Party name: p0, p1, p2, model-owner, data-owner, server, client-0, ..., data-holder, label-holder.
    #[arg(long)]
    pub name: String,
    /// Directory to write NAME.key and NAME.crt into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: KeygenArgs, _common: &CommonArgs) -> anyhow::Result<Report> {
    let files = ppml_net::keygen(&args.name, &args.out)?;
    let json = json!({
        "command": "keygen",
        "name": args.name,
        "key": files.key,
        "certificate": files.certificate,
        "sha256": files.fingerprint,
    });
    let human = format!(
        "wrote {} (secret: keep it on this host only) and {} (public: list it in the parties file); SHA-256 {}",
        files.key.display(),
        files.certificate.display(),
        files.fingerprint
    );
    Ok(Report { json, human })
}
