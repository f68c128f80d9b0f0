//! `relive config default`: a commented relive.toml with every section.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::ConfigCommand;

/// The collector's part of the default configuration.
const SERVE_TOML: &str = r#"# relive.toml — read by `relive serve --config relive.toml`.
# Every value shown is the default; uncomment what you change.

# ---- Receivers (ports the shippers expect; loopback unless you say) -----
# On an address other than loopback, a receiver must know who sends: the
# auth shown for it, or allow_unauthenticated = true (announced at start-up).
# [receivers.agent]            # relive agents: acked, optional TLS and tokens
# listen = "127.0.0.1:7301"
# token = "one secret for every agent"
# tokens = { "hv01" = "a secret for hv01" }
# cert = "collector.pem"       # TLS when cert and key are set
# key = "collector.key"
# client_ca = "agents-ca.pem"  # agents must present a certificate this CA signed
# [receivers.syslog]           # RFC 5424/3164, Snare, NXLog JSON lines
# tcp = "127.0.0.1:1514"
# udp = "127.0.0.1:1514"
# allow = ["10.1.0.0/16"]      # sources allowed to send
# [receivers.es_bulk]          # Elasticsearch _bulk: Winlogbeat, Fluent Bit, rsyslog
# listen = "127.0.0.1:9200"
# [receivers.es_bulk.auth]
# basic = { beats = "a password" }          # Authorization: Basic
# api_keys = ["id:api_key"]                 # Authorization: ApiKey (Winlogbeat api_key)
# [receivers.otlp]             # OTLP/HTTP logs
# listen = "127.0.0.1:4318"
# [receivers.otlp.auth]
# bearer_tokens = ["a token"]               # Authorization: Bearer
# headers = { "x-api-key" = "a key" }       # the exporter's headers
# [receivers.lumberjack]       # Beats' Logstash output
# listen = "127.0.0.1:5044"
# cert = "collector.pem"
# key = "collector.key"
# client_ca = "beats-ca.pem"   # Beats' ssl.certificate/ssl.key, signed by this CA
# [receivers.watch]            # folders whose files the collector reads itself
# paths = []
# Each receiver: enabled = false turns it off.
# [receivers.limits]           # what a slow or greedy peer gets
# header_timeout_ms = 10000    # HTTP headers
# request_timeout_ms = 120000  # a whole HTTP request (408 after)
# message_timeout_ms = 30000   # a syslog message, agent or Lumberjack frame, first byte to last
# max_connections = 512        # per receiver; more are closed at once

# ---- Pipeline -------------------------------------------------------------
# [collector]
# commit_ms = 250              # longest wait before events are searchable
# max_lag_records = 4096       # parse backlog before receivers slow down
# correlate_hold_ms = 250      # events arriving together are put in time order
# correlate = true             # false: an index-only collector

# [correlate]
# lateness = "60s"             # how late an event may arrive and still be ordered
# settle = "10s"               # wait for the rest of a chain before deciding
# fold_window = "1h"           # same VM and cause within this = one incident
# attempt_gap = "30s"          # failure signals further apart are separate attempts
# max_evidence = 200

"#;

/// Runs `relive config …`.
pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Default(args) if args.host => {
            std::io::stdout()
                .lock()
                .write_all(migrate_core::config::HOST_TEMPLATE.as_bytes())?;
        }
        ConfigCommand::Default(_) => {
            let mut out = std::io::stdout().lock();
            out.write_all(SERVE_TOML.as_bytes())?;
            out.write_all(remediate::alert::config::DEFAULT_TOML.as_bytes())?;
            out.write_all(remediate::config::DEFAULT_TOML.as_bytes())?;
            out.write_all(b"\n")?;
            out.write_all(relive::http::DEFAULT_TOML.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
