//! cargo xtask: repository automation (tidy checks of the layer rules, benchmarks).

mod bench;
mod tidy;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => {
            let problems = tidy::check(&tidy::workspace_root())?;
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("tidy: {p}");
                }
                bail!("tidy found {} problem(s)", problems.len())
            }
        }
        Some("bench") => bench::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <tidy | bench server|mount|workflow [--quick]>");
            bail!("unknown or missing task")
        }
    }
}
