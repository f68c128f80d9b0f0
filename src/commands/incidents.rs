//! `relive incidents`, `relive explain`, `relive rules`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;
use correlate::{Incident, IncidentStore, Knowledge, Status};

use crate::cli::{ExplainArgs, IncidentsArgs};
use relive::display::clean;

/// Runs `relive incidents`.
pub fn list(args: IncidentsArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let filter = correlate::IncidentFilter {
        status: args
            .status
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| anyhow::anyhow!("--status: {e}"))?,
        vm: args.vm.clone(),
        host: args.host.clone(),
        root_cause: args.root_cause.clone(),
        since: args
            .since
            .as_deref()
            .map(|s| parsers::time::parse_when(s, Utc::now()))
            .transpose()?,
    };
    let mut incidents = IncidentStore::new(data).load()?;
    incidents.retain(|i| filter.matches(i));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&incidents)?);
        return Ok(ExitCode::SUCCESS);
    }
    if incidents.is_empty() {
        println!("no incidents");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}  {:<20}  {:<8}  {:<30}  {:<16}  {:>5}  {:>4}  VM / route",
        "ID", "FIRST SEEN (UTC)", "STATUS", "ROOT CAUSE", "", "CONF", "N"
    );
    for i in &incidents {
        println!(
            "{:<16}  {:<20}  {:<8}  {:<30}  {:<16}  {:>5.2}  {:>4}  {} {} -> {}",
            i.id,
            i.first_seen.format("%Y-%m-%d %H:%M:%S"),
            status_word(i.status),
            i.root_cause,
            alternatives_hint(i),
            i.confidence,
            i.count,
            clean(i.vm_name.as_deref().or(i.vm_id.as_deref()).unwrap_or("?")),
            clean(i.source_host.as_deref().unwrap_or("?")),
            clean(i.destination_host.as_deref().unwrap_or("?")),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Open => "open",
        Status::Resolved => "resolved",
    }
}

fn alternatives_hint(i: &Incident) -> String {
    match i.alternatives.len() {
        0 => String::new(),
        1 => format!("(or {})", i.alternatives[0].root_cause),
        n => format!("(+{n} others)"),
    }
}

/// Runs `relive explain`.
pub fn explain(args: ExplainArgs, data: &Path) -> anyhow::Result<ExitCode> {
    let Some(incident) = IncidentStore::new(data).find(&args.id)? else {
        anyhow::bail!(
            "no incident `{}` in {} (list them with `relive incidents`)",
            args.id,
            data.display()
        );
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&incident)?);
        return Ok(ExitCode::SUCCESS);
    }
    let kb = correlate::shipped::knowledge()?;
    print!("{}", render_explain(&incident, &kb));
    Ok(ExitCode::SUCCESS)
}

fn render_explain(i: &Incident, kb: &Knowledge) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", clean(&i.title));
    let _ = writeln!(
        out,
        "incident {}  root cause {}  confidence {:.2}  status {}{}  attempts {}",
        i.id,
        i.root_cause,
        i.confidence,
        status_word(i.status),
        i.resolved_at
            .map(|t| format!(" at {}", t.to_rfc3339()))
            .unwrap_or_default(),
        i.count
    );
    let _ = writeln!(
        out,
        "VM {} ({})  {} -> {}",
        clean(i.vm_name.as_deref().unwrap_or("?")),
        i.vm_id.as_deref().unwrap_or("id unknown"),
        clean(i.source_host.as_deref().unwrap_or("?")),
        clean(i.destination_host.as_deref().unwrap_or("?"))
    );
    for a in &i.alternatives {
        let _ = writeln!(
            out,
            "also possible: {} (confidence {:.2}, matched {})",
            a.root_cause,
            a.confidence,
            a.matched.join(", ")
        );
    }
    for l in &i.lookalikes {
        let _ = writeln!(
            out,
            "could also be {}; what settles it: {}",
            l.root_cause,
            clean(&l.settle)
        );
    }
    if i.related_vms > 0 {
        let _ = writeln!(
            out,
            "at least {} other VM(s) failed with the same cause within ten minutes: likely cluster-wide",
            i.related_vms
        );
    }
    for w in &i.warnings {
        let _ = writeln!(out, "warning: {}", clean(w));
    }
    let _ = writeln!(out, "\nTimeline (UTC, offset from the first event):");
    // One column per host, so the hosts' events line up by time.
    let mut hosts: Vec<String> = Vec::new();
    for e in &i.evidence {
        let short = e.host.split('.').next().unwrap_or(&e.host).to_string();
        if !hosts.contains(&short) {
            hosts.push(short);
        }
    }
    let first = i.evidence.first().map(|e| e.timestamp);
    for e in &i.evidence {
        let short = e.host.split('.').next().unwrap_or(&e.host);
        let column = hosts.iter().position(|h| h == short).unwrap_or(0);
        let offset = first.map_or(0.0, |f| {
            (e.timestamp - f).num_milliseconds() as f64 / 1000.0
        });
        let origin = match &e.origin.path {
            Some(p) => format!("{}@{}", p, e.origin.offset),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}  +{:>7.3}s  {}{:<12} {:>5} {:<7} {}",
            e.timestamp.format("%H:%M:%S%.3f"),
            offset,
            "    ".repeat(column),
            clean(short),
            e.event_id,
            e.level,
            clean(&e.channel),
        );
        // The whole message, wrapped, the line that says why first.
        for line in e.lines_cause_first() {
            for piece in wrap(&clean(line), 100) {
                let _ = writeln!(out, "  {:>26}{}", "", piece);
            }
        }
        if !origin.is_empty() {
            let _ = writeln!(out, "  {:>26}from {} (rule {})", "", clean(&origin), e.rule);
        }
    }
    if i.evidence_omitted > 0 {
        let _ = writeln!(
            out,
            "  ({} more evidence events not kept: the list holds [correlate] max_evidence; `relive search` finds them)",
            i.evidence_omitted
        );
    }
    if let Some(p) = kb.get(&i.remediation.playbook) {
        let _ = writeln!(out, "\nWhy ({} {}):", p.fm, p.title);
        for line in p.explanation.trim().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    let r = &i.remediation;
    if !r.summary.is_empty() {
        let _ = writeln!(out, "\n{}", clean(&r.summary));
    }
    if !r.confirm.is_empty() || !r.steps.is_empty() {
        // Placeholders stay in the commands: values from logs are shown as
        // data, never pasted into a command line.
        let _ = writeln!(
            out,
            "\nIn the commands below: {{vm_name}} = '{}', {{vm_id}} = '{}', {{source_host}} = '{}', {{destination_host}} = '{}'",
            clean(i.vm_name.as_deref().unwrap_or("?")),
            i.vm_id.as_deref().unwrap_or("?"),
            clean(i.source_host.as_deref().unwrap_or("?")),
            clean(i.destination_host.as_deref().unwrap_or("?")),
        );
    }
    if !r.confirm.is_empty() {
        let _ = writeln!(out, "\nConfirm:");
        for (n, s) in r.confirm.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", n + 1, s.title);
            if !s.command.is_empty() {
                let _ = writeln!(out, "       {}", s.command);
            }
        }
    }
    if !r.steps.is_empty() {
        let _ = writeln!(
            out,
            "\nFix (playbook {}, class {}, retry {}):",
            r.playbook, r.fix_class, r.retry
        );
        for (n, s) in r.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}. [{}] {}",
                n + 1,
                s.class.as_deref().unwrap_or("-"),
                s.title
            );
            if !s.command.is_empty() {
                let _ = writeln!(out, "       {}", s.command);
            }
        }
    }
    out
}

/// Runs `relive rules`.
pub fn rules(extra: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (rules, kb) = relive::load_rules(extra)?;
    let problems = rules.self_test();
    println!(
        "{} detection rules, {} root causes, {} playbooks",
        rules.detections.len(),
        rules.causes.len(),
        kb.len()
    );
    for c in &rules.causes {
        let names: Vec<&str> = c
            .rules
            .iter()
            .map(|&r| rules.detections[r].name.as_str())
            .collect();
        println!(
            "  {:<30} priority {:>3}  timespan {:>5}s  {}",
            c.root_cause,
            c.priority,
            c.timespan.as_secs(),
            names.join(", ")
        );
        if kb.get(&c.playbook).is_none() {
            println!("    warning: no playbook `{}`", c.playbook);
        }
    }
    for p in &problems {
        println!("test failed: {p}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `text` in pieces of at most `width` characters, broken at spaces where
/// there are some (a longer word is cut); nothing is lost.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word;
        loop {
            let room = width.saturating_sub(line.chars().count() + usize::from(!line.is_empty()));
            if word.chars().count() <= room {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
                break;
            }
            if line.is_empty() {
                // A word longer than a line: cut it.
                let cut = word
                    .char_indices()
                    .nth(width)
                    .map_or(word.len(), |(i, _)| i);
                out.push(word[..cut].to_string());
                word = &word[cut..];
                if word.is_empty() {
                    break;
                }
            } else {
                out.push(std::mem::take(&mut line));
            }
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_keeps_every_character() {
        let text = "a virtual switch used by the VM does not exist on the destination node 'HV02-with-a-long-name' 512 vs 1024 MB";
        let lines = wrap(text, 30);
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        let long = "y".repeat(75);
        assert_eq!(wrap(&long, 30).concat(), long);
        assert_eq!(wrap("", 30), vec![String::new()]);
    }
}
