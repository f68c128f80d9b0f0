//! Command-line arguments (clap derive). Flags say how this run behaves.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// relive: find why Hyper-V live migrations failed, and fix them.
#[derive(Debug, Parser)]
#[command(name = "relive", version, about)]
pub struct Cli {
    /// Where the index, WAL, incidents and audit log live (default
    /// ./relive-data; for `relive demo`, a fresh temporary folder).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// Extra rule folders or files, loaded after the shipped rules (repeatable).
    #[arg(long = "rules", global = true, value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse log files or folders and print normalized events (no indexing).
    #[command(after_help = "Examples:
  relive parse samples/
  relive parse --json NODE-B_System.evtx | jq .winlog.event_id
  relive parse --format cluster-log --timezone Europe/Berlin NODE-A_cluster.log")]
    Parse(ParseArgs),
    /// Parse log files or folders and add their events to the index under --data.
    #[command(after_help = "Examples:
  relive ingest samples/
  relive ingest --timezone Europe/Berlin //fileserver/exports/NODE-B/
Ingesting the same files again adds nothing: events are keyed by host, channel and record id.")]
    Ingest(ParseArgs),
    /// Search the index with Lucene/Kibana syntax, newest first.
    #[command(
        after_help = "Fields: timestamp, event_id, record_id, host (FQDN or short name), channel, provider,
level, vm_name, vm_id, hresult, message (full text), data.<Name> (every event data field), format.

Examples:
  relive search 'event_id:21502 AND host:node-b' --since 24h
  relive search 'vm_name:ADFS1 AND NOT level:information' --json
  relive search 'message:\"collection registry\"' --count-by host
  relive search 'data.ErrorCode:0x80070002 OR hresult:0x80070002'
  relive search 'event_id:[21000 TO 22000]' --since 2026-11-01T00:00Z --until 2026-11-02T00:00Z"
    )]
    Search(SearchArgs),
    /// Delete indexed events older than a duration or a time.
    #[command(
        after_help = "Examples:\n  relive prune --older-than 30d\n  relive prune --older-than 2026-01-01T00:00Z"
    )]
    Prune(PruneArgs),
    /// Root causes found, newest first.
    #[command(
        after_help = "Examples:\n  relive incidents\n  relive incidents --status open --host node-b --since 7d\n  relive incidents --vm ADFS1 --json | jq '.[] | {id, root_cause, status}'"
    )]
    Incidents(IncidentsArgs),
    /// Evidence timeline of one incident across hosts, with the explanation and fix.
    #[command(
        after_help = "Examples:\n  relive explain 3f2a9c1d0b7e4a55\n  relive explain 3f2a   (a unique prefix is enough)"
    )]
    Explain(ExplainArgs),
    /// Migration analytics: failures and failure rate per source->destination pair,
    /// per hour and day, blackout and total time percentiles, bytes, throughput,
    /// top failing VMs and root causes.
    #[command(after_help = "Examples:
  relive stats
  relive stats --since 7d --top 5
  relive stats --json | jq '.pairs[0]'
Reads the migration metrics ingested under --data (Parquet by day); without any, it counts
failed (21502/21111/21024, via incidents) against successful (20415/21301/21307) migrations.")]
    Stats(StatsArgs),
    /// Check rule files (the shipped ones plus --rules) and list what they detect.
    #[command(after_help = "Examples:\n  relive rules\n  relive rules --rules ./my-rules")]
    Rules,
    /// Run a migration host: its VMs, the migration listener and the control API;
    /// `relive host set` changes a running host's settings.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = concat!("Examples:
  relive host --config hv01.toml
  relive host set HV03 rename_switch External-Old External   (a host in relive.toml's [remediation.hosts])
  relive config default --host > hv01.toml
The host writes Hyper-V-shaped events (event_log) and migration metrics (metrics_log)
as JSON lines that `relive ingest` and the agents read; examples/lab/ holds a three-host lab.

Every key of the host configuration, with its default:

", include_str!("../migrate-core/src/host.default.toml"))
    )]
    Host(HostArgs),
    /// Run the whole story on this machine in under a minute: three migration
    /// hosts, the collector, agents and the web UI; healthy migrations, then
    /// the cluster broken, the failures found, fixed, retried and proven.
    #[command(after_help = "Examples:
  relive demo
  relive demo --keep-running          (everything stays up to explore; Ctrl-C stops it)
  relive demo --data /tmp/my-demo     (a new or empty folder)
  relive demo --smtp 127.0.0.1:25 --mail-to you@example.com   (alerts to a real mail server)
Nothing outside --data is touched; every listener is on 127.0.0.1. Without --data the
demo makes a fresh temporary folder and names it. Alert emails are written as .eml
files under DATA/mail unless --smtp is given. Demo mode approves the repairs that
would wait for a person, and says so each time.")]
    Demo(DemoArgs),
    /// Live-migrate a VM from the host whose control API is --control to another host.
    #[command(after_help = "Examples:
  relive migrate ADFS1 --to HV02
  relive migrate ADFS1 --to HV02 --control 127.0.0.1:6611 --max-bandwidth 128MiB --downtime-limit 300
  relive migrate DB1 --to HV03 --transport multi --streams 4 --json")]
    Migrate(MigrateArgs),
    /// List the VMs of a host (through its control API), or of every host with --all.
    #[command(after_help = "Examples:
  relive vms --control 127.0.0.1:6601 --token-file state/HV01/secrets/control-token
  relive vms --all --config relive.toml   (every host of [remediation.hosts])")]
    Vms(VmsArgs),
    /// Settle a migration whose commit answer was lost: its VM waits,
    /// paused and "in doubt", on the source host until the destination says
    /// whether it runs it. Use this only when the destination cannot answer.
    #[command(after_help = "Examples:
  relive resolve ADFS1 --destination-runs   (you checked: HV02 runs ADFS1; the paused copy here is discarded)
  relive resolve ADFS1 --resume-here        (you checked: HV02 does not run ADFS1, e.g. it is powered off)
Run it against the source host's control API (--control). Resuming here while the destination
runs the VM makes two copies write to one disk: check the destination first.")]
    Resolve(ResolveArgs),
    /// Run the collector: receivers, write-ahead log, index, correlation.
    #[command(after_help = "Examples:
  relive serve
  relive serve --config relive.toml --data /var/lib/relive

Receivers and their default addresses (loopback; each set or disabled in relive.toml):
  [receivers.agent]   127.0.0.1:7301  relive agents (acked; tokens, TLS, client certificates)
  [receivers.syslog]  tcp/udp 127.0.0.1:1514  RFC 5424/3164, Snare, NXLog JSON lines (allow = CIDRs)
  [receivers.es_bulk] 127.0.0.1:9200  Elasticsearch _bulk (Winlogbeat, Fluent Bit, rsyslog; Basic/ApiKey)
  [receivers.otlp]    127.0.0.1:4318  OTLP/HTTP logs (protobuf and JSON; bearer or header token)
  [receivers.lumberjack] 127.0.0.1:5044  Lumberjack v2: Beats' Logstash output (TLS, client certificates)
On another address a receiver needs one of those, or allow_unauthenticated = true.
  [receivers.watch]   paths = [\"/drop\"]  folders whose files the collector reads itself
Prints one JSON line with the bound addresses, then runs until SIGTERM or Ctrl-C.")]
    Serve(ServeArgs),
    /// The web UI and HTTP API over a data folder (filled by `relive
    /// ingest`), with no collector running.
    #[command(after_help = "Examples:
  relive ingest samples/ && relive ui
  relive ui --data /var/lib/relive --listen 127.0.0.1:7300
  relive ui --config relive.toml      ([http] tokens, [remediation] hosts and windows)
Prints one JSON line with the address and the token file, then serves until SIGTERM or Ctrl-C.
Every page and API path but /healthz needs a token: log in at /login, or send
Authorization: Bearer TOKEN. Without [http] tokens, two are generated on first start and
kept in --data/http/tokens.toml (readable by this user only).")]
    Ui(UiArgs),
    /// Notifications sent, pending and failed (from the journal under --data).
    #[command(after_help = "Examples:
  relive alerts
  relive alerts --status failed
  relive alerts --json | jq '.[] | {subject, status, reason}'
  relive alerts --render 3f2a --shape slack   (the message an incident gives, not sent)
Every decision (queued, sent, retried, failed, silenced, inhibited, rate-limited) is a JSON
line in --data/alerts/notifications.jsonl.")]
    Alerts(AlertsArgs),
    /// The remediation audit log: every plan, action, approval, retry and
    /// verification, oldest first.
    #[command(after_help = "Examples:
  relive actions
  relive actions --incident 3f2a
  relive actions --json | jq '.[] | select(.what == \"awaiting_approval\")'
The log is --data/remediation/audit.jsonl, append-only (one JSON line per decision).")]
    Actions(ActionsArgs),
    /// The remediation plan of an incident with its values resolved; with
    /// --dry-run its read-only checks run against the configured hosts.
    #[command(after_help = "Examples:
  relive remediate 3f2a
  relive remediate 3f2a --config relive.toml --dry-run
  relive remediate 3f2a --json
Nothing changes: `relive serve` runs plans, in the mode [remediation] sets (suggest by default).")]
    Remediate(RemediateArgs),
    /// Approve an action that waits for approval (its key from `relive actions`).
    #[command(after_help = "Examples:
  relive approve 3f2a9c1d0b7e4a55/fix/1/1 --by alice
  relive approve 3f2a9c1d0b7e4a55/fix/3/1 --incident 3f2a --config relive.toml
Refused when the action does not wait for approval (unknown, decided, done), belongs to
another incident, its request expired, or it is a downtime action outside every
[[remediation.maintenance]] window.")]
    Approve(DecideArgs),
    /// Reject an action that waits for approval: the remediation stops and is escalated.
    Reject(DecideArgs),
    /// Alertmanager-style silences: mute alerts whose labels match, until a time.
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Print a commented default configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Tail log files on this host and ship them to the collector.
    #[command(after_help = "Examples:
  relive agent --config agent.toml

agent.toml:
  collector = \"collector.example:7301\"
  token = \"per-agent secret\"
  state_dir = \"relive-agent\"        # checkpoints, spool, status.json
  [[watch]]
  paths = [\"C:/Windows/Cluster/Reports/*.log\", \"D:/exports/*.evtx\"]")]
    Agent(AgentArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// relive.toml; without it every receiver listens on its default port.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the HTTP API and web UI listen (default: [http] listen,
    /// 127.0.0.1:7300; port 0 picks a free one, printed at start).
    #[arg(long)]
    pub http_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// relive.toml ([http], [remediation]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to listen (default: [http] listen, 127.0.0.1:7300).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// agent.toml.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// Host configuration (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub action: Option<HostAction>,
}

#[derive(Debug, Subcommand)]
pub enum HostAction {
    /// Change a setting of a running host (through its control API).
    #[command(after_help = "Settings and their values:
  migration_enabled true|false     numa_spanning true|false
  add_switch NAME                  rename_switch FROM TO
  shared_storage PATH [create]     listener open|closed
  max_migrations N                 auth_mode direct|delegated
  trust_initiator MACHINE          add_migration_network CIDR
  add_config_version VERSION

Examples:
  relive host set HV02 migration_enabled true
  relive host set HV03 rename_switch External-Old External --config relive.toml
  relive host set 127.0.0.1:6611 max_migrations 4 --token-file state/HV02/secrets/control-token")]
    Set(HostSetArgs),
}

#[derive(Debug, Args)]
pub struct HostSetArgs {
    /// The host: its name in relive.toml's [remediation.hosts], or its control address.
    pub host: String,
    /// The setting (listed below).
    pub setting: String,
    /// Its value (two words for rename_switch: FROM TO).
    #[arg(required = true, num_args = 1..=2)]
    pub value: Vec<String>,
    /// relive.toml whose [remediation.hosts] names the host (default: ./relive.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The control token, for a host given by address (or RELIVE_CONTROL_TOKEN).
    #[arg(long, env = "RELIVE_CONTROL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the control token, for a host given by address.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VmsArgs {
    #[command(flatten)]
    pub control: ControlArgs,
    /// Every host in relive.toml's [remediation.hosts] instead of one.
    #[arg(long)]
    pub all: bool,
    /// relive.toml for --all (default: ./relive.toml).
    #[arg(long, requires = "all")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the hosts, collector and web UI running after the story, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Send the alert emails to this SMTP server (host:port, no TLS) instead
    /// of writing them under DATA/mail.
    #[arg(long, requires = "mail_to")]
    pub smtp: Option<String>,
    /// Who the alert emails go to (with --smtp).
    #[arg(long, requires = "smtp")]
    pub mail_to: Option<String>,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The host's control API address.
    #[arg(long, default_value = "127.0.0.1:6601")]
    pub control: std::net::SocketAddr,
    /// The host's control token (or RELIVE_CONTROL_TOKEN). A host without
    /// a configured `control_token` generated one at its first start, in
    /// its state folder: `secrets/control-token` (see --token-file).
    #[arg(long, env = "RELIVE_CONTROL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the control token (its first line).
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// VM name or id.
    pub vm: String,
    /// Destination host name.
    #[arg(long)]
    pub to: String,
    /// Destination migration address (default: the source host's peers entry).
    #[arg(long)]
    pub address: Option<std::net::SocketAddr>,
    /// Longest acceptable blackout, ms.
    #[arg(long, default_value_t = 300)]
    pub downtime_limit: u64,
    /// Pre-copy bandwidth cap (bytes/s; suffixes KiB, MiB, GiB, Mbit, Gbit); 0 = none.
    #[arg(long, default_value = "0")]
    pub max_bandwidth: String,
    /// tcp, compress (LZ4) or multi (parallel streams).
    #[arg(long, default_value = "tcp")]
    pub transport: String,
    /// Streams for the multi transport.
    #[arg(long, default_value_t = 4)]
    pub streams: u32,
    /// Give up after this many seconds without converging (0 = never).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// At the timeout, switch over anyway instead of cancelling.
    #[arg(long)]
    pub force_on_timeout: bool,
    /// Throttle the VM when it dirties memory faster than the link sends it.
    #[arg(long)]
    pub auto_converge: bool,
    /// What is compared before the commit, page by page: `sent` (what was
    /// sent against what arrived; no cost in the blackout; after the commit
    /// the paused source memory is read once and a write the dirty tracker
    /// missed is reported) or `full` (the paused source memory itself, read
    /// in the blackout: such a write fails the migration and the VM stays
    /// on the source, at the cost of reading all of its memory while it is
    /// paused).
    #[arg(long, default_value = "sent", value_parser = ["full", "sent"])]
    pub verify: String,
    /// Pre-copy passes taken after the dirty set fits the downtime limit,
    /// while the link sends 1.25 times what the VM dirties (0 = switch over
    /// as soon as it fits).
    #[arg(long, default_value_t = 3)]
    pub extra_passes: u32,
    /// The machine initiating the migration (default: the source host itself).
    #[arg(long)]
    pub initiator: Option<String>,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only migrations that ended since: a duration (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only migrations that ended before this (same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// Length of the top lists.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IncidentsArgs {
    /// Print one JSON array with every field.
    #[arg(long)]
    pub json: bool,
    /// Only incidents with this status (open or resolved).
    #[arg(long)]
    pub status: Option<String>,
    /// Only this VM (name or id, any case).
    #[arg(long)]
    pub vm: Option<String>,
    /// Only migrations from or to this host (short name, any case).
    #[arg(long)]
    pub host: Option<String>,
    /// Only this root cause (slug).
    #[arg(long)]
    pub root_cause: Option<String>,
    /// Only incidents seen since: a duration (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Incident id (or a unique prefix of it).
    pub id: String,
    /// Print the incident as JSON instead of a timeline.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// A duration before now (`30d`, `12h`) or an RFC 3339 time.
    #[arg(long)]
    pub older_than: String,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query; empty or `*` matches every event.
    #[arg(default_value = "*")]
    pub query: String,
    /// Only events newer than this: a duration (`90s`, `15m`, `2h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events older than this (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print events as ECS JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Print counts grouped by an exact field instead of events.
    #[arg(long)]
    pub count_by: Option<String>,
    /// Print counts per time bucket of this size (`1m`, `1h`, `1d`) instead of events.
    #[arg(long, conflicts_with = "count_by")]
    pub histogram: Option<String>,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Files or folders (read recursively); `-` reads standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print every event as one ECS JSON line instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Read every input as this format instead of detecting it
    /// (evtx, event-xml, viewer-text, ps-csv, ps-json, ecs-json, nxlog-json,
    /// otlp-json, syslog, snare, cluster-log, perfmon-csv, metrics-json).
    #[arg(long)]
    pub format: Option<String>,
    /// Zone of local times that carry no offset (Event Viewer text, CSV,
    /// NXLog, RFC 3164): an offset like +02:00 or a name like Europe/Berlin.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Read dates like 05/06/2026 as day/month.
    #[arg(long)]
    pub day_first: bool,
    /// Host name for files that carry none (a cluster.log without its header).
    #[arg(long)]
    pub host: Option<String>,
    /// Threads for EVTX parsing (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Longest record kept in memory, in bytes; longer ones are reported.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_record_bytes: usize,
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Print the exact message relive would send for this incident (id or
    /// unique prefix) instead of the list: a dry run of the renderer.
    #[arg(long, value_name = "INCIDENT")]
    pub render: Option<String>,
    /// With --render: email (the raw message), generic, slack or teams (the JSON).
    #[arg(long, default_value = "email", value_parser = ["email", "generic", "slack", "teams"])]
    pub shape: String,
    /// Only notifications whose last word is this (queued, sent, retry, failed, resumed).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `relive actions`.
#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// Only this incident's lines (id or a prefix of it).
    #[arg(long)]
    pub incident: Option<String>,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemediateArgs {
    /// Incident id (or a unique prefix of it).
    pub id: String,
    /// relive.toml ([remediation]: hosts, clusters, mode).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run the read-only checks against the configured hosts.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The action's key (`INCIDENT/stage/step/attempt`).
    pub key: String,
    /// The incident it must belong to (id or prefix).
    #[arg(long)]
    pub incident: Option<String>,
    /// Who decides (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Why (kept in the audit log).
    #[arg(long, default_value = "")]
    pub comment: String,
    /// relive.toml ([remediation]: approval expiry, maintenance windows).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Mute alerts matching every matcher (labels: root_cause, fix_class,
    /// severity, scope, cluster, vm, source_host, destination_host, incident).
    #[command(after_help = "Examples:
  relive silence add vm=ADFS1 --for 2h --comment 'rebuilding the CSV'
  relive silence add 'root_cause=~\"shared-.*\"' cluster=PROD --until 2026-12-08T06:00Z
Matchers: name=value, name!=value, name=~regex, name!~regex (regexes match the whole value).")]
    Add(SilenceAddArgs),
    /// Active and pending silences (--all: expired ones too).
    List(SilenceListArgs),
    /// End a silence now.
    Expire(SilenceExpireArgs),
}

#[derive(Debug, Args)]
pub struct SilenceAddArgs {
    /// Label matchers, all of which must hold.
    #[arg(required = true)]
    pub matchers: Vec<String>,
    /// How long from now (`2h`, `1d`).
    #[arg(long = "for", conflicts_with = "until")]
    pub duration: Option<String>,
    /// Until this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Who (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    pub comment: String,
}

#[derive(Debug, Args)]
pub struct SilenceListArgs {
    /// Expired silences too.
    #[arg(long)]
    pub all: bool,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SilenceExpireArgs {
    /// Silence id (or a unique prefix).
    pub id: String,
    /// Who (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// A commented relive.toml with every section and its defaults
    /// (--host: a migration host's host.toml).
    Default(ConfigDefaultArgs),
}

#[derive(Debug, Args)]
pub struct ConfigDefaultArgs {
    /// A migration host's configuration (`relive host --config`) instead.
    #[arg(long)]
    pub host: bool,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The VM (name or id) in doubt on the source host.
    pub vm: String,
    /// Resume the VM on the source host: only when the destination does not run it.
    #[arg(
        long,
        conflicts_with = "destination_runs",
        required_unless_present = "destination_runs"
    )]
    pub resume_here: bool,
    /// The destination runs the VM: discard the paused copy on the source host.
    #[arg(long)]
    pub destination_runs: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

impl ControlArgs {
    /// The token from --token, RELIVE_CONTROL_TOKEN or --token-file.
    pub fn token(&self) -> anyhow::Result<String> {
        use anyhow::Context as _;
        match (&self.token, &self.token_file) {
            (Some(token), _) => Ok(token.trim().to_string()),
            (None, Some(path)) => Ok(std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()),
            (None, None) => anyhow::bail!(
                "the host's control API needs its token: --token, RELIVE_CONTROL_TOKEN or \
                 --token-file (a host without a configured control_token keeps a generated \
                 one in STATE_DIR/secrets/control-token)"
            ),
        }
    }
}
