//! A time-stamped sample of one live migration.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Event, Fields, Level, Origin};

/// Where in its life a migration was when a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The migration was accepted and began.
    Started,
    /// A pre-copy pass (memory sent while the VM runs).
    Precopy,
    /// The VM is paused for the final copy.
    Blackout,
    /// The VM runs on the destination.
    Completed,
    /// The migration failed or was aborted; the VM stays on the source.
    Failed,
    /// A periodic counter sample (perfmon) that does not know the phase.
    Sample,
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The VM runs on the destination.
    Success,
    /// The VM still runs on the source.
    Failure,
}

/// One sample of one migration: VM, source, destination, phase, pass,
/// bytes, dirty pages, throughput, blackout and total time, transport,
/// outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// When the sample was taken (UTC).
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    /// Identifies one migration attempt.
    pub migration_id: String,
    /// VM name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_name: Option<String>,
    /// VM id (upper-case GUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    /// Source host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_host: Option<String>,
    /// Destination host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_host: Option<String>,
    /// Phase.
    pub phase: Phase,
    /// Pre-copy pass number (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<u32>,
    /// Bytes sent so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    /// Pages dirtied during the last pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_pages: Option<u64>,
    /// Throughput in megabits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_mbps: Option<f64>,
    /// Time the VM was paused, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blackout_ms: Option<u64>,
    /// Time from start to end, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    /// Transport (`tcp`, `compress`, `smb`, `rdma`, `multi` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// How the migration ended, on the last sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Where the sample was read from.
    #[serde(skip)]
    pub origin: Origin,
}

/// Provider (and channel) of the event relive writes for a failed
/// migration that only its metrics tell of ([`Metric::failure_event`]).
pub const METRICS_PROVIDER: &str = "relive-metrics";
/// Event id of that event.
pub const METRICS_FAILURE_ID: u32 = 2;

impl Metric {
    /// Serializes the sample as one JSON line (the migration core's format).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The failed migration this sample reports (phase `failed`, or an
    /// outcome of failure), as an event on the source host, so a failure
    /// that only the metrics tell of reaches the correlator and the index
    /// like one Windows logged: `relive-metrics` event 2, with the VM, the
    /// hosts and the migration id as data and a message in Hyper-V's words.
    pub fn failure_event(&self) -> Option<Event> {
        if self.phase != Phase::Failed && self.outcome != Some(Outcome::Failure) {
            return None;
        }
        let vm = self
            .vm_name
            .as_deref()
            .or(self.vm_id.as_deref())
            .unwrap_or("?");
        let source = self.source_host.as_deref().unwrap_or("");
        let mut message = format!("Live migration of virtual machine '{vm}'");
        if !source.is_empty() {
            message.push_str(&format!(" from source host '{source}'"));
        }
        if let Some(destination) = &self.destination_host {
            message.push_str(&format!(" to destination host '{destination}'"));
        }
        message.push_str(" failed (migration metrics");
        if let Some(pass) = self.pass {
            message.push_str(&format!(", pass {pass}"));
        }
        if let Some(bytes) = self.bytes_sent {
            message.push_str(&format!(", {bytes} bytes sent"));
        }
        message.push_str(&format!(", migration {}).", self.migration_id));
        if let Some(id) = &self.vm_id {
            message.push_str(&format!(" (Virtual machine ID {id})"));
        }
        let mut data = Fields::new();
        data.push_static("MigrationId", self.migration_id.as_str());
        if let Some(v) = &self.vm_name {
            data.push_static("VmName", v.as_str());
        }
        if let Some(v) = &self.vm_id {
            data.push_static("VmId", v.as_str());
        }
        if let Some(v) = &self.source_host {
            data.push_static("SourceHost", v.as_str());
        }
        if let Some(v) = &self.destination_host {
            data.push_static("DestinationHost", v.as_str());
        }
        Some(Event {
            timestamp: self.timestamp,
            host: source.into(),
            channel: METRICS_PROVIDER.into(),
            provider: METRICS_PROVIDER.into(),
            event_id: METRICS_FAILURE_ID,
            level: Level::Error,
            message,
            data,
            ..Event::default()
        })
    }
}

mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::time::parse_iso(&text)
            .and_then(|t| t.to_utc_if_zoned())
            .ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {text:?}")))
    }
}
