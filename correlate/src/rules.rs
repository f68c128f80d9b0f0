//! Loading rule files: Sigma detection rules, Sigma correlation rules with the
//! `relive:` extension, validation with file and line, and the event-id prefilter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parsers::{Event, Fields, Level};

use crate::detection::{CompileError, Detection};
use crate::yaml::{load_documents, Node, Value};
use crate::RuleError;

/// What a detection rule means to the engine besides being evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Plain evidence.
    Evidence,
    /// A failed migration (21502/21111/21024): opens an incident.
    Failure,
    /// A completed migration: closes the VM's open incidents.
    Success,
    /// Logged by the destination of a migration (HA 21306): names the
    /// destination host; context, not evidence.
    Destination,
}

/// A single-event Sigma rule.
#[derive(Debug, Clone)]
pub struct DetectionRule {
    /// `name:` (or the id when there is no name).
    pub name: String,
    /// `title:`.
    pub title: String,
    /// Failure, success or evidence.
    pub role: Role,
    /// Compiled `detection:`.
    pub detection: Detection,
    /// File it came from.
    pub file: PathBuf,
}

/// Correlation types relive evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrelationType {
    /// All (or `condition` many) referenced rules within the timespan.
    Temporal,
    /// The same, in the listed order.
    TemporalOrdered,
    /// Number of matching events within the timespan.
    EventCount,
}

/// `condition:` of a correlation: bounds on a count.
#[derive(Debug, Clone, Default)]
pub struct CountCondition {
    gt: Option<u64>,
    gte: Option<u64>,
    lt: Option<u64>,
    lte: Option<u64>,
    eq: Option<u64>,
    neq: Option<u64>,
}

impl CountCondition {
    /// Whether `n` satisfies every bound.
    pub fn holds(&self, n: u64) -> bool {
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
            && self.eq.is_none_or(|b| n == b)
            && self.neq.is_none_or(|b| n != b)
    }

    fn is_empty(&self) -> bool {
        self.gt.is_none()
            && self.gte.is_none()
            && self.lt.is_none()
            && self.lte.is_none()
            && self.eq.is_none()
            && self.neq.is_none()
    }
}

/// A root-cause chain: a Sigma correlation rule plus its `relive:` block.
#[derive(Debug, Clone)]
pub struct CauseRule {
    /// `title:`.
    pub title: String,
    /// Root-cause slug.
    pub root_cause: String,
    /// Confidence when every referenced rule matched.
    pub confidence: f64,
    /// Tie-breaker between causes with equal evidence.
    pub priority: i64,
    /// Playbook id.
    pub playbook: String,
    /// temporal, temporal_ordered or event_count.
    pub kind: CorrelationType,
    /// Referenced detection rules (indices into `RuleSet::detections`).
    pub rules: Vec<usize>,
    /// Rules that must be among the matched ones.
    pub requires: Vec<usize>,
    /// Evidence window around the failure.
    pub timespan: Duration,
    /// Count bounds; `None` means every referenced rule (temporal types).
    pub condition: Option<CountCondition>,
    /// File it came from.
    pub file: PathBuf,
    /// Sample events that must / must not match one of `rules`.
    pub tests: (Vec<Event>, Vec<Event>),
}

impl CauseRule {
    /// Whether `matched` distinct rules (or events, for event_count) satisfy the rule.
    pub fn satisfied(&self, matched: u64) -> bool {
        match &self.condition {
            Some(c) => c.holds(matched),
            None => matched as usize == self.rules.len(),
        }
    }
}

/// Every loaded rule, compiled and indexed.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Single-event rules.
    pub detections: Vec<DetectionRule>,
    /// Root-cause chains.
    pub causes: Vec<CauseRule>,
    by_event_id: HashMap<u32, Vec<usize>>,
    /// The same for ids below 65,536 (every Windows event id): one index.
    dense: Vec<Option<Box<[usize]>>>,
    any_event: Vec<usize>,
    /// For each detection rule, the causes that reference it.
    pub causes_of: Vec<Vec<usize>>,
    /// Longest timespan of any cause.
    pub max_timespan: Duration,
}

fn rule_err(path: &Path, line: usize, reason: impl Into<String>) -> RuleError {
    RuleError {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn from_compile(path: &Path, e: CompileError) -> RuleError {
    rule_err(path, e.line, e.reason)
}

const DETECTION_KEYS: &[&str] = &[
    "title",
    "id",
    "name",
    "status",
    "description",
    "references",
    "author",
    "date",
    "modified",
    "tags",
    "logsource",
    "detection",
    "fields",
    "falsepositives",
    "level",
    "related",
    "license",
    "taxonomy",
    "scope",
    "relive",
];
const CORRELATION_KEYS: &[&str] = &[
    "title",
    "id",
    "name",
    "status",
    "description",
    "references",
    "author",
    "date",
    "modified",
    "tags",
    "falsepositives",
    "level",
    "taxonomy",
    "generate",
    "correlation",
    "relive",
    "license",
];
const CORRELATION_BODY_KEYS: &[&str] = &[
    "type",
    "rules",
    "group-by",
    "timespan",
    "condition",
    "aliases",
    "generate",
];
const RELIVE_CAUSE_KEYS: &[&str] = &[
    "root_cause",
    "confidence",
    "priority",
    "playbook",
    "requires",
    "tests",
];

fn check_keys(path: &Path, node: &Node, allowed: &[&str], what: &str) -> Result<(), RuleError> {
    let entries = node.as_map().ok_or_else(|| {
        rule_err(
            path,
            node.line,
            format!("{what} must be a mapping, not {}", node.kind()),
        )
    })?;
    for (key, line, _) in entries {
        if !allowed.contains(&key.as_str()) {
            return Err(rule_err(
                path,
                *line,
                format!(
                    "unknown key `{key}` in {what} (allowed: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn text<'a>(path: &Path, node: &'a Node, key: &str) -> Result<Option<&'a str>, RuleError> {
    match node.get(key) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            rule_err(
                path,
                v.line,
                format!("`{key}` must be a text, not {}", v.kind()),
            )
        }),
    }
}

/// A rule's `timespan` (and `[correlate]` durations): relive's one
/// duration syntax, [`parsers::time::parse_span`] (`30s`, `2m`, `1h`, `1d`,
/// `2w`, `1h30m`).
pub fn parse_timespan(text: &str) -> Option<Duration> {
    parsers::time::parse_span(text).ok()
}

struct PendingCause {
    path: PathBuf,
    node: Node,
}

impl RuleSet {
    /// Loads every `*.yml` / `*.yaml` file under each folder (recursively) or file given.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, RuleError> {
        let mut files = Vec::new();
        for path in paths {
            collect(path, &mut files)?;
        }
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| rule_err(&file, 0, format!("cannot read: {e}")))?;
            sources.push((file, text));
        }
        RuleSet::from_sources(sources.iter().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// Builds a rule set from (path, YAML text) pairs.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::default();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut pending = Vec::new();
        for (path, text) in sources {
            let docs = load_documents(text).map_err(|e| rule_err(path, e.line, e.reason))?;
            for doc in docs {
                if doc.as_map().is_none() {
                    if doc.is_null() {
                        continue;
                    }
                    return Err(rule_err(
                        path,
                        doc.line,
                        "a rule document must be a mapping",
                    ));
                }
                if doc.get("correlation").is_some() {
                    pending.push(PendingCause {
                        path: path.to_path_buf(),
                        node: doc,
                    });
                    continue;
                }
                let rule = parse_detection(path, &doc)?;
                let index = set.detections.len();
                if let Some(id) = text_opt(&doc, "id") {
                    names.entry(id.to_string()).or_insert(index);
                }
                if names
                    .insert(rule.name.clone(), index)
                    .is_some_and(|prev| prev != index)
                {
                    return Err(rule_err(
                        path,
                        doc.get("name").map_or(doc.line, |n| n.line),
                        format!("rule name `{}` is defined twice", rule.name),
                    ));
                }
                set.detections.push(rule);
            }
        }
        for p in pending {
            let cause = parse_cause(&p.path, &p.node, &names, &set.detections)?;
            if set.causes.iter().any(|c| c.root_cause == cause.root_cause) {
                return Err(rule_err(
                    &p.path,
                    p.node.line,
                    format!(
                        "root cause `{}` has two correlation rules",
                        cause.root_cause
                    ),
                ));
            }
            set.causes.push(cause);
        }
        set.index();
        Ok(set)
    }

    fn index(&mut self) {
        self.by_event_id.clear();
        self.any_event.clear();
        for (i, rule) in self.detections.iter().enumerate() {
            match rule.detection.event_ids() {
                Some(ids) => {
                    for id in ids {
                        self.by_event_id.entry(id).or_default().push(i);
                    }
                }
                None => self.any_event.push(i),
            }
        }
        self.dense = vec![None; 1 << 16];
        for (&id, rules) in &self.by_event_id {
            if let Some(slot) = self.dense.get_mut(id as usize) {
                *slot = Some(rules.clone().into_boxed_slice());
            }
        }
        self.causes_of = vec![Vec::new(); self.detections.len()];
        for (c, cause) in self.causes.iter().enumerate() {
            for &r in &cause.rules {
                self.causes_of[r].push(c);
            }
        }
        self.max_timespan = self
            .causes
            .iter()
            .map(|c| c.timespan)
            .max()
            .unwrap_or(Duration::from_secs(120));
    }

    /// Indices of the detection rules the event satisfies, found through the
    /// event-id prefilter (so the cost does not grow with the rule count).
    pub fn matching(&self, event: &Event, out: &mut Vec<usize>) {
        out.clear();
        let candidates = match self.dense.get(event.event_id as usize) {
            Some(slot) => slot.as_deref(),
            None => self.by_event_id.get(&event.event_id).map(Vec::as_slice),
        };
        if candidates.is_none() && self.any_event.is_empty() {
            return;
        }
        let view = crate::detection::EventView::new(event);
        for &i in candidates.unwrap_or_default().iter().chain(&self.any_event) {
            if self.detections[i].detection.matches_view(&view) {
                out.push(i);
            }
        }
    }

    /// Whether the event is a failed migration attempt: some rule with the
    /// `failure` role matches it. Every such event ends up in exactly one
    /// incident's evidence (`unknown` at worst).
    pub fn is_failure(&self, event: &Event) -> bool {
        let mut matched = Vec::new();
        self.matching(event, &mut matched);
        matched
            .iter()
            .any(|&r| self.detections[r].role == Role::Failure)
    }

    /// Names of the rules with the `failure` role.
    pub fn failure_rules(&self) -> impl Iterator<Item = &str> {
        self.detections
            .iter()
            .filter(|d| d.role == Role::Failure)
            .map(|d| d.name.as_str())
    }

    /// Event ids any rule can match; `None` when some rule matches any id.
    pub fn event_ids(&self) -> Option<Vec<u32>> {
        if !self.any_event.is_empty() {
            return None;
        }
        let mut ids: Vec<u32> = self.by_event_id.keys().copied().collect();
        ids.sort_unstable();
        Some(ids)
    }

    /// Runs each cause's `tests:` samples; returns one line per failure.
    pub fn self_test(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for cause in &self.causes {
            let hits = |e: &Event| {
                cause
                    .rules
                    .iter()
                    .any(|&r| self.detections[r].detection.matches(e))
            };
            for (i, e) in cause.tests.0.iter().enumerate() {
                if !hits(e) {
                    problems.push(format!(
                        "{}: positive test {} matches none of its rules",
                        cause.root_cause,
                        i + 1
                    ));
                }
            }
            for (i, e) in cause.tests.1.iter().enumerate() {
                if hits(e) {
                    problems.push(format!(
                        "{}: negative test {} matches one of its rules",
                        cause.root_cause,
                        i + 1
                    ));
                }
            }
        }
        problems
    }
}

fn text_opt<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.get(key).and_then(Node::as_str)
}

/// Every `*.yml` / `*.yaml` under a folder (recursively), or the file itself.
pub(crate) fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), RuleError> {
    let meta =
        std::fs::metadata(path).map_err(|e| rule_err(path, 0, format!("cannot read: {e}")))?;
    if meta.is_file() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| rule_err(path, 0, format!("cannot list: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| rule_err(path, 0, format!("cannot list: {e}")))?;
        let p = entry.path();
        if p.is_dir() {
            collect(&p, files)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            files.push(p);
        }
    }
    Ok(())
}

fn parse_detection(path: &Path, doc: &Node) -> Result<DetectionRule, RuleError> {
    check_keys(path, doc, DETECTION_KEYS, "a detection rule")?;
    let title = text(path, doc, "title")?
        .ok_or_else(|| rule_err(path, doc.line, "a rule needs a `title`"))?
        .to_string();
    let name = text(path, doc, "name")?
        .or(text(path, doc, "id")?)
        .ok_or_else(|| {
            rule_err(
                path,
                doc.line,
                format!("rule `{title}` needs a `name` (or `id`) to be referenced"),
            )
        })?
        .to_string();
    let detection_node = doc
        .get("detection")
        .ok_or_else(|| rule_err(path, doc.line, format!("rule `{name}` has no `detection`")))?;
    let detection = Detection::compile(detection_node).map_err(|e| from_compile(path, e))?;
    let mut role = Role::Evidence;
    if let Some(relive) = doc.get("relive") {
        check_keys(
            path,
            relive,
            &["role"],
            "the `relive` block of a detection rule",
        )?;
        if let Some(r) = relive.get("role") {
            role = match r.as_str() {
                Some("failure") => Role::Failure,
                Some("success") => Role::Success,
                Some("evidence") => Role::Evidence,
                Some("destination") => Role::Destination,
                _ => {
                    return Err(rule_err(
                        path,
                        r.line,
                        "`role` is failure, success, destination or evidence",
                    ))
                }
            };
        }
    }
    Ok(DetectionRule {
        name,
        title,
        role,
        detection,
        file: path.to_path_buf(),
    })
}

fn parse_cause(
    path: &Path,
    doc: &Node,
    names: &HashMap<String, usize>,
    detections: &[DetectionRule],
) -> Result<CauseRule, RuleError> {
    check_keys(path, doc, CORRELATION_KEYS, "a correlation rule")?;
    let title = text(path, doc, "title")?
        .ok_or_else(|| rule_err(path, doc.line, "a correlation rule needs a `title`"))?
        .to_string();
    let body = doc.get("correlation").expect("checked by the caller");
    check_keys(path, body, CORRELATION_BODY_KEYS, "`correlation`")?;
    let kind_node = body
        .get("type")
        .ok_or_else(|| rule_err(path, body.line, "`correlation` needs a `type`"))?;
    let kind = match kind_node.as_str() {
        Some("temporal") => CorrelationType::Temporal,
        Some("temporal_ordered") => CorrelationType::TemporalOrdered,
        Some("event_count") => CorrelationType::EventCount,
        Some(other) => {
            return Err(rule_err(
                path,
                kind_node.line,
                format!("correlation type `{other}` is not supported (temporal, temporal_ordered, event_count)"),
            ))
        }
        None => return Err(rule_err(path, kind_node.line, "`type` must be a text")),
    };
    let rules_node = body
        .get("rules")
        .ok_or_else(|| rule_err(path, body.line, "`correlation` needs `rules`"))?;
    let resolve = |node: &Node| -> Result<usize, RuleError> {
        let name = node
            .as_str()
            .ok_or_else(|| rule_err(path, node.line, "a rule reference is a name or id"))?;
        names.get(name).copied().ok_or_else(|| {
            rule_err(
                path,
                node.line,
                format!("rule `{name}` is referenced but not defined in any loaded file"),
            )
        })
    };
    let rules = list(path, rules_node, "rules")?
        .into_iter()
        .map(resolve)
        .collect::<Result<Vec<_>, _>>()?;
    if rules.is_empty() {
        return Err(rule_err(path, rules_node.line, "`rules` is empty"));
    }
    if let Some(group) = body.get("group-by") {
        for g in list(path, group, "group-by")? {
            match g.as_str() {
                Some("vm") => {}
                other => {
                    return Err(rule_err(
                        path,
                        g.line,
                        format!("group-by `{}` is not supported: relive groups by `vm` (VM id, else VM name, else host)", other.unwrap_or("?")),
                    ))
                }
            }
        }
    } else if kind != CorrelationType::EventCount {
        return Err(rule_err(
            path,
            body.line,
            "`correlation` needs `group-by: [vm]`",
        ));
    }
    if let Some(aliases) = body.get("aliases") {
        // relive derives the `vm` key itself (VM id, else name, else host),
        // so an alias may only say which normalized field a rule carries it in.
        let entries = aliases
            .as_map()
            .ok_or_else(|| rule_err(path, aliases.line, "`aliases` must be a mapping"))?;
        for (alias, line, per_rule) in entries {
            if alias != "vm" {
                return Err(rule_err(
                    path,
                    *line,
                    format!("alias `{alias}` is not in `group-by`"),
                ));
            }
            let map = per_rule.as_map().ok_or_else(|| {
                rule_err(path, per_rule.line, "an alias maps rule names to fields")
            })?;
            for (rule, line, field) in map {
                let known = names.get(rule).is_some_and(|i| rules.contains(i));
                if !known {
                    return Err(rule_err(
                        path,
                        *line,
                        format!("alias `vm` names rule `{rule}`, which is not in `rules`"),
                    ));
                }
                match field.as_str() {
                    Some("VmId" | "VmName" | "vm_id" | "vm_name" | "relive.vm_id") => {}
                    _ => {
                        return Err(rule_err(
                            path,
                            field.line,
                            "the `vm` alias can map to VmId or VmName (relive normalizes both)",
                        ))
                    }
                }
            }
        }
    }
    let span_node = body
        .get("timespan")
        .ok_or_else(|| rule_err(path, body.line, "`correlation` needs a `timespan`"))?;
    let timespan = span_node.as_str().and_then(parse_timespan).ok_or_else(|| {
        rule_err(
            path,
            span_node.line,
            "`timespan` is a number and a unit: 30s, 2m, 1h, 1d",
        )
    })?;
    let condition = match body.get("condition") {
        None if kind == CorrelationType::EventCount => {
            return Err(rule_err(
                path,
                body.line,
                "an event_count correlation needs a `condition`",
            ))
        }
        None => None,
        Some(c) => Some(parse_count_condition(path, c)?),
    };
    let relive = doc
        .get("relive")
        .ok_or_else(|| rule_err(path, doc.line, "a root-cause correlation needs a `relive:` block (root_cause, confidence, priority, playbook)"))?;
    check_keys(path, relive, RELIVE_CAUSE_KEYS, "the `relive` block")?;
    let root_cause = text(path, relive, "root_cause")?
        .ok_or_else(|| rule_err(path, relive.line, "`relive` needs `root_cause`"))?
        .to_string();
    if root_cause.is_empty()
        || !root_cause
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(rule_err(
            path,
            relive.line,
            format!("root cause `{root_cause}` is not a slug (a-z, 0-9, -)"),
        ));
    }
    let number = |key: &str| -> Result<Option<(f64, usize)>, RuleError> {
        match relive.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|t| t.parse::<f64>().ok())
                .map(|n| Some((n, v.line)))
                .ok_or_else(|| rule_err(path, v.line, format!("`{key}` must be a number"))),
        }
    };
    let confidence = match number("confidence")? {
        None => 0.8,
        Some((c, _)) if (0.0..=1.0).contains(&c) => c,
        Some((_, line)) => return Err(rule_err(path, line, "`confidence` is between 0 and 1")),
    };
    let priority = number("priority")?.map_or(0, |(p, _)| p as i64);
    let playbook = text(path, relive, "playbook")?
        .unwrap_or(&root_cause)
        .to_string();
    let mut requires = Vec::new();
    if let Some(req) = relive.get("requires") {
        for r in list(path, req, "requires")? {
            let i = resolve(r)?;
            if !rules.contains(&i) {
                return Err(rule_err(
                    path,
                    r.line,
                    format!(
                        "`requires` names `{}`, which is not in `rules`",
                        detections[i].name
                    ),
                ));
            }
            requires.push(i);
        }
    }
    let mut tests = (Vec::new(), Vec::new());
    if let Some(t) = relive.get("tests") {
        check_keys(path, t, &["positive", "negative"], "`tests`")?;
        if let Some(p) = t.get("positive") {
            tests.0 = list(path, p, "positive")?
                .iter()
                .map(|e| sample_event(path, e))
                .collect::<Result<_, _>>()?;
        }
        if let Some(n) = t.get("negative") {
            tests.1 = list(path, n, "negative")?
                .iter()
                .map(|e| sample_event(path, e))
                .collect::<Result<_, _>>()?;
        }
    }
    Ok(CauseRule {
        title,
        root_cause,
        confidence,
        priority,
        playbook,
        kind,
        rules,
        requires,
        timespan,
        condition,
        file: path.to_path_buf(),
        tests,
    })
}

fn list<'a>(path: &Path, node: &'a Node, key: &str) -> Result<Vec<&'a Node>, RuleError> {
    match &node.value {
        Value::Seq(items) => Ok(items.iter().collect()),
        Value::Scalar { .. } => Ok(vec![node]),
        Value::Map(_) => Err(rule_err(path, node.line, format!("`{key}` must be a list"))),
    }
}

fn parse_count_condition(path: &Path, node: &Node) -> Result<CountCondition, RuleError> {
    check_keys(
        path,
        node,
        &["gt", "gte", "lt", "lte", "eq", "neq", "field"],
        "`condition`",
    )?;
    let mut c = CountCondition::default();
    for (key, line, value) in node.as_map().expect("checked") {
        if key == "field" {
            return Err(rule_err(
                path,
                *line,
                "`field` belongs to value_* correlations, which relive does not evaluate",
            ));
        }
        let n = value
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| rule_err(path, value.line, format!("`{key}` must be a whole number")))?;
        let slot = match key.as_str() {
            "gt" => &mut c.gt,
            "gte" => &mut c.gte,
            "lt" => &mut c.lt,
            "lte" => &mut c.lte,
            "eq" => &mut c.eq,
            _ => &mut c.neq,
        };
        *slot = Some(n);
    }
    if c.is_empty() {
        return Err(rule_err(path, node.line, "`condition` is empty"));
    }
    Ok(c)
}

/// A `tests:` sample: a flat map of rule field names to values, made into an `Event`.
fn sample_event(path: &Path, node: &Node) -> Result<Event, RuleError> {
    let entries = node
        .as_map()
        .ok_or_else(|| rule_err(path, node.line, "a test event is a mapping of field: value"))?;
    let mut event = Event {
        data: Fields::new(),
        ..Event::default()
    };
    for (key, line, value) in entries {
        let v = value
            .as_str()
            .ok_or_else(|| rule_err(path, value.line, "a test value is a scalar"))?;
        match key.as_str() {
            "EventID" => {
                event.event_id = v
                    .parse()
                    .map_err(|_| rule_err(path, *line, format!("`{v}` is not an event id")))?
            }
            "Provider_Name" => event.provider = v.into(),
            "Channel" => event.channel = v.into(),
            "Computer" => event.host = v.into(),
            "Level" => event.level = Level::parse(v).unwrap_or_default(),
            "Message" => event.message = v.to_string(),
            "VmId" => event.vm_id = Some(v.into()),
            "VmName" => event.vm_name = Some(v.into()),
            "Hresult" => event.hresult = Some(v.into()),
            other => event.data.push(other.to_string(), v.to_string()),
        }
    }
    if event.vm_id.is_none() || event.hresult.is_none() || event.vm_name.is_none() {
        parsers::extract::enrich(&mut event);
    }
    Ok(event)
}
