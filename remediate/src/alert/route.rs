//! Alertmanager's routing tree: the root takes every alert; children are
//! tried in order and the first that matches wins unless it says
//! `continue`; a route with no matching child handles the alert itself.
//! Children inherit their parent's receiver, grouping and timers.

use std::time::Duration;

use super::config::{duration, RouteConfig};
use super::matcher::{all_match, Matcher};
use super::{ConfigError, Labels};

/// Default `group_wait`: long enough to gather the VMs a cluster-wide
/// cause fails together, short enough to tell within two seconds.
pub const GROUP_WAIT: Duration = Duration::from_secs(1);
/// Default `group_interval`.
pub const GROUP_INTERVAL: Duration = Duration::from_secs(60);
/// Default `repeat_interval` (Alertmanager's).
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// How alerts of a route are split into groups.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// By these labels' values.
    Labels(Vec<String>),
    /// `["..."]`: every alert is its own group.
    Each,
}

/// A built route.
#[derive(Debug, Clone)]
pub struct Route {
    /// `root`, `root.0`, `root.0.1`, … (part of every group key).
    pub id: String,
    /// Receiver name.
    pub receiver: String,
    /// Conditions (ignored on the root).
    pub matchers: Vec<Matcher>,
    /// Grouping.
    pub group_by: GroupBy,
    /// First notification of a new group after this.
    pub group_wait: Duration,
    /// Changes to a notified group after this.
    pub group_interval: Duration,
    /// An unchanged firing group again after this.
    pub repeat_interval: Duration,
    /// Siblings after this one are tried too.
    pub continue_matching: bool,
    /// Children.
    pub routes: Vec<Route>,
}

impl Route {
    /// Builds a route from its config, inheriting from `parent`.
    pub fn build(
        config: &RouteConfig,
        parent: Option<&Route>,
        default_receiver: &str,
        receivers: &[&str],
    ) -> Result<Route, ConfigError> {
        let id = match parent {
            None => "root".to_string(),
            Some(p) => format!("{}.{}", p.id, p.routes.len()),
        };
        let receiver = config
            .receiver
            .clone()
            .or_else(|| parent.map(|p| p.receiver.clone()))
            .unwrap_or_else(|| default_receiver.to_string());
        if !receivers.contains(&receiver.as_str()) {
            return Err(ConfigError::UnknownReceiver {
                route: id,
                receiver,
                defined: receivers.join(", "),
            });
        }
        let timer = |field: &str, value: &Option<String>, inherited: Duration| match value {
            Some(v) => duration(field, v),
            None => Ok(inherited),
        };
        let group_by = match &config.group_by {
            Some(labels) if labels.iter().any(|l| l == "...") => GroupBy::Each,
            Some(labels) => GroupBy::Labels(labels.clone()),
            None => parent.map_or_else(
                || GroupBy::Labels(vec!["cluster".into(), "root_cause".into()]),
                |p| p.group_by.clone(),
            ),
        };
        let mut route = Route {
            receiver,
            matchers: config.matchers.clone(),
            group_by,
            group_wait: timer(
                "group_wait",
                &config.group_wait,
                parent.map_or(GROUP_WAIT, |p| p.group_wait),
            )?,
            group_interval: timer(
                "group_interval",
                &config.group_interval,
                parent.map_or(GROUP_INTERVAL, |p| p.group_interval),
            )?,
            repeat_interval: timer(
                "repeat_interval",
                &config.repeat_interval,
                parent.map_or(REPEAT_INTERVAL, |p| p.repeat_interval),
            )?,
            continue_matching: config.continue_matching,
            routes: Vec::new(),
            id,
        };
        for child in &config.routes {
            let built = Route::build(child, Some(&route), default_receiver, receivers)?;
            route.routes.push(built);
        }
        Ok(route)
    }

    /// The routes that handle an alert with these labels (at least one:
    /// the root handles what no child takes).
    pub fn matching(&self, labels: &Labels) -> Vec<&Route> {
        let mut out = Vec::new();
        self.collect(labels, &mut out);
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    fn collect<'a>(&'a self, labels: &Labels, out: &mut Vec<&'a Route>) -> bool {
        let mut matched = false;
        for child in &self.routes {
            if all_match(&child.matchers, labels) {
                if !child.collect(labels, out) {
                    out.push(child);
                }
                matched = true;
                if !child.continue_matching {
                    break;
                }
            }
        }
        matched
    }

    /// The group an alert falls in on this route: the route id plus the
    /// group-by labels, in Alertmanager's `{}/{a="x",b="y"}` form.
    pub fn group_key(&self, labels: &Labels, fingerprint: &str) -> (String, Labels) {
        let group_labels: Labels = match &self.group_by {
            GroupBy::Each => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .map(|n| (n.clone(), labels.get(n).cloned().unwrap_or_default()))
                .collect(),
        };
        let mut key = format!("{}:{{", self.id);
        for (i, (name, value)) in group_labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(&format!("{name}={value:?}"));
        }
        key.push('}');
        if self.group_by == GroupBy::Each {
            key.push_str(&format!("/{fingerprint}"));
        }
        (key, group_labels)
    }

    /// Every route, depth first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut out = vec![self];
        for child in &self.routes {
            out.extend(child.walk());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tree() -> Route {
        let config: RouteConfig = toml::from_str(
            r#"
receiver = "oncall"
group_wait = "0s"
[[routes]]
matchers = ['fix_class="downtime"']
receiver = "board"
continue = true
[[routes]]
matchers = ['vm=~"SQL.*"']
receiver = "dba"
group_by = ["..."]
[[routes.routes]]
matchers = ['severity="critical"']
receiver = "dba-pager"
[[routes]]
matchers = ['root_cause="unknown"']
repeat_interval = "1h"
"#,
        )
        .unwrap();
        Route::build(
            &config,
            None,
            "log",
            &["log", "oncall", "board", "dba", "dba-pager"],
        )
        .unwrap()
    }

    #[test]
    fn routes_match_like_alertmanager() {
        let root = tree();
        let receivers = |l: &[(&str, &str)]| {
            root.matching(&labels(l))
                .iter()
                .map(|r| r.receiver.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(receivers(&[("vm", "WEB1")]), ["oncall"]);
        assert_eq!(receivers(&[("vm", "SQL1")]), ["dba"]);
        assert_eq!(
            receivers(&[("vm", "SQL1"), ("severity", "critical")]),
            ["dba-pager"]
        );
        assert_eq!(
            receivers(&[("vm", "SQL1"), ("fix_class", "downtime")]),
            ["board", "dba"]
        );
        let unknown = root.matching(&labels(&[("root_cause", "unknown")]));
        assert_eq!(unknown[0].receiver, "oncall");
        assert_eq!(unknown[0].repeat_interval, Duration::from_secs(3600));
        assert_eq!(unknown[0].group_wait, Duration::ZERO, "inherited");
    }

    #[test]
    fn group_keys_split_by_the_group_by_labels() {
        let root = tree();
        let a = labels(&[("cluster", "PROD"), ("root_cause", "x"), ("vm", "A")]);
        let b = labels(&[("cluster", "PROD"), ("root_cause", "x"), ("vm", "B")]);
        assert_eq!(root.group_key(&a, "1").0, root.group_key(&b, "2").0);
        assert_eq!(
            root.group_key(&a, "1").0,
            "root:{cluster=\"PROD\",root_cause=\"x\"}"
        );
        let dba = &root.routes[1];
        assert_ne!(dba.group_key(&a, "1").0, dba.group_key(&b, "2").0);
    }
}
