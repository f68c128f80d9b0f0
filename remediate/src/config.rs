//! `[remediation]` in `relive.toml`: the mode (suggest-only unless
//! configured), overrides per cause, cluster and VM pattern, the hosts the
//! engine may act on, the retry policy's bounds, the verification deadline
//! and the maintenance windows `downtime` actions need.
//!
//! ```toml
//! [remediation]
//! mode = "suggest"            # suggest | dry-run | auto
//! [[remediation.override]]    # later entries win
//! cause = "destination-out-of-memory"
//! mode = "auto"
//! [remediation.hosts]
//! HV01 = { control = "127.0.0.1:7401", token_file = "/var/lib/relive-host/control_token" }
//! [[remediation.maintenance]]
//! days = ["sat", "sun"]
//! from = "01:00"               # UTC
//! to = "05:00"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::executor::HostAccess;

/// How far the engine may go on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Only show the plan (alerts, UI, `relive remediate`).
    #[default]
    Suggest,
    /// Run the read-only checks and record the whole plan; change nothing.
    DryRun,
    /// Run `auto` actions; queue `approval` and `downtime` ones.
    Auto,
}

impl Mode {
    /// Its name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Suggest => "suggest",
            Mode::DryRun => "dry-run",
            Mode::Auto => "auto",
        }
    }
}

/// A mode for the incidents that match every field given.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Root cause slug.
    #[serde(default)]
    pub cause: Option<String>,
    /// Cluster name (from `[remediation.clusters]`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// VM name pattern (`*` and `?`, any case).
    #[serde(default)]
    pub vm: Option<String>,
    /// The mode for them.
    pub mode: Mode,
}

/// A maintenance window (UTC) in which `downtime` actions may run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Week days (`mon` … `sun`); empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Start, `HH:MM` UTC.
    pub from: String,
    /// End, `HH:MM` UTC (before `from`: the window spans midnight).
    pub to: String,
}

impl Window {
    /// Whether `at` falls in the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let (Ok(from), Ok(to)) = (
            NaiveTime::parse_from_str(&self.from, "%H:%M"),
            NaiveTime::parse_from_str(&self.to, "%H:%M"),
        ) else {
            return false;
        };
        let time = NaiveTime::from_hms_opt(at.hour(), at.minute(), at.second()).unwrap_or(from);
        let day = |d: chrono::Weekday| {
            self.days.is_empty()
                || self
                    .days
                    .iter()
                    .any(|x| x.trim().to_ascii_lowercase().get(..3) == Some(&day_name(d)[..3]))
        };
        if from <= to {
            day(at.weekday()) && time >= from && time < to
        } else {
            // Spans midnight: the evening part belongs to its own day, the
            // morning part to the day before.
            (time >= from && day(at.weekday())) || (time < to && day(at.weekday().pred()))
        }
    }

    /// The window in words.
    pub fn describe(&self) -> String {
        let days = if self.days.is_empty() {
            "every day".to_string()
        } else {
            self.days.join(",")
        };
        format!("{days} {}-{} UTC", self.from, self.to)
    }

    fn check(&self) -> Result<(), String> {
        for t in [&self.from, &self.to] {
            NaiveTime::parse_from_str(t, "%H:%M")
                .map_err(|_| format!("maintenance window time `{t}` is not HH:MM"))?;
        }
        for d in &self.days {
            let d = d.trim().to_ascii_lowercase();
            if !["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .any(|n| d.starts_with(n))
            {
                return Err(format!("maintenance window day `{d}` is not mon … sun"));
            }
        }
        Ok(())
    }
}

fn day_name(d: chrono::Weekday) -> &'static str {
    match d {
        chrono::Weekday::Mon => "mon",
        chrono::Weekday::Tue => "tue",
        chrono::Weekday::Wed => "wed",
        chrono::Weekday::Thu => "thu",
        chrono::Weekday::Fri => "fri",
        chrono::Weekday::Sat => "sat",
        chrono::Weekday::Sun => "sun",
    }
}

/// `[remediation]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemediationConfig {
    /// Run the engine in `relive serve` (it only records plans in the
    /// default `suggest` mode).
    pub enabled: bool,
    /// The default mode.
    pub mode: Mode,
    /// Modes per cause, cluster and VM pattern; later entries win.
    #[serde(rename = "override")]
    pub overrides: Vec<Override>,
    /// relive migration hosts the engine acts on, by name.
    pub hosts: BTreeMap<String, HostAccess>,
    /// Hyper-V through PowerShell (used when no `hosts` are given).
    pub powershell: Option<crate::powershell::PowerShellConfig>,
    /// Cluster name by host name: `{cluster}`.
    pub clusters: BTreeMap<String, String>,
    /// Migrations a retry policy may start for one incident.
    pub max_attempts: u32,
    /// First backoff between attempts, seconds (doubles, with jitter).
    pub backoff_initial_s: f64,
    /// Longest backoff, seconds.
    pub backoff_max_s: f64,
    /// Longest wait for a free migration slot, seconds.
    pub wait_for_slot_s: u64,
    /// How long the retry's success may take to show in the events, seconds.
    pub verify_deadline_s: u64,
    /// How long an approval request stays valid, hours.
    pub approval_expires_h: u64,
    /// When `downtime` actions may run (none: never).
    pub maintenance: Vec<Window>,
}

impl Default for RemediationConfig {
    fn default() -> Self {
        RemediationConfig {
            enabled: true,
            mode: Mode::Suggest,
            overrides: Vec::new(),
            hosts: BTreeMap::new(),
            powershell: None,
            clusters: BTreeMap::new(),
            max_attempts: 3,
            backoff_initial_s: 1.0,
            backoff_max_s: 30.0,
            wait_for_slot_s: 300,
            verify_deadline_s: 60,
            approval_expires_h: 24,
            maintenance: Vec::new(),
        }
    }
}

impl RemediationConfig {
    /// Checks what serde cannot: patterns, windows, bounds.
    pub fn check(&self) -> Result<(), String> {
        for w in &self.maintenance {
            w.check()?;
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if !(self.backoff_initial_s > 0.0 && self.backoff_max_s >= self.backoff_initial_s) {
            return Err("backoff_initial_s must be > 0 and <= backoff_max_s".into());
        }
        if let Some(p) = &self.powershell {
            p.check()?;
        }
        Ok(())
    }

    /// The mode for an incident of `cause` on `cluster` for `vm`.
    pub fn mode_for(&self, cause: &str, cluster: Option<&str>, vm: Option<&str>) -> Mode {
        let mut mode = self.mode;
        for o in &self.overrides {
            let cause_ok = o.cause.as_deref().is_none_or(|c| c == cause);
            let cluster_ok = o
                .cluster
                .as_deref()
                .is_none_or(|c| cluster.is_some_and(|k| k.eq_ignore_ascii_case(c)));
            let vm_ok =
                o.vm.as_deref()
                    .is_none_or(|p| vm.is_some_and(|v| glob_match(p, v)));
            if cause_ok && cluster_ok && vm_ok {
                mode = o.mode;
            }
        }
        mode
    }

    /// The backoff before attempt `n` (1-based), with up to 25 % jitter.
    pub fn backoff(&self, n: u32, jitter: f64) -> Duration {
        let base = self.backoff_initial_s * 2f64.powi(n.saturating_sub(1).min(30) as i32);
        let capped = base.min(self.backoff_max_s);
        Duration::from_secs_f64(capped * (1.0 + 0.25 * jitter.clamp(0.0, 1.0)))
    }

    /// The window `at` falls in, if any.
    pub fn window_at(&self, at: DateTime<Utc>) -> Option<&Window> {
        self.maintenance.iter().find(|w| w.contains(at))
    }
}

/// The commented `[remediation]` section `relive config default` prints.
pub const DEFAULT_TOML: &str = r#"
# ---- Remediation -------------------------------------------------------
# Suggest-only unless configured: every new incident gets a plan in the
# audit log (--data/remediation/audit.jsonl; `relive actions`,
# `relive remediate ID`). In auto mode auto actions run, approval and
# downtime actions wait for `relive approve KEY`.
[remediation]
# enabled = true
# mode = "suggest"             # suggest | dry-run | auto
# max_attempts = 3             # migrations one incident may retry
# backoff_initial_s = 1.0      # doubles per attempt, +0-25 % jitter
# backoff_max_s = 30.0
# wait_for_slot_s = 300        # longest wait for a free migration slot
# verify_deadline_s = 60       # the retry's success must show in the events by then
# approval_expires_h = 24
# [[remediation.override]]     # later entries win
# cause = "destination-out-of-memory"
# cluster = "PROD"
# vm = "SQL*"
# mode = "auto"
# [remediation.clusters]       # {cluster} by host
# HV01 = "PROD"
# [remediation.hosts]          # relive migration hosts the engine acts on
# HV01 = { control = "127.0.0.1:6601", token_file = "/var/lib/relive-host/secrets/control_token" }
# [remediation.powershell]     # Hyper-V (when no hosts are given); not run against real Windows yet
# transport = ["ssh", "{host}", "pwsh", "-NoProfile", "-NonInteractive", "-Command", "-"]
# timeout_s = 300
# [[remediation.maintenance]]  # when downtime actions may be approved (UTC)
# days = ["sat", "sun"]
# from = "01:00"
# to = "05:00"
"#;

/// `*` and `?` wildcards, any case.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_overrides_win_and_patterns_match_any_case() {
        let config: RemediationConfig = toml::from_str(
            r#"
mode = "suggest"
[[override]]
cause = "destination-out-of-memory"
mode = "auto"
[[override]]
vm = "SQL*"
mode = "suggest"
[[override]]
cluster = "lab"
mode = "dry-run"
"#,
        )
        .unwrap();
        assert_eq!(
            config.mode_for("vswitch-mismatch", None, None),
            Mode::Suggest
        );
        assert_eq!(
            config.mode_for("destination-out-of-memory", None, Some("web1")),
            Mode::Auto
        );
        assert_eq!(
            config.mode_for("destination-out-of-memory", None, Some("sql-01")),
            Mode::Suggest
        );
        assert_eq!(
            config.mode_for("destination-out-of-memory", Some("LAB"), Some("sql-01")),
            Mode::DryRun
        );
        assert!(glob_match("a?c*", "ABCdef"));
        assert!(!glob_match("a?c", "abcd"));
    }

    #[test]
    fn windows_span_midnight_and_name_their_days() {
        let w = Window {
            days: vec!["sat".into()],
            from: "22:00".into(),
            to: "02:00".into(),
        };
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // 2026-12-12 is a Saturday.
        assert!(w.contains(at("2026-12-12T23:00:00Z")));
        assert!(w.contains(at("2026-12-13T01:00:00Z")), "Saturday's night");
        assert!(!w.contains(at("2026-12-13T23:00:00Z")), "Sunday evening");
        assert!(!w.contains(at("2026-12-12T12:00:00Z")));
        assert_eq!(w.describe(), "sat 22:00-02:00 UTC");
        let bad = Window {
            days: vec!["someday".into()],
            from: "1".into(),
            to: "2".into(),
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn the_commented_default_is_valid_once_uncommented() {
        let setting = regex::Regex::new(r"^(\[|[a-z_]+ = |[A-Z0-9]+ = )").unwrap();
        let text: String = DEFAULT_TOML
            .lines()
            .filter_map(|l| match l.strip_prefix("# ") {
                Some(rest) if setting.is_match(rest) => Some(rest),
                Some(_) => None,
                None => Some(l),
            })
            .collect::<Vec<_>>()
            .join("\n");
        #[derive(serde::Deserialize)]
        struct File {
            remediation: RemediationConfig,
        }
        let file: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        file.remediation.check().unwrap();
        assert_eq!(file.remediation.hosts.len(), 1);
        assert!(file.remediation.powershell.is_some());
        assert_eq!(file.remediation.maintenance.len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let c = RemediationConfig::default();
        assert_eq!(c.backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(c.backoff(3, 0.0), Duration::from_secs(4));
        assert_eq!(c.backoff(30, 0.0), Duration::from_secs(30));
        assert_eq!(c.backoff(1, 1.0), Duration::from_millis(1250));
    }
}
