//! `relive ui`: the HTTP API and web UI over a data folder, no collector.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::UiArgs;

/// The sections of relive.toml `relive ui` reads (others are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UiConfig {
    http: relive::http::HttpConfig,
    remediation: remediate::config::RemediationConfig,
}

/// Runs `relive ui`.
pub fn run(args: UiArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let mut config: UiConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid relive.toml", path.display()))?
        }
        None => UiConfig::default(),
    };
    config
        .remediation
        .check()
        .map_err(|e| anyhow::anyhow!("[remediation] in relive.toml: {e}"))?;
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create the data folder {}", data.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = relive::http::start(
            &config.http,
            relive::http::Context {
                data: data.to_path_buf(),
                registry: pipeline::Registry::new(),
                remediation: config.remediation.clone(),
                extra_metrics: Vec::new(),
                listening: serde_json::json!({}),
                agents: None,
                mode: "ui",
            },
        )
        .await
        .context("cannot start the web UI")?;
        println!(
            "{}",
            serde_json::json!({
                "listening": { "http": running.addr.to_string() },
                "data": data.display().to_string(),
                "tokens": running.token_file.as_ref().map(|p| p.display().to_string()),
            })
        );
        match &running.token_file {
            Some(path) => eprintln!(
                "relive ui: http://{}/ (tokens in {}, readable by this user only)",
                running.addr,
                path.display()
            ),
            None => eprintln!(
                "relive ui: http://{}/ (tokens from [http] in the config)",
                running.addr
            ),
        }
        relive::wait_for_signal().await;
        running.stop(std::time::Duration::from_secs(1)).await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
