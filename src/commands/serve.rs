//! `relive serve`: the collector. Receivers (agent protocol, syslog,
//! `_bulk`, OTLP, Lumberjack, watched folders) feed the write-ahead log;
//! the pipeline (`crate::topology`) parses, indexes, correlates as events
//! are committed and as the clock runs, and keeps the incident store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::ServeArgs;
use relive::topology;

/// `relive.toml` (sections other commands read are ignored here).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServeConfig {
    receivers: ingest::Receivers,
    collector: CollectorSection,
    correlate: correlate::Config,
    alerts: remediate::alert::AlertsConfig,
    remediation: remediate::config::RemediationConfig,
    http: relive::http::HttpConfig,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CollectorSection {
    /// Longest wait before indexed events become searchable, in ms.
    commit_ms: u64,
    /// Records the parse stage may fall behind before receivers slow down.
    max_lag_records: u64,
    /// How long events arriving together wait to be put in time order
    /// before the correlator sees them, in ms.
    correlate_hold_ms: u64,
    /// Ignored since correlation streams (kept so older files still load).
    correlate_every_s: Option<u64>,
    /// Correlate here (default); false for an index-only collector.
    correlate: bool,
}

impl Default for CollectorSection {
    fn default() -> Self {
        CollectorSection {
            commit_ms: 250,
            max_lag_records: 4096,
            correlate_hold_ms: topology::LIVE_HOLD.as_millis() as u64,
            correlate_every_s: None,
            correlate: true,
        }
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<ServeConfig> {
    let Some(path) = path else {
        return Ok(ServeConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid relive.toml", path.display()))
}

/// Runs `relive serve`.
pub fn run(args: ServeArgs, data: &Path, rule_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut config = load(args.config.as_deref())?;
    if let Some(listen) = args.http_listen {
        config.http.listen = listen;
    }
    if config.collector.correlate_every_s.is_some() {
        tracing::warn!(
            "[collector] correlate_every_s is ignored: correlation runs on every commit"
        );
    }
    let (rules, kb) = relive::load_rules(rule_dirs)?;
    // Checked before anything starts: a mistake in [alerts] is a start-up error.
    let alerts = if config.alerts.enabled {
        let built = config
            .alerts
            .build()
            .context("[alerts] in relive.toml cannot be used")?;
        let context = remediate::alert::AlertContext::new(&config.alerts.clusters, Some(&kb));
        Some((built, context))
    } else {
        None
    };
    config
        .remediation
        .check()
        .map_err(|e| anyhow::anyhow!("[remediation] in relive.toml: {e}"))?;
    let remediation_kb = (*kb).clone();
    let topology = topology::start(
        data,
        rules,
        kb,
        topology::TopologyOptions {
            correlate: config.correlate.clone(),
            clocking: correlate::Clocking::Live {
                hold: Duration::from_millis(config.collector.correlate_hold_ms),
            },
            index: index::stage::IndexStageOptions {
                commit_interval: Duration::from_millis(config.collector.commit_ms.max(10)),
                ..index::stage::IndexStageOptions::default()
            },
            correlation: config.collector.correlate,
        },
    )?;
    // Escalations of the remediation engine go to the same receivers.
    let escalate_to = match &alerts {
        Some((built, context)) if config.remediation.enabled => Some(std::sync::Arc::new(
            remediate::alert::escalate::Escalator::new(data, built.clone(), context.clone())
                .context("cannot start the escalation sender")?,
        )),
        _ => None,
    };
    let escalate: Option<remediate::engine::Escalate> = escalate_to.clone().map(|escalator| {
        std::sync::Arc::new(move |e: &remediate::engine::Escalation| {
            escalator.escalate(&e.incident, &e.reason);
        }) as remediate::engine::Escalate
    });
    // Approval requests go to the same receivers, with links signed by the
    // data folder's key (the web UI checks them).
    let ask: Option<remediate::engine::AskApproval> = match (&alerts, &escalate_to) {
        (Some(_), Some(escalator)) => {
            let signer = remediate::link::LinkSigner::open(data)
                .context("cannot open the approval link key")?;
            let escalator = escalator.clone();
            Some(std::sync::Arc::new(
                move |r: &remediate::engine::ApprovalRequest| {
                    escalator.ask_approval(r, &signer);
                },
            ))
        }
        _ => None,
    };
    let alerter = match alerts {
        Some((built, context)) => Some(
            remediate::alert::Alerter::start(
                data,
                built,
                context,
                topology.registry.stage("alerts"),
            )
            .context("cannot start alerting")?,
        ),
        None => None,
    };
    let engine = if config.remediation.enabled {
        let executor = remediate::executor::from_config(&config.remediation);
        tracing::info!(
            mode = config.remediation.mode.as_str(),
            executor = executor.as_ref().map_or("none", |e| e.name()),
            "remediation engine: following incident changes"
        );
        Some(
            remediate::engine::Engine::start(
                data,
                remediate::engine::EngineOptions {
                    config: config.remediation.clone(),
                    kb: remediation_kb,
                    executor,
                    escalate,
                    ask,
                },
            )
            .context("cannot start the remediation engine")?,
        )
    } else {
        None
    };
    let mut options = ingest::CollectorOptions::new(data);
    options.max_lag_records = config.collector.max_lag_records.max(1);
    let collector = ingest::Collector::start(options, Box::new(topology.input.clone()))
        .with_context(|| format!("cannot start the collector in {}", data.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let submitter = collector.submitter();
    let stats = collector.stats().clone();
    let registry = topology.registry.clone();
    let extra_metrics = serve_metrics(
        data,
        &stats,
        alerter.as_ref().map(|a| a.stats()),
        engine.as_ref().map(|e| e.stats()),
    );
    let mut receivers = config.receivers.clone();
    // Watched folders are read by an agent inside this process, shipping to
    // this collector's own agent receiver over loopback with a secret made
    // for this run: the same checkpoints, rotation handling and acks as a
    // remote agent's.
    let watch_token = if receivers.watch.paths.is_empty() {
        None
    } else {
        if !receivers.agent.enabled {
            receivers.agent.enabled = true;
            receivers.agent.listen = "127.0.0.1:0".parse().expect("a loopback address");
            receivers.agent.cert = None;
            receivers.agent.key = None;
        }
        let token = run_secret();
        receivers
            .agent
            .tokens
            .insert(WATCH_AGENT.to_string(), token.clone());
        Some(token)
    };
    let stop = pipeline::Shutdown::new();
    let result = runtime.block_on(async {
        let running = ingest::server::start(&receivers, &submitter, &stop).await?;
        let bound = running.bound.clone();
        let watcher = match (&watch_token, bound.agent) {
            (Some(token), Some(agent_addr)) => {
                Some(start_watch(&receivers, agent_addr, token, data)?)
            }
            _ => None,
        };
        let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string());
        let mut listening = serde_json::json!({
            "agent": show(bound.agent),
            "syslog_tcp": show(bound.syslog_tcp),
            "syslog_udp": show(bound.syslog_udp),
            "es_bulk": show(bound.es_bulk),
            "otlp": show(bound.otlp),
            "lumberjack": show(bound.lumberjack),
        });
        let web = if config.http.enabled {
            let web = relive::http::start(
                &config.http,
                relive::http::Context {
                    data: data.to_path_buf(),
                    registry: registry.clone(),
                    remediation: config.remediation.clone(),
                    extra_metrics,
                    listening: listening.clone(),
                    agents: Some(running.agents.clone()),
                    mode: "serve",
                },
            )
            .await
            .context("[http] cannot start the HTTP API and web UI")?;
            listening["http"] = serde_json::json!(web.addr.to_string());
            Some(web)
        } else {
            None
        };
        println!(
            "{}",
            serde_json::json!({
                "listening": listening,
                "data": data.display().to_string(),
                "tokens": web.as_ref().and_then(|w| w.token_file.as_ref()).map(|p| p.display().to_string()),
            })
        );
        if let Some(w) = &web {
            match &w.token_file {
                Some(path) => eprintln!(
                    "relive serve: web UI and API on http://{}/ (tokens in {}, readable by this user only)",
                    w.addr,
                    path.display()
                ),
                None => eprintln!(
                    "relive serve: web UI and API on http://{}/ (tokens from [http] in the config)",
                    w.addr
                ),
            }
        }
        tracing::info!(data = %data.display(), "relive serve: collecting");
        relive::wait_for_signal().await;
        tracing::info!("relive serve: stopping: no new connections; draining the pipeline");
        if let Some(web) = web {
            web.stop(HTTP_DRAIN).await;
        }
        // The in-process watcher first: it ships what it read through the
        // agent receiver, which is still open, and waits for the acks.
        if let Some(watcher) = watcher {
            tokio::task::spawn_blocking(move || watcher.stop())
                .await
                .ok();
        }
        // Connections finish the record or request they are inside and are
        // answered once it is durable; what is cut at the deadline was not
        // acknowledged, so its sender resends it (at-least-once; the index
        // dedups).
        running.drain(RECEIVER_DRAIN).await;
        anyhow::Ok(())
    });
    drop(runtime);
    drop(submitter);
    // Front to back: the log writer, the parse stage, then each stage
    // drains its input and stops.
    collector.shutdown();
    let finished = topology.finish()?;
    // After the correlator: alerting reads the change log to its end.
    let alert_stats = match alerter {
        Some(alerter) => Some(alerter.stop(ALERT_DRAIN).context("alerting failed")?),
        None => None,
    };
    let remediation_stats = match engine {
        Some(engine) => Some(
            engine
                .stop(REMEDIATION_DRAIN)
                .context("remediation failed")?,
        ),
        None => None,
    };
    eprintln!(
        "relive serve: stopped; {} records durable, {} events parsed, {} unparsable records skipped, {} incident changes written",
        stats.records_durable.load(Ordering::Relaxed),
        stats.events_parsed.load(Ordering::Relaxed),
        stats.parse_errors.load(Ordering::Relaxed),
        finished.correlation.changes,
    );
    if let Some(stats) = alert_stats {
        eprintln!(
            "relive serve: alerts: {} notifications queued, {} sent, {} failed, {} suppressed",
            stats.queued.load(Ordering::Relaxed),
            stats.sent.load(Ordering::Relaxed),
            stats.failed.load(Ordering::Relaxed),
            stats.suppressed.load(Ordering::Relaxed),
        );
    }
    if let Some(stats) = remediation_stats {
        eprintln!(
            "relive serve: remediation: {} planned, {} actions run ({} failed), {} retries, {} verified, {} escalated",
            stats.planned.load(Ordering::Relaxed),
            stats.actions_run.load(Ordering::Relaxed),
            stats.actions_failed.load(Ordering::Relaxed),
            stats.retries.load(Ordering::Relaxed),
            stats.verified.load(Ordering::Relaxed),
            stats.escalated.load(Ordering::Relaxed),
        );
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// How long receivers may take to finish what they are inside after SIGTERM.
const RECEIVER_DRAIN: Duration = Duration::from_secs(2);

/// How long HTTP requests in flight may take after SIGTERM.
const HTTP_DRAIN: Duration = Duration::from_secs(1);

/// The collector's, the alerting stage's and the remediation engine's
/// counters for `/metrics` and the status API.
fn serve_metrics(
    data: &Path,
    collector: &std::sync::Arc<ingest::collector::Stats>,
    alerts: Option<std::sync::Arc<remediate::alert::dispatch::AlerterStats>>,
    engine: Option<std::sync::Arc<remediate::engine::EngineStats>>,
) -> Vec<Box<dyn Fn() -> Vec<relive::http::Gauge> + Send + Sync>> {
    use relive::http::Gauge;
    let g = |name, kind, help, value: u64| Gauge {
        name,
        kind,
        help,
        labels: Vec::new(),
        value: value as f64,
    };
    let mut out: Vec<Box<dyn Fn() -> Vec<Gauge> + Send + Sync>> = Vec::new();
    let c = collector.clone();
    let wal = data.join("wal");
    out.push(Box::new(move || {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        vec![
            g(
                "relive_collector_records_durable_total",
                "counter",
                "Records the collector made durable.",
                l(&c.records_durable),
            ),
            g(
                "relive_collector_events_parsed_total",
                "counter",
                "Events parsed and handed on.",
                l(&c.events_parsed),
            ),
            g(
                "relive_collector_parse_errors_total",
                "counter",
                "Records that did not parse.",
                l(&c.parse_errors),
            ),
            g(
                "relive_collector_busy_total",
                "counter",
                "Submissions refused because the queue was full.",
                l(&c.busy),
            ),
            g(
                "relive_collector_lag_records",
                "gauge",
                "Durable records the last stage has not finished.",
                l(&c.durable_seq).saturating_sub(l(&c.consumed_seq)),
            ),
            g(
                "relive_wal_bytes",
                "gauge",
                "Bytes in the collector's write-ahead log.",
                dir_size(&wal),
            ),
        ]
    }));
    if let Some(a) = alerts {
        out.push(Box::new(move || {
            let l = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
            vec![
                g(
                    "relive_alerts_queued_total",
                    "counter",
                    "Notifications decided and queued.",
                    l(&a.queued),
                ),
                g(
                    "relive_alerts_sent_total",
                    "counter",
                    "Notifications their receiver accepted.",
                    l(&a.sent),
                ),
                g(
                    "relive_alerts_failed_total",
                    "counter",
                    "Notifications given up.",
                    l(&a.failed),
                ),
                g(
                    "relive_alerts_suppressed_total",
                    "counter",
                    "Alerts a silence or inhibition kept back.",
                    l(&a.suppressed),
                ),
            ]
        }));
    }
    if let Some(e) = engine {
        out.push(Box::new(move || {
            let l = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
            vec![
                g(
                    "relive_remediation_planned_total",
                    "counter",
                    "Incidents given a plan.",
                    l(&e.planned),
                ),
                g(
                    "relive_remediation_actions_run_total",
                    "counter",
                    "Remediation actions run.",
                    l(&e.actions_run),
                ),
                g(
                    "relive_remediation_actions_failed_total",
                    "counter",
                    "Remediation actions that failed.",
                    l(&e.actions_failed),
                ),
                g(
                    "relive_remediation_migrations_total",
                    "counter",
                    "Migrations retried by the engine.",
                    l(&e.retries),
                ),
                g(
                    "relive_remediation_verified_total",
                    "counter",
                    "Retries proven by the incident's resolution.",
                    l(&e.verified),
                ),
                g(
                    "relive_remediation_escalated_total",
                    "counter",
                    "Incidents handed to a person.",
                    l(&e.escalated),
                ),
            ]
        }));
    }
    out
}

/// Bytes of the files in a folder (one level of subfolders).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => std::fs::read_dir(e.path())
                .map(|d| {
                    d.flatten()
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// How long receivers may take to deliver what is queued at shutdown (the
/// rest stays in the outbox and goes out at the next start).
const ALERT_DRAIN: Duration = Duration::from_secs(2);

/// How long remediation workers may take to reach a step where they can
/// stop (the rest is taken up at the next start, from the audit log).
const REMEDIATION_DRAIN: Duration = Duration::from_secs(2);

/// The agent name the in-process folder watcher uses.
const WATCH_AGENT: &str = "relive-serve-watch";

/// A secret for this run only (the in-process watcher's token).
fn run_secret() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut secret = String::new();
    for round in 0..4u64 {
        // RandomState is seeded from the OS's random source.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(round);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        secret.push_str(&format!("{:016x}", h.finish()));
    }
    secret
}

/// Starts the folder watcher: `[receivers.watch] paths` (folders or globs),
/// its checkpoints under `--data/watch`.
fn start_watch(
    receivers: &ingest::Receivers,
    agent_addr: std::net::SocketAddr,
    token: &str,
    data: &Path,
) -> anyhow::Result<ingest::agent::Agent> {
    let collector = std::net::SocketAddr::new(
        if agent_addr.ip().is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            agent_addr.ip()
        },
        agent_addr.port(),
    );
    let config = ingest::agent::AgentConfig {
        name: Some(WATCH_AGENT.to_string()),
        collector: collector.to_string(),
        token: token.to_string(),
        state_dir: data.join("watch"),
        watch: vec![ingest::agent::WatchSpec {
            paths: receivers
                .watch
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            format: None,
        }],
        ..ingest::agent::AgentConfig::default()
    };
    if receivers.agent.cert.is_some() {
        anyhow::bail!(
            "[receivers.watch] reads folders through the agent receiver, which has TLS on: \
             run the watch on a separate collector or turn TLS off on [receivers.agent]"
        );
    }
    tracing::info!(
        "watching {} for dropped logs",
        receivers
            .watch
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    ingest::agent::Agent::start(config).context("cannot start the folder watcher")
}
