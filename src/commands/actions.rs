//! `relive actions`: the remediation audit log.

use std::path::Path;
use std::process::ExitCode;

use relive::display::clean;

use crate::cli::ActionsArgs;

/// Prints the audit log, oldest first, optionally one incident's lines.
pub fn run(args: ActionsArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let path = data.join("remediation/audit.jsonl");
    let read = remediate::audit::read(&path)?;
    let entries: Vec<&remediate::audit::Entry> = read
        .entries
        .iter()
        .filter(|e| {
            args.incident
                .as_deref()
                .is_none_or(|id| e.incident.starts_with(id))
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        println!("no remediation actions recorded in {}", path.display());
    } else {
        for e in &entries {
            let what = serde_json::to_value(e.what)?;
            println!(
                "{}  {}  {:<18} {}{}{}",
                e.at.format("%Y-%m-%d %H:%M:%S"),
                clean(&e.incident),
                what.as_str().unwrap_or("?"),
                e.key.as_deref().map(clean).unwrap_or_default(),
                e.who
                    .as_deref()
                    .map(|w| format!("  by {}", clean(w)))
                    .unwrap_or_default(),
                if e.detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}", clean(&e.detail))
                },
            );
        }
    }
    if read.unreadable > 0 {
        eprintln!(
            "warning: {} line(s) of {} could not be read (a write a crash cut short)",
            read.unreadable,
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
