mod cli;

use clap::Parser;
use cli::{Cli, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.common.json;
    match run(cli) {
        Ok(report) => {
            if json {
                println!("{}", report.json);
            } else {
                println!("{}", report.human);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg = render(&e);
            eprintln!("error: {msg}");
            if json {
                println!("{}", serde_json::json!({ "error": msg }));
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": ", without repeating a cause
/// whose text the error before it already ends with (a thiserror variant
/// like `#[error("network: {0}")] Net(#[from] NetError)` prints its source
/// and also reports it as the next cause).
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if !last.is_empty() && last.ends_with(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
        last = msg;
    }
    out
}
