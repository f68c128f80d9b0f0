//! `relive host` (a migration host: VMs, migration listener, control API,
//! a Hyper-V-shaped event log and migration metrics), `relive migrate` and
//! `relive vms` (clients of its control API).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use migrate_core::config::HostConfig;
use migrate_core::control::ControlClient;
use migrate_core::host::Host;
use migrate_core::report::{MigrationParams, MigrationReport, Status, VerifyMode};
use serde_json::json;

use crate::cli::{HostAction, HostArgs, HostSetArgs, MigrateArgs, ResolveArgs, VmsArgs};

/// `relive host --config FILE` and `relive host set`.
pub fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    if let Some(HostAction::Set(set)) = args.action {
        return set_setting(set);
    }
    let Some(path) = args.config else {
        anyhow::bail!(
            "relive host needs --config HOST.toml (`relive config default --host` prints one \
             with every key; examples/lab/ holds a three-host lab)"
        );
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: HostConfig = toml::from_str(&text)
        .with_context(|| format!("{}: invalid host configuration", path.display()))?;
    // No fixed secrets: what is not configured is generated once and kept
    // owner-only under the state folder.
    let generated = config
        .ensure_secrets()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for secret in &generated {
        eprintln!(
            "relive host {}: {} {} {}{}",
            config.name,
            if secret.new {
                "generated"
            } else {
                "using the generated"
            },
            secret.setting,
            secret.path.display(),
            if secret.setting == "default_secret" {
                " (hosts that migrate to each other need the same one: copy it into their [auth] default_secret)"
            } else {
                " (relive migrate/vms --token-file)"
            }
        );
    }
    // Events and metrics go to the state folder unless configured: a host
    // that logs nothing gives relive nothing to find.
    let event_log = config.event_log_path();
    let metrics_log = config.metrics_log_path();
    let token_file = generated
        .iter()
        .find(|g| g.setting == "control_token")
        .map(|g| g.path.display().to_string());
    let slot: hostlog::HostSlot = Arc::new(Mutex::new(None));
    let log = Arc::new(
        hostlog::EventLog::open(slot.clone(), Some(&event_log), Some(&metrics_log)).with_context(
            || {
                format!(
                    "cannot open the host's logs ({} and {})",
                    event_log.display(),
                    metrics_log.display()
                )
            },
        )?,
    );
    let vms = config.vms.clone();
    let host = Host::new(config.clone(), log.clone());
    *slot.lock().expect("host slot") = Some(host.clone());
    log.write(&[hostlog::host_facts(&config)]);
    let listen = match config.listen {
        Some(_) => Some(
            host.open_listener()
                .context("opening the migration listener")?,
        ),
        None => None,
    };
    // VMs first, so a client that reaches the control API finds them; the
    // ledger keeps a VM that moved away (or is in doubt) from starting twice.
    let skipped = host
        .start_configured(vms)
        .context("starting the configured VMs")?;
    for line in &skipped {
        eprintln!(
            "relive host {}: not started: {}",
            host.name(),
            relive::display::clean(line)
        );
    }
    let control = host.serve_control().context("opening the control API")?;
    eprintln!(
        "relive host {}: migrations on {}, control API on {} (token {}), {} VM(s) running; \
         events to {}, metrics to {}",
        host.name(),
        listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(listener closed)".into()),
        control.addr,
        token_file
            .map(|f| format!("in {f}"))
            .unwrap_or_else(|| "from [auth] control_token".into()),
        host.list_vms().len(),
        event_log.display(),
        metrics_log.display()
    );
    tracing::info!(host = %host.name(), "host running");
    loop {
        std::thread::park();
    }
}

/// Parses `128MiB`, `1Gbit`, `1000000` into bytes per second.
fn parse_rate(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .with_context(|| format!("bad rate {text:?}"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        other => anyhow::bail!("unknown rate unit {other:?} (use KiB, MiB, GiB, Mbit, Gbit)"),
    };
    Ok((n * factor) as u64)
}

/// `relive migrate VM --to HOST`.
pub fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let (codec, streams) = match args.transport.as_str() {
        "tcp" => ("none", 1),
        "compress" => ("lz4", 1),
        "multi" => ("none", args.streams.max(1)),
        other => anyhow::bail!("unknown transport {other:?} (tcp, compress or multi)"),
    };
    let params = json!({
        "downtime-limit": args.downtime_limit,
        "max-bandwidth": parse_rate(&args.max_bandwidth)?,
        "timeout": args.timeout * 1000,
        "timeout-strategy": if args.force_on_timeout { "force" } else { "cancel" },
        "auto-converge": args.auto_converge,
        "codec": codec,
        "streams": streams,
        "verify": args.verify,
        "extra-passes": args.extra_passes,
    });
    let mut client = ControlClient::connect(args.control.control, &args.control.token()?)?;
    if let Some(initiator) = &args.initiator {
        client = client.initiator(initiator);
    }
    let params: MigrationParams = serde_json::from_value(params).context("migration parameters")?;
    let id = match client.migrate(&args.vm, &args.to, args.address, params) {
        Ok(id) => id,
        Err(migrate_core::control::ControlError::Host(e))
            if e.kind == migrate_core::error::ErrorKind::NameResolution =>
        {
            anyhow::bail!(
                "{}\n  {} is not in the source host's [peers] and does not resolve as a host name: \
                 add `{} = \"IP:PORT\"` under [peers] in its host.toml (the destination's listen \
                 address), or pass --address IP:PORT",
                relive::display::clean(&e.message),
                relive::display::clean(&args.to),
                relive::display::clean(&args.to)
            )
        }
        Err(e) => return Err(e.into()),
    };
    let mut last = String::new();
    let report = loop {
        let info = client.query(&id)?;
        if info.status.is_final() {
            break client.wait(&id)?;
        }
        if !args.control.json {
            let line = format!(
                "{:?} pass {} sent {:.1} MB remaining {:.1} MB expected blackout {} ms",
                info.status,
                info.ram.dirty_sync_count + 1,
                info.ram.transferred as f64 / 1e6,
                info.ram.remaining as f64 / 1e6,
                info.expected_downtime.unwrap_or(0)
            );
            if line != last {
                eprintln!("{line}");
                last = line;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if args.control.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report, &args.vm);
    }
    Ok(if report.info.status == Status::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report in words; `asked` is the VM named on the command line (the
/// report has no name when the source has no such VM).
fn print_report(r: &MigrationReport, asked: &str) {
    let vm = if r.vm_name.is_empty() {
        asked
    } else {
        &r.vm_name
    };
    let status = match r.info.status {
        Status::Completed => "completed",
        Status::Cancelled => "cancelled",
        _ => "failed",
    };
    println!(
        "migration {} of {} {} -> {}: {status}",
        r.id,
        relive::display::clean(vm),
        relive::display::clean(&r.source),
        relive::display::clean(&r.destination)
    );
    println!(
        "  total {} ms, setup {} ms, blackout {}, {} passes, {:.1} MB sent ({} pages, {} zero), {:.0} Mbit/s, transport {}",
        r.info.total_time,
        r.info.setup_time,
        r.info.downtime.map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into()),
        r.passes.len(),
        r.info.ram.transferred as f64 / 1e6,
        r.info.ram.normal,
        r.info.ram.duplicate,
        r.info.ram.mbps,
        r.transport
    );
    if let Some(v) = &r.verification {
        let mode = match v.mode {
            VerifyMode::Sent => "as sent",
            VerifyMode::Full => "paused memory",
        };
        println!(
            "  verified {} pages ({mode}): {}",
            v.pages,
            if v.digest_ok { "equal" } else { "DIFFERENT" }
        );
        if let Some(a) = &v.audit {
            if a.differing == 0 {
                println!(
                    "  audit after the commit: the paused source memory equals what was sent ({:.0} ms)",
                    a.ms
                );
            } else {
                let first: Vec<String> = a.first.iter().map(|p| format!("{p:#x}")).collect();
                println!(
                    "  AUDIT after the commit: the paused source memory differs from what was sent in {} pages (first: {}): writes the dirty tracker missed; the VM runs on {} without them",
                    a.differing,
                    first.join(", "),
                    r.destination
                );
            }
        }
    }
    if let Some(e) = &r.error {
        println!(
            "  error ({}): {}",
            e.kind.name(),
            relive::display::clean(&e.message)
        );
        if e.kind == migrate_core::error::ErrorKind::VmNotFound {
            println!(
                "  {} has no VM named '{}' (`relive vms --control …` lists its VMs)",
                relive::display::clean(&r.source),
                relive::display::clean(vm)
            );
        } else {
            println!(
                "  the VM keeps running on {}",
                relive::display::clean(&r.source)
            );
        }
    }
}

/// `relive resolve VM --resume-here | --destination-runs`.
pub fn resolve(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    let decision = if args.resume_here {
        "resume_here"
    } else {
        "discard_here"
    };
    let host = args.control.control;
    if args.resume_here {
        println!(
            "Resuming {} on the host at {host}: the destination's answer is not waited for. \
             If the destination runs this VM, two copies will run.",
            relive::display::clean(&args.vm)
        );
    } else {
        println!(
            "Discarding the paused copy of {} on the host at {host}: the destination runs it.",
            relive::display::clean(&args.vm)
        );
    }
    let mut client = ControlClient::connect(args.control.control, &args.control.token()?)?;
    let answer =
        client.call(json!({"op": "resolve_in_doubt", "vm": args.vm, "decision": decision}))?;
    if args.control.json {
        println!("{answer}");
    } else {
        println!(
            "done: the migration waiting on it acts within a second (VM id {})",
            answer["vm_id"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `relive vms` (one host) and `relive vms --all` (every configured host).
pub fn vms(args: VmsArgs) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    if args.all {
        let path = args
            .config
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("relive.toml"));
        let hosts = configured_hosts(&path)?;
        for (name, access) in &hosts {
            match access
                .connect()
                .and_then(|mut c| c.list_vms().map_err(|e| e.to_string()))
            {
                Ok(list) => rows.extend(list.into_iter().map(|vm| (name.clone(), vm))),
                Err(e) => failed.push(format!("{name} ({}): {e}", access.control)),
            }
        }
    } else {
        let mut client = ControlClient::connect(args.control.control, &args.control.token()?)?;
        rows.extend(client.list_vms()?.into_iter().map(|vm| (String::new(), vm)));
    }
    if args.control.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(host, vm)| {
                let mut v = serde_json::to_value(vm).unwrap_or_default();
                if args.all {
                    v["host"] = json!(host);
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
    } else {
        let cells: Vec<[String; 6]> = rows
            .iter()
            .map(|(host, vm)| {
                let state = serde_json::to_value(vm.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                [
                    relive::display::clean(host),
                    relive::display::clean(&vm.name),
                    relive::display::clean(&vm.id),
                    vm.memory_mib.to_string(),
                    state,
                    vm.counter.to_string(),
                ]
            })
            .collect();
        print!("{}", table(&cells, args.all));
    }
    for line in &failed {
        eprintln!("relive vms: cannot list {}", relive::display::clean(line));
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The VM table, each column as wide as its widest cell (numbers right-aligned).
fn table(cells: &[[String; 6]], with_host: bool) -> String {
    let head = ["HOST", "NAME", "ID", "MIB", "STATE", "COUNTER"];
    let right = [false, false, false, true, false, true];
    let first = if with_host { 0 } else { 1 };
    let mut width = [0usize; 6];
    for row in std::iter::once(&head.map(String::from)).chain(cells) {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String; 6]| {
        let mut out = String::new();
        for i in first..6 {
            let pad = width[i] - row[i].chars().count();
            if i > first {
                out.push_str("  ");
            }
            if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(&row[i]);
            } else {
                out.push_str(&row[i]);
                if i < 5 {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&head.map(String::from));
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

/// `[remediation.hosts]` of a relive.toml.
fn configured_hosts(
    path: &std::path::Path,
) -> anyhow::Result<std::collections::BTreeMap<String, remediate::executor::HostAccess>> {
    if !path.exists() {
        anyhow::bail!(
            "{} not found: --all lists the hosts of a relive.toml's [remediation.hosts] (--config FILE)",
            path.display()
        );
    }
    let config = crate::commands::remediate::load(Some(path))?;
    if config.hosts.is_empty() {
        anyhow::bail!("{} has no [remediation.hosts]", path.display());
    }
    Ok(config.hosts)
}

/// `relive host set HOST SETTING VALUE…`.
fn set_setting(args: HostSetArgs) -> anyhow::Result<ExitCode> {
    let setting = migrate_core::control::Setting::from_words(&args.setting, &args.value)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (name, mut client) = match args.host.parse::<std::net::SocketAddr>() {
        Ok(addr) => {
            let token = crate::cli::ControlArgs {
                control: addr,
                token: args.token.clone(),
                token_file: args.token_file.clone(),
                json: false,
            }
            .token()?;
            (addr.to_string(), ControlClient::connect(addr, &token)?)
        }
        Err(_) => {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("relive.toml"));
            let hosts = configured_hosts(&path).with_context(|| {
                format!(
                    "{} is not a control address (IP:PORT), so it is looked up in [remediation.hosts]",
                    args.host
                )
            })?;
            let Some((name, access)) = hosts
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&args.host))
            else {
                anyhow::bail!(
                    "no host {:?} in [remediation.hosts] of {} (it has {})",
                    args.host,
                    path.display(),
                    hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            };
            let client = access
                .connect()
                .map_err(|e| anyhow::anyhow!("{name} ({}): {e}", access.control))?;
            (name.clone(), client)
        }
    };
    let shown = serde_json::to_string(&setting)?;
    client
        .set(setting)
        .with_context(|| format!("{name} refused {}", relive::display::clean(&shown)))?;
    println!(
        "{}: {} set to {}",
        relive::display::clean(&name),
        args.setting,
        relive::display::clean(&args.value.join(" "))
    );
    Ok(ExitCode::SUCCESS)
}
