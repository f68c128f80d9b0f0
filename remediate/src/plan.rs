//! A remediation plan: for an incident, the playbook's read-only checks
//! that confirm the cause, its fix actions, the checks again to verify the
//! fix, the retry and the check of the retry; each action typed, with its
//! class, target host, parameters as data and an idempotency key.
//!
//! Placeholders (`{vm_name}`, `{destination_host}`, `{cluster}` …) are
//! resolved from the incident and the configuration before a plan is shown
//! or run. A value that is not known leaves the plan unrunnable, and the
//! plan says which value is missing. Values are data: a command keeps its
//! placeholders, and an executor passes the values separately (a PowerShell
//! parameter block, a control API field), never spliced into code.

use std::collections::BTreeMap;

use correlate::{Incident, Knowledge, Playbook};
use serde::Serialize;

/// How much a human must be involved (hyperv-kb.md §7, root-causes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// May run unattended when remediation is configured to.
    Auto,
    /// Changes configuration or security: waits for an approval.
    Approval,
    /// Stops VMs or the cluster: approval and a maintenance window.
    Downtime,
}

impl Class {
    /// Reads a playbook's class name; an unknown one is the strictest.
    pub fn parse(text: &str) -> Class {
        match text.trim() {
            "auto" => Class::Auto,
            "approval" => Class::Approval,
            _ => Class::Downtime,
        }
    }

    /// `auto`, `approval` or `downtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Auto => "auto",
            Class::Approval => "approval",
            Class::Downtime => "downtime",
        }
    }
}

/// When a plan may retry the migration (root-causes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryPolicy {
    /// Retry unattended, bounded, with backoff.
    Auto,
    /// Retry to another destination that passes pre-flight.
    OtherNode,
    /// Retry only once the fix is verified.
    AfterFix,
    /// Retrying cannot help.
    Never,
}

impl RetryPolicy {
    /// Reads a playbook's `retry`; an unknown one never retries.
    pub fn parse(text: &str) -> RetryPolicy {
        match text.trim() {
            "auto" => RetryPolicy::Auto,
            "other-node" => RetryPolicy::OtherNode,
            "after-fix" => RetryPolicy::AfterFix,
            _ => RetryPolicy::Never,
        }
    }
}

/// Where in the plan an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A read-only check that confirms the cause.
    Confirm,
    /// A change that repairs it.
    Fix,
    /// The confirming checks again, after the fix.
    Verify,
    /// The migration again.
    Retry,
    /// The retry's success seen in the events.
    VerifyRetry,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Confirm => "confirm",
            Stage::Fix => "fix",
            Stage::Verify => "verify",
            Stage::Retry => "retry",
            Stage::VerifyRetry => "verify-retry",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// Idempotency key: incident id, stage, step number, attempt.
    pub key: String,
    /// Where it stands.
    pub stage: Stage,
    /// What it does, for a human.
    pub title: String,
    /// Its class (checks are `auto`: they only read).
    pub class: Class,
    /// The host it acts on (`None`: the cluster, or a manual step).
    pub target: Option<String>,
    /// The playbook's command, placeholders kept (empty: a manual step).
    pub command: String,
    /// The values of the placeholders the command uses, as data.
    pub params: BTreeMap<String, String>,
    /// Placeholders whose value is not known: the action cannot run.
    pub missing: Vec<String>,
    /// What it is on a relive migration host (`None`: no host operation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<crate::executor::HostOp>,
    /// For a check run as a command: what its output matches when all is
    /// well (the playbook's `healthy_if`); without one it only reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_if: Option<String>,
}

/// What a plan is made from besides the incident.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Cluster name by host (short names, any case): `{cluster}`.
    pub clusters: BTreeMap<String, String>,
}

impl Facts {
    /// The cluster of a host, if configured.
    pub fn cluster_of(&self, host: &str) -> Option<&str> {
        let short = parsers::event::short_host(host);
        self.clusters
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(short))
            .map(|(_, c)| c.as_str())
    }
}

/// The plan for an incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The incident it repairs.
    pub incident: String,
    /// Its root cause (= playbook).
    pub root_cause: String,
    /// The retry policy of the cause.
    pub retry: RetryPolicy,
    /// The strictest class of its fixes.
    pub class: Class,
    /// Every action, in order.
    pub actions: Vec<Action>,
}

/// A plan that cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No playbook for the incident's cause.
    #[error("no playbook for root cause `{0}`")]
    NoPlaybook(String),
    /// Values the plan needs are not known.
    #[error("the plan cannot run: {}", missing.join(", "))]
    Unresolved {
        /// `step: placeholder` for each missing value.
        missing: Vec<String>,
    },
}

/// The placeholders a command uses, in order of first use.
pub fn placeholders(command: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = command;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && !out.contains(&name)
        {
            out.push(name);
        }
        rest = &after[end + 1..];
    }
    out
}

impl Plan {
    /// The plan for `incident` from its playbook, for retry `attempt`
    /// (the idempotency keys name it).
    pub fn for_incident(
        incident: &Incident,
        kb: &Knowledge,
        facts: &Facts,
        attempt: u32,
    ) -> Result<Plan, PlanError> {
        let playbook = kb
            .get(&incident.remediation.playbook)
            .or_else(|| kb.get(&incident.root_cause))
            .ok_or_else(|| PlanError::NoPlaybook(incident.root_cause.clone()))?;
        let values = values(incident, facts);
        let mut actions = Vec::new();
        // `uses`: values the executor needs besides the command's own.
        let mut add =
            |stage: Stage, n: usize, step: &correlate::kb::Step, class: Class, uses: &[&str]| {
                let mut params = BTreeMap::new();
                let mut missing = Vec::new();
                let op = step
                    .relive
                    .as_deref()
                    .and_then(crate::executor::HostOp::parse);
                let mut names = placeholders(&step.command);
                // A host operation acts on the VM between its two hosts.
                let op_uses: &[&str] = if op.is_some() {
                    &["vm_name", "source_host", "destination_host"]
                } else {
                    &[]
                };
                for u in uses.iter().chain(op_uses) {
                    if !names.contains(u) {
                        names.push(u);
                    }
                }
                for name in &names {
                    match values.get(name) {
                        Some(v) => {
                            params.insert(name.to_string(), v.clone());
                        }
                        None => missing.push(name.to_string()),
                    }
                }
                let target = target(&step.command, &values)
                    .or_else(|| op.and_then(|_| values.get("destination_host").cloned()))
                    .or_else(|| {
                        uses.contains(&"source_host")
                            .then(|| values.get("source_host").cloned())
                            .flatten()
                    });
                actions.push(Action {
                    key: format!("{}/{}/{}/{attempt}", incident.id, stage.as_str(), n + 1),
                    stage,
                    title: step.title.clone(),
                    class,
                    target,
                    command: step.command.clone(),
                    params,
                    missing,
                    op,
                    healthy_if: step.healthy_if.clone(),
                });
            };
        for (n, step) in playbook.confirm.iter().enumerate() {
            add(Stage::Confirm, n, step, Class::Auto, &[]);
        }
        let mut retry_steps = Vec::new();
        for (n, step) in playbook.fix.iter().enumerate() {
            let class = Class::parse(step.class.as_deref().unwrap_or(&playbook.fix_class));
            // A fix that moves the VM is the retry itself (playbooks/README.md).
            if moves_the_vm(&step.command) {
                retry_steps.push((n, step, class));
            } else {
                add(Stage::Fix, n, step, class, &[]);
            }
        }
        for (n, step) in playbook.confirm.iter().enumerate() {
            add(Stage::Verify, n, step, Class::Auto, &[]);
        }
        let retry = RetryPolicy::parse(&playbook.retry);
        if retry != RetryPolicy::Never {
            let moves = !retry_steps.is_empty();
            for (n, step, class) in retry_steps {
                add(Stage::Retry, n, step, class, &[]);
            }
            if !moves {
                // The migration again, as the executor runs it (a relive
                // host's `migrate`, or Move-ClusterVirtualMachineRole).
                let step = correlate::kb::Step {
                    title: "Retry the live migration of {vm_name} to {destination_host}".into(),
                    command: String::new(),
                    class: None,
                    relive: None,
                    healthy_if: None,
                };
                add(
                    Stage::Retry,
                    0,
                    &step,
                    Class::Auto,
                    &["vm_name", "source_host", "destination_host"],
                );
            }
            let step = correlate::kb::Step {
                title: "The retry's success seen in the events (20415 / 21307 for the VM) within the deadline".into(),
                command: String::new(),
                class: None,
                relive: None,
                healthy_if: None,
            };
            add(Stage::VerifyRetry, 0, &step, Class::Auto, &["vm_name"]);
        }
        let class = actions
            .iter()
            .filter(|a| a.stage == Stage::Fix || a.stage == Stage::Retry)
            .map(|a| a.class)
            .max()
            .unwrap_or(Class::Auto);
        Ok(Plan {
            incident: incident.id.clone(),
            root_cause: incident.root_cause.clone(),
            retry,
            class,
            actions,
        })
    }

    /// Ok when every value the plan needs is known; else each missing one
    /// as `step title: placeholder`.
    pub fn runnable(&self) -> Result<(), PlanError> {
        self.runnable_by(|_| true)
    }

    /// Like [`Plan::runnable`], for the actions `runs` says an executor will
    /// run: a PowerShell placeholder does not hold up a relive host's
    /// operation (the engine checks the retry's own values itself).
    pub fn runnable_by(&self, runs: impl Fn(&Action) -> bool) -> Result<(), PlanError> {
        let missing: Vec<String> = self
            .actions
            .iter()
            .filter(|a| runs(a))
            .flat_map(|a| {
                a.missing
                    .iter()
                    .map(move |m| format!("{}: {{{m}}}", a.title))
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(PlanError::Unresolved { missing })
        }
    }
}

/// The values an incident gives its placeholders; unknown ones are absent.
fn values(incident: &Incident, facts: &Facts) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let mut put = |name: &'static str, value: Option<&str>| {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty() && *v != "?") {
            out.insert(name, v.to_string());
        }
    };
    put("vm_name", incident.vm_name.as_deref());
    put("vm_id", incident.vm_id.as_deref());
    put("source_host", incident.source_host.as_deref());
    put("destination_host", incident.destination_host.as_deref());
    let cluster = incident
        .source_host
        .as_deref()
        .and_then(|h| facts.cluster_of(h))
        .or_else(|| {
            incident
                .destination_host
                .as_deref()
                .and_then(|h| facts.cluster_of(h))
        });
    put("cluster", cluster);
    out
}

/// The host a command runs against: the first host placeholder it uses.
fn target(command: &str, values: &BTreeMap<&'static str, String>) -> Option<String> {
    placeholders(command)
        .into_iter()
        .find(|p| *p == "source_host" || *p == "destination_host")
        .and_then(|p| values.get(p).cloned())
}

/// Whether a command moves the VM (the retry).
fn moves_the_vm(command: &str) -> bool {
    let lower = command.to_ascii_lowercase();
    lower.contains("move-clustervirtualmachinerole") || lower.contains("move-vm ")
}

/// The playbook a plan would use (for display before planning).
pub fn playbook_of<'a>(incident: &Incident, kb: &'a Knowledge) -> Option<&'a Playbook> {
    kb.get(&incident.remediation.playbook)
        .or_else(|| kb.get(&incident.root_cause))
}
