//! `relive alerts` (what was sent, pending, failed) and `relive silence`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use remediate::alert::journal::{self, Decision};
use remediate::alert::matcher::Matcher;
use remediate::alert::silence::{NewSilence, SilenceStore};

use crate::cli::{AlertsArgs, SilenceCommand};
use relive::display::clean;

/// `relive alerts`.
pub fn list(args: AlertsArgs, data: &Path) -> anyhow::Result<ExitCode> {
    if let Some(id) = &args.render {
        return render(id, &args.shape, data);
    }
    let entries = journal::read(data).context("cannot read the notification journal")?;
    let wanted: Option<Decision> = match &args.status {
        Some(s) => Some(
            serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(
                |_| {
                    anyhow::anyhow!("--status is queued, sent, retry, failed or resumed, not `{s}`")
                },
            )?,
        ),
        None => None,
    };
    let statuses: Vec<_> = journal::statuses(&entries)
        .into_iter()
        .filter(|s| wanted.is_none_or(|w| s.status == w))
        .take(args.limit)
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &statuses)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if statuses.is_empty() {
        writeln!(out, "No notifications under {}.", data.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    let count = |d: Decision| statuses.iter().filter(|s| s.status == d).count();
    writeln!(
        out,
        "{} notifications: {} sent, {} pending, {} failed",
        statuses.len(),
        count(Decision::Sent),
        count(Decision::Queued) + count(Decision::Retry) + count(Decision::Resumed),
        count(Decision::Failed),
    )?;
    for s in &statuses {
        let status = match s.status {
            Decision::Queued | Decision::Resumed => "pending",
            Decision::Retry => "retrying",
            Decision::Sent => "sent",
            Decision::Failed => "FAILED",
            _ => "other",
        };
        writeln!(
            out,
            "{}  {:<8} {:<24} {}  {}",
            s.queued_at.format("%Y-%m-%d %H:%M:%S"),
            status,
            clean(&s.target),
            s.notification,
            clean(&s.subject)
        )?;
        if let Some(reason) = &s.reason {
            writeln!(out, "    after {} attempts: {}", s.attempts, clean(reason))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn author(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `relive silence add|list|expire`.
pub fn silence(command: SilenceCommand, data: &Path) -> anyhow::Result<ExitCode> {
    let store = SilenceStore::new(data);
    let mut out = std::io::stdout().lock();
    match command {
        SilenceCommand::Add(args) => {
            let matchers = args
                .matchers
                .iter()
                .map(|m| m.parse::<Matcher>())
                .collect::<Result<Vec<_>, _>>()?;
            let ends_at = match (&args.duration, &args.until) {
                (Some(d), _) => {
                    let span = parsers::time::parse_span(d)?;
                    chrono::Utc::now()
                        + chrono::Duration::from_std(span).context("--for is too long")?
                }
                (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
                    .with_context(|| format!("--until `{t}` is not an RFC 3339 time"))?
                    .with_timezone(&chrono::Utc),
                (None, None) => anyhow::bail!("give --for DURATION or --until TIME"),
            };
            let silence = store.add(NewSilence {
                matchers,
                starts_at: None,
                ends_at,
                created_by: author(args.author),
                comment: args.comment,
            })?;
            writeln!(
                out,
                "silence {} until {}",
                silence.id,
                silence.ends_at.to_rfc3339()
            )?;
        }
        SilenceCommand::List(args) => {
            let now = chrono::Utc::now();
            let list: Vec<_> = store
                .load()?
                .into_iter()
                .filter(|s| args.all || s.ends_at > now)
                .collect();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &list)?;
                writeln!(out)?;
            } else if list.is_empty() {
                writeln!(out, "No silences.")?;
            } else {
                for s in &list {
                    writeln!(
                        out,
                        "{}  {:<7} until {}  by {}: {}  [{}]",
                        s.id,
                        s.state(now),
                        s.ends_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        clean(&s.created_by),
                        clean(&s.comment),
                        s.matchers
                            .iter()
                            .map(|m| clean(&m.to_string()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )?;
                }
            }
        }
        SilenceCommand::Expire(args) => {
            let silence = store.expire(&args.id, &author(args.author))?;
            writeln!(out, "silence {} expired", silence.id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `relive alerts --render ID`: the message an incident gives, not sent.
fn render(id: &str, shape: &str, data: &Path) -> anyhow::Result<ExitCode> {
    let incident = correlate::IncidentStore::new(data)
        .find(id)
        .context("cannot read the incident store")?
        .ok_or_else(|| anyhow::anyhow!("no incident `{id}` (or the prefix is not unique)"))?;
    let (_, kb) = relive::load_rules(&[])?;
    let context = remediate::alert::AlertContext::new(&Default::default(), Some(&kb));
    let notification = remediate::alert::Notification::preview(
        remediate::alert::Alert::from_incident(incident, chrono::Utc::now(), &context),
        "http://127.0.0.1:7300",
    );
    let mut out = std::io::stdout().lock();
    match shape {
        "email" => {
            out.write_all(&remediate::alert::email::preview(&notification)?)?;
        }
        "generic" => {
            serde_json::to_writer_pretty(
                &mut out,
                &remediate::alert::webhook::generic(&notification, "preview"),
            )?;
            writeln!(out)?;
        }
        "slack" => {
            serde_json::to_writer_pretty(
                &mut out,
                &remediate::alert::webhook::slack(&notification),
            )?;
            writeln!(out)?;
        }
        _ => {
            serde_json::to_writer_pretty(
                &mut out,
                &remediate::alert::webhook::teams(&notification),
            )?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
