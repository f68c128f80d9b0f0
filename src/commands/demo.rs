//! `relive demo`: wires `relive::demo` to the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::cli::DemoArgs;

/// Runs the demo under `data` (default: a fresh temporary folder).
pub fn run(args: DemoArgs, data: Option<PathBuf>, rules: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let data = match data {
        Some(d) => d,
        None => {
            let mut tag = [0u8; 4];
            getrandom::fill(&mut tag).map_err(|e| anyhow::anyhow!("{e}"))?;
            let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
            std::env::temp_dir().join(format!(
                "relive-demo-{}-{tag}",
                chrono::Utc::now().format("%Y%m%d-%H%M%S")
            ))
        }
    };
    let exe =
        std::env::current_exe().context("cannot find the relive binary to start the hosts")?;
    let options = relive::demo::DemoOptions {
        exe,
        data,
        rules: rules.to_vec(),
        smtp: args.smtp.zip(args.mail_to),
        keep_running: args.keep_running,
        stop: Arc::new(AtomicBool::new(false)),
        deadline: Duration::from_secs(60),
    };
    match relive::demo::run_from_cli(options) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(relive::demo::DemoError::Interrupted { step }) => {
            eprintln!("relive demo: stopped during `{step}`; every process it started has stopped");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}
