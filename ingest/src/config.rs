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
}

impl Default for AgentReceiver {
    fn default() -> Self {
        AgentReceiver {
            enabled: true,
            listen: addr("0.0.0.0:7301"),
            token: None,
            tokens: BTreeMap::new(),
            cert: None,
            key: None,
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
}

impl Default for SyslogReceiver {
    fn default() -> Self {
        SyslogReceiver {
            enabled: true,
            tcp: Some(addr("0.0.0.0:1514")),
            udp: Some(addr("0.0.0.0:1514")),
            max_message: 64 * 1024,
        }
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
}

impl Default for HttpReceiver {
    fn default() -> Self {
        HttpReceiver {
            enabled: true,
            listen: None,
            max_body: 64 * 1024 * 1024,
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
}

impl Default for LumberjackReceiver {
    fn default() -> Self {
        LumberjackReceiver {
            enabled: true,
            listen: None,
            cert: None,
            key: None,
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
    /// The `_bulk` address (default `0.0.0.0:9200`).
    pub fn es_bulk_addr(&self) -> SocketAddr {
        self.es_bulk.listen.unwrap_or_else(|| addr("0.0.0.0:9200"))
    }
    /// The OTLP address (default `0.0.0.0:4318`).
    pub fn otlp_addr(&self) -> SocketAddr {
        self.otlp.listen.unwrap_or_else(|| addr("0.0.0.0:4318"))
    }
    /// The Lumberjack address (default `0.0.0.0:5044`).
    pub fn lumberjack_addr(&self) -> SocketAddr {
        self.lumberjack
            .listen
            .unwrap_or_else(|| addr("0.0.0.0:5044"))
    }
}
