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
            eprintln!("error: {e:#}");
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            ExitCode::FAILURE
        }
    }
}
