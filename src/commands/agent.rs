//! `relive agent`: tail log files on this host and ship them to the
//! collector (see `ingest::agent`).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use crate::cli::AgentArgs;

/// Runs `relive agent` until SIGTERM or Ctrl-C.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let mut config: ingest::agent::AgentConfig = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid agent.toml", args.config.display()))?;
    if let Some(base) = args.config.parent() {
        if config.state_dir.is_relative() {
            config.state_dir = base.join(&config.state_dir);
        }
    }
    if config.watch.is_empty() {
        anyhow::bail!(
            "{}: no [[watch]] paths; nothing to ship",
            args.config.display()
        );
    }
    let state_dir = config.state_dir.clone();
    let agent = ingest::agent::Agent::start(config).context("cannot start the agent")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the signal watcher")?;
        std::thread::spawn(move || {
            runtime.block_on(relive::wait_for_signal());
            stop.store(true, Ordering::Release);
        });
    }
    let status = agent.status().clone();
    let mut last = String::new();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(200));
        let now = serde_json::json!({
            "connected": status.connected.load(Ordering::Relaxed),
            "events_read": status.events_read.load(Ordering::Relaxed),
            "batches_acked": status.acked.load(Ordering::Relaxed),
            "batches_spooled": status.spooled.load(Ordering::Relaxed),
            "spool_full": status.spool_full.load(Ordering::Relaxed),
            "last_error": status.last_error.lock().map(|e| e.clone()).unwrap_or_default(),
        })
        .to_string();
        if now != last {
            let _ = std::fs::write(state_dir.join("status.json"), &now);
            last = now;
        }
    }
    agent.stop();
    Ok(ExitCode::SUCCESS)
}
