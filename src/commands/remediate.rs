//! `relive remediate` (a plan, optionally its read-only checks run),
//! `relive approve` and `relive reject`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use correlate::IncidentStore;
use relive::display::clean;
use remediate::config::RemediationConfig;
use remediate::plan::{Facts, Plan};
use serde::Deserialize;

use crate::cli::{DecideArgs, RemediateArgs};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct File {
    remediation: RemediationConfig,
}

/// `[remediation]` of a relive.toml (defaults without one).
pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<RemediationConfig> {
    let Some(path) = path else {
        return Ok(RemediationConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: File = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid relive.toml", path.display()))?;
    file.remediation
        .check()
        .map_err(|e| anyhow::anyhow!("[remediation] in {}: {e}", path.display()))?;
    Ok(file.remediation)
}

/// Prints an incident's plan; with `--dry-run` its checks' answers.
pub fn plan(args: RemediateArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let config = load(args.config.as_deref())?;
    let Some(incident) = IncidentStore::new(data).find(&args.id)? else {
        anyhow::bail!(
            "no incident `{}` in {} (list them with `relive incidents`)",
            args.id,
            data.display()
        );
    };
    let kb = correlate::shipped::knowledge()?;
    let facts = Facts {
        clusters: config.clusters.clone(),
    };
    let plan = Plan::for_incident(&incident, &kb, &facts, 1)?;
    let executor = if args.dry_run {
        remediate::executor::from_config(&config)
    } else {
        None
    };
    let steps = remediate::engine::dry_run(&plan, executor.as_deref());
    let cluster = incident
        .source_host
        .as_deref()
        .and_then(|h| facts.cluster_of(h));
    let mode = config.mode_for(&incident.root_cause, cluster, incident.vm_name.as_deref());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "plan": plan,
                "mode": mode.as_str(),
                "runnable": plan.runnable().map_err(|e| e.to_string()).err(),
                "steps": steps,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        remediate::engine::describe(&plan, mode, executor.as_deref())
    );
    let _ = writeln!(
        out,
        "incident {}  VM {}  {} -> {}",
        incident.id,
        clean(incident.vm_name.as_deref().unwrap_or("?")),
        clean(incident.source_host.as_deref().unwrap_or("?")),
        clean(incident.destination_host.as_deref().unwrap_or("?"))
    );
    if let Err(e) = plan.runnable() {
        let _ = writeln!(out, "{}", clean(&e.to_string()));
    }
    for s in &steps {
        let a = &s.action;
        let stage = serde_json::to_value(a.stage)?;
        let class = serde_json::to_value(a.class)?;
        let _ = writeln!(
            out,
            "\n[{}] {} ({}{})\n  key {}",
            stage.as_str().unwrap_or("?"),
            clean(&a.title),
            class.as_str().unwrap_or("?"),
            a.target
                .as_deref()
                .map(|t| format!(", on {}", clean(t)))
                .unwrap_or_default(),
            a.key
        );
        if let Some(op) = a.op {
            let op = serde_json::to_value(op)?;
            let _ = writeln!(
                out,
                "  relive host operation: {}",
                op.as_str().unwrap_or("?")
            );
        }
        if !a.command.is_empty() {
            let _ = writeln!(out, "  PowerShell: {}", clean(a.command.trim()));
        }
        for (k, v) in &a.params {
            let _ = writeln!(out, "  {k} = {}", clean(v));
        }
        let _ = writeln!(out, "  -> {}", clean(&s.would));
        match &s.observed {
            Some(Ok(o)) => {
                let _ = writeln!(
                    out,
                    "  saw: {} {}",
                    if o.healthy { "healthy:" } else { "finding:" },
                    clean(&o.detail)
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(out, "  check failed: {}", clean(e));
            }
            None => {}
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `relive approve` / `relive reject`.
pub fn decide(args: DecideArgs, data: &Path, approve: bool) -> anyhow::Result<ExitCode> {
    let config = load(args.config.as_deref())?;
    let audit = remediate::audit::AuditLog::open(data)?;
    let who = args
        .by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let entry = remediate::approval::decide(
        &audit,
        &config,
        &remediate::approval::Decision {
            key: &args.key,
            incident: args.incident.as_deref(),
            who: &who,
            approve,
            reason: &args.comment,
            now: chrono::Utc::now(),
        },
    )?;
    println!(
        "{} {} (incident {}) by {}",
        if approve { "approved" } else { "rejected" },
        clean(&args.key),
        entry.incident,
        clean(&who)
    );
    Ok(ExitCode::SUCCESS)
}
