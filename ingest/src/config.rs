//! The `[receivers.*]` part of `relive.toml`, with the ports the ecosystem
//! expects as defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a valid default address")
}

/// Every receiver.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Receivers {
    /// relive's own acked protocol.
    pub agent: AgentReceiver,
    /// Syslog over TCP and UDP.
    pub syslog: SyslogReceiver,
    /// Elasticsearch-compatible `_bulk`.
    pub es_bulk: HttpReceiver,
    /// OTLP/HTTP logs.
    pub otlp: HttpReceiver,
    /// Lumberjack v2 (Beats → Logstash).
    pub lumberjack: LumberjackReceiver,
    /// Folders the collector reads itself.
    pub watch: WatchReceiver,
    /// Deadlines and caps every network receiver applies.
    pub limits: LimitsConfig,
}

/// `[receivers.limits]`: what a slow or greedy peer gets before it is cut.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// An HTTP request's headers must arrive within this, in ms.
    pub header_timeout_ms: u64,
    /// A whole HTTP request (headers, body, answer) within this, in ms.
    pub request_timeout_ms: u64,
    /// A syslog message, an agent frame or a Lumberjack frame, from its
    /// first byte to its last, in ms.
    pub message_timeout_ms: u64,
    /// Connections open at once per receiver; more are closed at once.
    pub max_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_ms: 10_000,
            request_timeout_ms: 120_000,
            message_timeout_ms: 30_000,
            max_connections: 512,
        }
    }
}

/// `[receivers.agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentReceiver {
    /// Off with `enabled = false`.
    pub enabled: bool,
    /// Where to listen.
    pub listen: SocketAddr,
    /// One secret for every agent.
    pub token: Option<String>,
    /// A secret per agent name (checked before `token`).
    pub tokens: BTreeMap<String, String>,
    /// TLS certificate chain (PEM); TLS is on when this and `key` are set.
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub key: Option<PathBuf>,
    /// CA (PEM) whose certificates agents must present (TLS client
    /// authentication; needs `cert` and `key`).
    pub client_ca: Option<PathBuf>,
    /// Accept anyone on a non-loopback address (announced at start-up).
    pub allow_unauthenticated: bool,
}

impl Default for AgentReceiver {
    fn default() -> Self {
        AgentReceiver {
            enabled: true,
            listen: addr("127.0.0.1:7301"),
            token: None,
            tokens: BTreeMap::new(),
            cert: None,
            key: None,
            client_ca: None,
            allow_unauthenticated: false,
        }
    }
}

impl AgentReceiver {
    /// Whether `token` is right for `agent`. With no secret configured at
    /// all every agent is accepted (one box, loopback).
    pub fn accepts(&self, agent: &str, token: &str) -> bool {
        if let Some(expected) = self.tokens.get(agent) {
            return constant_time_eq(expected.as_bytes(), token.as_bytes());
        }
        match &self.token {
            Some(expected) => constant_time_eq(expected.as_bytes(), token.as_bytes()),
            None => self.tokens.is_empty(),
        }
    }
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `[receivers.syslog]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogReceiver {
    /// Off with `enabled = false`.
    pub enabled: bool,
    /// TCP listener (octet counting or LF framing, detected per connection).
    pub tcp: Option<SocketAddr>,
    /// UDP socket (one message per datagram).
    pub udp: Option<SocketAddr>,
    /// Longest message accepted; longer ones are reported and skipped.
    pub max_message: usize,
    /// Source networks allowed to send (CIDRs, e.g. `10.1.0.0/16`); empty =
    /// any. Connections and datagrams from elsewhere are dropped.
    pub allow: Vec<String>,
    /// Accept any source on a non-loopback address (announced at start-up).
    pub allow_unauthenticated: bool,
}

impl Default for SyslogReceiver {
    fn default() -> Self {
        SyslogReceiver {
            enabled: true,
            tcp: Some(addr("127.0.0.1:1514")),
            udp: Some(addr("127.0.0.1:1514")),
            max_message: 64 * 1024,
            allow: Vec::new(),
            allow_unauthenticated: false,
        }
    }
}

/// Credentials an HTTP receiver accepts: a request is let in when it
/// carries any one of them.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HttpAuth {
    /// `Authorization: Basic`: user name → password (Winlogbeat's
    /// `username`/`password`, Fluent Bit's `HTTP_User`/`HTTP_Passwd`).
    pub basic: BTreeMap<String, String>,
    /// Elasticsearch API keys as `id:api_key` (`Authorization: ApiKey
    /// base64(id:api_key)`, what Winlogbeat's `api_key` sends).
    pub api_keys: Vec<String>,
    /// `Authorization: Bearer TOKEN` (OTLP exporters' headers).
    pub bearer_tokens: Vec<String>,
    /// A header name and the value it must carry (e.g. `X-Api-Key`).
    pub headers: BTreeMap<String, String>,
}

impl HttpAuth {
    /// True when no credential is configured.
    pub fn is_empty(&self) -> bool {
        self.basic.is_empty()
            && self.api_keys.is_empty()
            && self.bearer_tokens.is_empty()
            && self.headers.is_empty()
    }
}

/// An HTTP receiver (`[receivers.es_bulk]`, `[receivers.otlp]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpReceiver {
    /// Off with `enabled = false`.
    pub enabled: bool,
    /// Where to listen (9200 for `_bulk`, 4318 for OTLP by default).
    pub listen: Option<SocketAddr>,
    /// Largest request body, before and after gzip.
    pub max_body: usize,
    /// Who may send.
    pub auth: HttpAuth,
    /// Accept anyone on a non-loopback address (announced at start-up).
    pub allow_unauthenticated: bool,
}

impl Default for HttpReceiver {
    fn default() -> Self {
        HttpReceiver {
            enabled: true,
            listen: None,
            max_body: 64 * 1024 * 1024,
            auth: HttpAuth::default(),
            allow_unauthenticated: false,
        }
    }
}

/// `[receivers.lumberjack]`: Beats' Logstash output.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LumberjackReceiver {
    /// Off with `enabled = false`.
    pub enabled: bool,
    /// Where to listen (default `0.0.0.0:5044`).
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM); TLS is on when this and `key` are set
    /// (Beats' `output.logstash.ssl`).
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub key: Option<PathBuf>,
    /// CA (PEM) whose certificates Beats must present (`ssl.certificate`
    /// on their side; needs `cert` and `key`).
    pub client_ca: Option<PathBuf>,
    /// Accept anyone on a non-loopback address (announced at start-up).
    pub allow_unauthenticated: bool,
}

impl Default for LumberjackReceiver {
    fn default() -> Self {
        LumberjackReceiver {
            enabled: true,
            listen: None,
            cert: None,
            key: None,
            client_ca: None,
            allow_unauthenticated: false,
        }
    }
}

/// `[receivers.watch]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WatchReceiver {
    /// Folders (or globs) whose files are read as they appear.
    pub paths: Vec<PathBuf>,
}

impl Receivers {
    /// The `_bulk` address (default `127.0.0.1:9200`).
    pub fn es_bulk_addr(&self) -> SocketAddr {
        self.es_bulk
            .listen
            .unwrap_or_else(|| addr("127.0.0.1:9200"))
    }

    /// The OTLP address (default `127.0.0.1:4318`).
    pub fn otlp_addr(&self) -> SocketAddr {
        self.otlp.listen.unwrap_or_else(|| addr("127.0.0.1:4318"))
    }

    /// The Lumberjack address (default `127.0.0.1:5044`).
    pub fn lumberjack_addr(&self) -> SocketAddr {
        self.lumberjack
            .listen
            .unwrap_or_else(|| addr("127.0.0.1:5044"))
    }

    /// The syslog allow-list, parsed.
    pub fn syslog_allow(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.syslog
            .allow
            .iter()
            .map(|c| {
                let c = c.trim();
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("[receivers.syslog] allow: `{c}` is not a network like 10.1.0.0/16")
                    })
            })
            .collect()
    }

    /// Checks that every listener a stranger could reach has a way to tell
    /// who is sending: on an address other than loopback a receiver needs
    /// an auth method, or `allow_unauthenticated = true`. Returns the
    /// warnings to announce for the receivers that are open on purpose.
    pub fn check(&self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        let mut gate = |what: &str, addr: SocketAddr, has_auth: bool, open: bool, how: &str| {
            if addr.ip().is_loopback() || has_auth {
                return Ok(());
            }
            if open {
                warnings.push(format!(
                    "{what} on {addr} accepts anyone (allow_unauthenticated = true)"
                ));
                return Ok(());
            }
            Err(format!(
                "{what} listens on {addr}, which is not loopback, with no way to tell who sends: {how}, or set allow_unauthenticated = true"
            ))
        };
        if self.agent.enabled {
            let a = &self.agent;
            if a.client_ca.is_some() && (a.cert.is_none() || a.key.is_none()) {
                return Err("[receivers.agent] client_ca needs cert and key (TLS)".into());
            }
            let auth = a.token.is_some() || !a.tokens.is_empty() || a.client_ca.is_some();
            gate(
                "[receivers.agent]",
                a.listen,
                auth,
                a.allow_unauthenticated,
                "set token or tokens, or client_ca",
            )?;
        }
        if self.syslog.enabled {
            let allow = self.syslog_allow()?;
            for addr in [self.syslog.tcp, self.syslog.udp].into_iter().flatten() {
                gate(
                    "[receivers.syslog]",
                    addr,
                    !allow.is_empty(),
                    self.syslog.allow_unauthenticated,
                    "set allow = [\"10.1.0.0/16\", …]",
                )?;
            }
        }
        for (what, receiver, addr) in [
            ("[receivers.es_bulk]", &self.es_bulk, self.es_bulk_addr()),
            ("[receivers.otlp]", &self.otlp, self.otlp_addr()),
        ] {
            if receiver.enabled {
                gate(
                    what,
                    addr,
                    !receiver.auth.is_empty(),
                    receiver.allow_unauthenticated,
                    "set [auth] basic, api_keys, bearer_tokens or headers",
                )?;
            }
        }
        if self.lumberjack.enabled {
            let l = &self.lumberjack;
            if l.client_ca.is_some() && (l.cert.is_none() || l.key.is_none()) {
                return Err("[receivers.lumberjack] client_ca needs cert and key (TLS)".into());
            }
            gate(
                "[receivers.lumberjack]",
                self.lumberjack_addr(),
                l.client_ca.is_some(),
                l.allow_unauthenticated,
                "set client_ca (TLS client certificates)",
            )?;
        }
        Ok(warnings)
    }
}
