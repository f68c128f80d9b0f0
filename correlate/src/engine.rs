//! The streaming matcher: events in (any order within the lateness bound),
//! incidents out.
//!
//! Events that no rule matches cost one hash lookup and are dropped. Matched
//! events wait in a reorder buffer until the watermark (the newest time seen,
//! minus the lateness bound) passes them, then join the group of their VM.
//! A failure signal starts an attempt; the attempt is decided when the chain
//! of a cause is complete, or when the watermark passes the failure plus the
//! settle time, and decided again whenever late evidence arrives while its
//! window is open. Decisions are emitted as whole `Incident` snapshots with
//! stable ids, so consumers upsert.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use compact_str::CompactString;
use parsers::extract::strip_resource_prefix;
use parsers::Event;

use crate::incident::{
    Alternative, Evidence, EvidenceOrigin, Incident, LookalikeNote, Remediation, Status,
};
use crate::kb::{fill, Knowledge};
use crate::rules::{CauseRule, CorrelationType, Role, RuleSet};

/// Timing knobs of the engine. In TOML (`[correlate]` of relive.toml) each
/// is a duration text such as `"60s"` or `"1h"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How late (in event time) an event may arrive and still be ordered.
    #[serde(deserialize_with = "duration")]
    pub lateness: Duration,
    /// How long after a failure the engine waits for the rest of its chain
    /// before deciding, unless a chain is already complete.
    #[serde(deserialize_with = "duration")]
    pub settle: Duration,
    /// Failures of the same VM and cause within this window fold into one incident.
    #[serde(deserialize_with = "duration")]
    pub fold_window: Duration,
    /// Failure signals further apart than this are separate attempts.
    #[serde(deserialize_with = "duration")]
    pub attempt_gap: Duration,
    /// Evidence events kept per incident.
    pub max_evidence: usize,
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    crate::rules::parse_timespan(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("`{text}` is not a duration like 30s, 2m, 1h"))
    })
}

impl Default for Config {
    fn default() -> Config {
        Config {
            lateness: Duration::from_secs(60),
            settle: Duration::from_secs(10),
            fold_window: Duration::from_secs(3600),
            attempt_gap: Duration::from_secs(30),
            max_evidence: 200,
        }
    }
}

/// Counters for the summary and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events pushed.
    pub events: u64,
    /// Events some rule matched.
    pub matched: u64,
    /// Matched events that arrived after their lateness bound.
    pub late: u64,
    /// Duplicate deliveries dropped.
    pub duplicates: u64,
    /// Decisions made (including re-decisions).
    pub decisions: u64,
}

/// A matched event as the engine keeps it.
#[derive(Debug, Clone)]
struct Matched {
    ts: DateTime<Utc>,
    /// [`parsers::dedup::record_key`].
    record: Option<u64>,
    /// The count of matched events when this one arrived.
    arrival: u64,
    host: CompactString,
    rules: Vec<usize>,
    content: u64,
    src_named: Option<CompactString>,
    dst_named: Option<CompactString>,
    evidence: Evidence,
}

#[derive(Debug)]
struct Pending {
    ts: DateTime<Utc>,
    seq: u64,
    event: Event,
    rules: Vec<usize>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}

#[derive(Debug, Clone)]
struct Attempt {
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    deadline: DateTime<Utc>,
    decided: bool,
    dirty: bool,
    incident: Option<String>,
    /// When a success last resolved the VM's incidents: what came before
    /// belongs to the attempts that success ended, never to this one.
    floor: Option<DateTime<Utc>>,
}

impl Attempt {
    /// The earliest event time that belongs to this attempt, `span` before
    /// its first failure but after the success that ended the last one.
    fn lo(&self, span: TimeDelta) -> DateTime<Utc> {
        let lo = self.first - span;
        match self.floor {
            Some(f) if f >= lo => f + TimeDelta::microseconds(1),
            _ => lo,
        }
    }
}

/// Which deliveries were seen ([`parsers::dedup`]): by record key where
/// there is one (with the content key and richness of the copy kept), and
/// by content key, which joins a copy without a record id (an Event Viewer
/// paste) to the exported record.
#[derive(Debug, Default)]
struct Seen {
    records: HashMap<u64, (u64, u32)>,
    /// Content key -> whether the copy kept has a record id.
    content: HashMap<u64, bool>,
}

enum Admit {
    New,
    Duplicate,
    /// New, and better than the record-less copy with this content key.
    Replaces(u64),
}

impl Seen {
    /// Whether a copy with these keys is new, a duplicate, or a better
    /// copy of one kept (richer: see [`parsers::dedup::richness`]), so the
    /// copy kept does not depend on the order copies arrive in.
    fn admit(&mut self, record: Option<u64>, content: u64, rich: u32) -> Admit {
        match record {
            Some(r) => {
                if let Some(&(kept_content, kept_rich)) = self.records.get(&r) {
                    if rich <= kept_rich {
                        return Admit::Duplicate;
                    }
                    self.records.insert(r, (content, rich));
                    self.content.insert(content, true);
                    return Admit::Replaces(kept_content);
                }
                self.records.insert(r, (content, rich));
                match self.content.insert(content, true) {
                    Some(false) => Admit::Replaces(content),
                    _ => Admit::New,
                }
            }
            None => {
                if self.content.contains_key(&content) {
                    return Admit::Duplicate;
                }
                self.content.insert(content, false);
                Admit::New
            }
        }
    }

    fn extend(&mut self, other: Seen) {
        self.records.extend(other.records);
        for (k, v) in other.content {
            let slot = self.content.entry(k).or_insert(v);
            *slot |= v;
        }
    }

    fn clear(&mut self) {
        self.records.clear();
        self.content.clear();
    }
}

#[derive(Debug, Default)]
struct Group {
    vm_id: Option<CompactString>,
    vm_name: Option<CompactString>,
    events: VecDeque<Matched>,
    seen: Seen,
    attempt: Option<Attempt>,
    incidents: Vec<Incident>,
    last_ts: Option<DateTime<Utc>>,
    /// The count of matched events when this group last received one.
    touched: u64,
    /// The time of the success that last resolved incidents of this VM.
    resolved_at: Option<DateTime<Utc>>,
}

/// Provider of the host facts event relive's hosts write (`hostlog`):
/// a fact in the evidence settles a look-alike.
const HOST_FACTS_PROVIDER: &str = "relive-hostfacts";

/// Arrivals behind the watermark are held until none has come for a while
/// on the watermark's clock (this long when some are later than the settle
/// time: a folder of old exports, a host cut off for minutes; the lateness
/// bound, 250 ms live, when all are a shipper's delay of seconds), or for
/// the settle time since the first, then used in time order: a backfill
/// that arrives file by file, in any order, is correlated as one ordered
/// pass over its files would be.
const LATE_QUIET: Duration = Duration::from_secs(1);

/// One VM id a name had, between two event times.
#[derive(Debug, Clone)]
struct NameSeen {
    id_key: CompactString,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// Ids remembered per VM name (the least recently seen is forgotten).
const IDS_PER_NAME: usize = 16;

/// Groups and host evidence that received one of the last this many matched
/// events are kept whatever their event time, so files backfilled out of
/// time order (a folder of last month's exports) still meet their context
/// and update their incidents, as `relive ingest` of the same files would.
const RECENT_MATCHED: u64 = 100_000;

/// The correlation engine.
pub struct Correlator {
    rules: Arc<RuleSet>,
    kb: Arc<Knowledge>,
    cfg: Config,
    heap: BinaryHeap<Reverse<Pending>>,
    /// Matched events that arrived behind the watermark, held until such
    /// arrivals pause and then processed in time order (see [`LATE_QUIET`]).
    late: Vec<Pending>,
    /// The watermark when the first and the last of `late` arrived.
    late_window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Some of `late` is later than the settle time (a backfill).
    late_far: bool,
    seq: u64,
    newest: Option<DateTime<Utc>>,
    clock: Option<DateTime<Utc>>,
    groups: HashMap<CompactString, Group>,
    /// VM name → the ids it had and when (names repeat across clusters
    /// and years; an event with the name alone joins the id nearest in time).
    names: HashMap<CompactString, Vec<NameSeen>>,
    pool: VecDeque<Matched>,
    pool_seen: Seen,
    active: HashSet<CompactString>,
    /// Deadlines and expiries of attempts, earliest first (stale entries are skipped).
    schedule: BinaryHeap<Reverse<(DateTime<Utc>, CompactString)>>,
    /// Decided attempts that got new evidence.
    dirty: HashSet<CompactString>,
    /// Open attempts by the time of their first failure (for host-level evidence).
    by_time: BTreeSet<(DateTime<Utc>, CompactString)>,
    updates: Vec<Incident>,
    /// Root cause -> recent failures (first failure time, VM key).
    recent: HashMap<String, VecDeque<(DateTime<Utc>, u64, CompactString)>>,
    scratch: Vec<usize>,
    last_sweep: Option<DateTime<Utc>>,
    stats: Stats,
}

fn td(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Correlator {
    /// An engine over the given rules and knowledge base.
    pub fn new(rules: Arc<RuleSet>, kb: Arc<Knowledge>, cfg: Config) -> Correlator {
        Correlator {
            rules,
            kb,
            cfg,
            heap: BinaryHeap::new(),
            late: Vec::new(),
            late_window: None,
            late_far: false,
            seq: 0,
            newest: None,
            clock: None,
            groups: HashMap::new(),
            names: HashMap::new(),
            pool: VecDeque::new(),
            pool_seen: Seen::default(),
            active: HashSet::new(),
            schedule: BinaryHeap::new(),
            dirty: HashSet::new(),
            by_time: BTreeSet::new(),
            updates: Vec::new(),
            recent: HashMap::new(),
            scratch: Vec::new(),
            last_sweep: None,
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of VM groups held in memory.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Feeds one event. Incidents it completes are returned by `drain`.
    pub fn push(&mut self, event: Event) {
        self.stats.events += 1;
        let ts = event.timestamp;
        let mut matched = std::mem::take(&mut self.scratch);
        self.rules.matching(&event, &mut matched);
        if !matched.is_empty() {
            self.stats.matched += 1;
            let bound = self.clock;
            if let Some(c) = bound.filter(|c| ts < *c) {
                // Later than the lateness bound: held with the other late
                // arrivals and used in time order once they pause.
                self.stats.late += 1;
                self.late_far |= ts < c - td(self.cfg.settle);
                self.seq += 1;
                self.late.push(Pending {
                    ts,
                    seq: self.seq,
                    event,
                    rules: matched.clone(),
                });
                self.late_window = Some(self.late_window.map_or((c, c), |(f, _)| (f, c)));
            } else {
                self.seq += 1;
                self.heap.push(Reverse(Pending {
                    ts,
                    seq: self.seq,
                    event,
                    rules: matched.clone(),
                }));
            }
        }
        matched.clear();
        self.scratch = matched;
        if self.newest.is_none_or(|n| ts > n) {
            self.newest = Some(ts);
            let clock = ts - td(self.cfg.lateness);
            self.advance(clock);
        }
    }

    /// Moves the watermark to `watermark` when that is later than where it
    /// is: buffered events up to it are processed and attempts whose settle
    /// time it passes are decided, with no event needed (a clock drives the
    /// engine through this between events).
    pub fn advance_to(&mut self, watermark: DateTime<Utc>) {
        if self.clock.is_some_and(|c| watermark <= c) {
            return;
        }
        self.advance(watermark);
    }

    /// The newest event time pushed so far.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    /// The timing knobs in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// How far around an event its incident can reach: folding, the longest
    /// chain and the lateness bound (what a warm-up must read back).
    pub fn reach(&self) -> Duration {
        self.cfg.fold_window + self.rules.max_timespan + self.cfg.lateness
    }

    /// The longest timespan of any cause.
    pub fn max_timespan(&self) -> Duration {
        self.rules.max_timespan
    }

    /// The event ids any rule looks at (`None`: some rule looks at any).
    pub fn event_ids(&self) -> Option<Vec<u32>> {
        self.rules.event_ids()
    }

    /// Treats every buffered event as on time and decides every open attempt
    /// (end of a batch, or shutdown).
    pub fn flush(&mut self) {
        self.advance(DateTime::<Utc>::MAX_UTC);
        self.clock = self.newest.map(|n| n - td(self.cfg.lateness));
    }

    /// Incident snapshots produced since the last call (upsert them by id).
    pub fn drain(&mut self) -> Vec<Incident> {
        let mut out = std::mem::take(&mut self.updates);
        // Keep the last snapshot of each id.
        let mut seen = HashSet::new();
        out.reverse();
        out.retain(|i| seen.insert(i.id.clone()));
        out.reverse();
        out
    }

    fn advance(&mut self, clock: DateTime<Utc>) {
        if let Some((first, last)) = self.late_window {
            // A shipper's delay waits one lateness bound; a backfill a second.
            let quiet = if self.late_far {
                td(LATE_QUIET)
            } else {
                td(self.cfg.lateness)
            };
            if clock >= last + quiet || clock >= first + td(self.cfg.settle) {
                self.release_late();
            }
        }
        while let Some(Reverse(top)) = self.heap.peek() {
            if top.ts > clock {
                break;
            }
            let Reverse(p) = self.heap.pop().expect("peeked");
            self.clock = Some(p.ts);
            self.process(p.event, p.rules);
            self.decide_due(p.ts);
        }
        if clock != DateTime::<Utc>::MAX_UTC {
            self.clock = Some(self.clock.map_or(clock, |c| c.max(clock)));
        }
        self.decide_due(clock);
        if self
            .last_sweep
            .is_none_or(|s| clock - s > TimeDelta::seconds(60))
        {
            self.sweep(clock);
            self.last_sweep = Some(clock);
        }
    }

    /// Processes the late arrivals held so far, in time order.
    fn release_late(&mut self) {
        self.late_window = None;
        self.late_far = false;
        let mut late = std::mem::take(&mut self.late);
        late.sort_by_key(|p| (p.ts, p.seq));
        for p in late {
            let ts = p.ts;
            self.process(p.event, p.rules);
            // What is due by this event's time, as in an ordered pass.
            self.decide_due(ts);
        }
    }

    /// The group key of an event: its VM id; else its VM name, joined to the
    /// id that name had in events near in time (VM names repeat across
    /// clusters and years, ids do not).
    fn key_of(&mut self, event: &Event) -> Option<CompactString> {
        let name = event
            .vm_name
            .as_deref()
            .map(strip_resource_prefix)
            .filter(|n| !n.is_empty())
            .map(|n| CompactString::from(n.to_lowercase()));
        let ts = event.timestamp;
        let window = td(self.cfg.fold_window);
        if let Some(id) = event.vm_id.as_deref() {
            let id_key = CompactString::from(format!("id:{}", id.to_ascii_uppercase()));
            if let Some(name) = name {
                let seen = self.names.entry(name.clone()).or_default();
                match seen.iter_mut().find(|s| s.id_key == id_key) {
                    Some(s) => {
                        s.first = s.first.min(ts);
                        s.last = s.last.max(ts);
                    }
                    None => {
                        if seen.len() >= IDS_PER_NAME {
                            seen.sort_by_key(|s| std::cmp::Reverse(s.last));
                            seen.truncate(IDS_PER_NAME - 1);
                        }
                        seen.push(NameSeen {
                            id_key: id_key.clone(),
                            first: ts,
                            last: ts,
                        });
                    }
                }
                // Events seen under the name alone join the id's group.
                let name_key = CompactString::from(format!("name:{name}"));
                let near = self
                    .groups
                    .get(&name_key)
                    .and_then(|g| g.last_ts)
                    .is_some_and(|t| (t - ts).abs() <= window);
                if near {
                    let old = self.groups.remove(&name_key).expect("checked");
                    self.active.remove(&name_key);
                    let moved = old.attempt.clone();
                    let target = self.groups.entry(id_key.clone()).or_default();
                    merge(target, old);
                    if let Some(a) = moved {
                        self.by_time.remove(&(a.first, name_key));
                        if let Some(kept) = target.attempt.clone() {
                            self.track(&id_key, &kept);
                        }
                    }
                }
            }
            return Some(id_key);
        }
        let name = name?;
        // The id this name had nearest in time, within the fold window.
        let distance = |s: &NameSeen| {
            if ts < s.first {
                s.first - ts
            } else if ts > s.last {
                ts - s.last
            } else {
                TimeDelta::zero()
            }
        };
        let nearest = self.names.get(&name).and_then(|seen| {
            seen.iter()
                .filter(|s| distance(s) <= window)
                .min_by_key(|s| distance(s))
        });
        match nearest {
            Some(s) => Some(s.id_key.clone()),
            None => Some(CompactString::from(format!("name:{name}"))),
        }
    }

    fn process(&mut self, event: Event, rules: Vec<usize>) {
        let roles: Vec<Role> = rules
            .iter()
            .map(|&r| self.rules.detections[r].role)
            .collect();
        // A failure that names no VM is still a failed migration: it opens
        // an attempt of its host's own (an incident for "a VM"), never
        // host-level evidence only, so no failure goes without an incident.
        let key = self.key_of(&event).or_else(|| {
            roles
                .contains(&Role::Failure)
                .then(|| CompactString::from(format!("host:{}", event.short_host().to_lowercase())))
        });
        let record = parsers::dedup::record_key(&event);
        let content = parsers::dedup::content_key(&event);
        let rich = parsers::dedup::richness(&event);
        let m = self.to_matched(&event, rules, content);
        let Some(key) = key else {
            match self.pool_seen.admit(record, content, rich) {
                Admit::Duplicate => {
                    self.stats.duplicates += 1;
                    return;
                }
                Admit::Replaces(c) => self.pool.retain(|p| p.content != c),
                Admit::New => {}
            }
            // Host-level evidence: re-decide attempts on that host.
            let host = m.host.clone();
            let ts = m.ts;
            self.pool.push_back(m);
            let span = td(self.rules.max_timespan);
            let reach = span + td(self.cfg.fold_window);
            let near: Vec<CompactString> = self
                .by_time
                .range((ts - reach, CompactString::default())..)
                .take_while(|(first, _)| *first <= ts + span)
                .map(|(_, k)| k.clone())
                .collect();
            for k in near {
                if let Some(g) = self.groups.get_mut(&k) {
                    let hit = g
                        .attempt
                        .as_ref()
                        .is_some_and(|a| ts >= a.lo(span) && ts <= a.last + span);
                    if hit && group_hosts(g).iter().any(|h| h.eq_ignore_ascii_case(&host)) {
                        if let Some(a) = g.attempt.as_mut() {
                            a.dirty = true;
                            if a.decided {
                                self.dirty.insert(k);
                            }
                        }
                    }
                }
            }
            return;
        };
        let arrival = self.stats.matched;
        let group = self.groups.entry(key.clone()).or_default();
        group.touched = arrival;
        match group.seen.admit(record, content, rich) {
            Admit::Duplicate => {
                self.stats.duplicates += 1;
                return;
            }
            Admit::Replaces(c) => group.events.retain(|p| p.content != c),
            Admit::New => {}
        }
        if group.vm_id.is_none() {
            group.vm_id = event
                .vm_id
                .as_deref()
                .map(|v| v.to_ascii_uppercase().into());
        }
        if group.vm_name.is_none() {
            group.vm_name = event
                .vm_name
                .as_deref()
                .map(|n| CompactString::from(strip_resource_prefix(n)));
        }
        let ts = m.ts;
        group.last_ts = Some(group.last_ts.map_or(ts, |l| l.max(ts)));
        let failure = roles.contains(&Role::Failure);
        let success = roles.contains(&Role::Success);
        let slow = success && event.event_id == 20417;
        let matched_rules = m.rules.clone();
        insert_sorted(&mut group.events, m);
        while group.events.len() > 4 * self.cfg.max_evidence {
            group.events.pop_front();
        }
        if failure {
            let gap = td(self.cfg.attempt_gap);
            let settle = td(self.cfg.settle);
            let continues = group
                .attempt
                .as_ref()
                .is_some_and(|a| ts <= a.last + gap && ts >= a.lo(gap));
            if continues {
                let a = group.attempt.as_mut().expect("checked");
                a.last = a.last.max(ts);
                a.dirty = true;
                if a.decided {
                    self.dirty.insert(key.clone());
                } else if ts < a.first {
                    // An earlier failure arrived late: the attempt (and the
                    // id it will get) starts there, as in time order.
                    self.by_time.remove(&(a.first, key.clone()));
                    a.first = ts;
                    self.by_time.insert((ts, key.clone()));
                }
            } else {
                if group.attempt.as_ref().is_some_and(|a| !a.decided) {
                    self.decide(&key);
                }
                let group = self.groups.get_mut(&key).expect("exists");
                let attempt = Attempt {
                    first: ts,
                    last: ts,
                    deadline: ts + settle,
                    decided: false,
                    dirty: false,
                    incident: None,
                    floor: group.resolved_at.filter(|r| *r < ts),
                };
                if let Some(old) = group.attempt.replace(attempt.clone()) {
                    self.by_time.remove(&(old.first, key.clone()));
                }
                self.track(&key, &attempt);
            }
        } else if let Some(a) = group.attempt.as_mut() {
            let span = td(self.rules.max_timespan);
            if ts >= a.lo(span) && ts <= a.last + span {
                a.dirty = true;
                if a.decided {
                    self.dirty.insert(key.clone());
                }
            }
        }
        if success {
            self.resolve(&key, ts, &event, slow);
            return;
        }
        let complete = self
            .groups
            .get(&key)
            .and_then(|g| g.attempt.as_ref())
            .is_some_and(|a| !a.decided)
            && self.chain_complete(&key, &matched_rules);
        if complete {
            self.decide(&key);
        }
    }

    fn to_matched(&self, event: &Event, rules: Vec<usize>, content: u64) -> Matched {
        let rule_name = rules
            .iter()
            .map(|&r| self.rules.detections[r].name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut message = truncate(&event.message, 2000).to_string();
        if message.is_empty() {
            message = event
                .data
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            message = truncate(&message, 2000).to_string();
        }
        let (src_named, dst_named) = hosts_named(&event.message, event);
        Matched {
            ts: event.timestamp,
            record: parsers::dedup::record_key(event),
            arrival: self.stats.matched,
            host: CompactString::from(event.short_host()),
            rules,
            content,
            src_named,
            dst_named,
            evidence: Evidence {
                timestamp: event.timestamp,
                host: event.host.to_string(),
                channel: event.channel.to_string(),
                provider: event.provider.to_string(),
                event_id: event.event_id,
                level: event.level.as_str().to_string(),
                record_id: event.record_id,
                hresult: event.hresult.as_deref().map(str::to_string),
                message,
                rule: rule_name,
                origin: EvidenceOrigin {
                    path: event.origin.path.clone(),
                    offset: event.origin.offset,
                },
            },
        }
    }

    fn chain_complete(&self, key: &str, new_rules: &[usize]) -> bool {
        let Some(group) = self.groups.get(key) else {
            return false;
        };
        let Some(a) = group.attempt.as_ref() else {
            return false;
        };
        let mut causes: Vec<usize> = new_rules
            .iter()
            .flat_map(|&r| self.rules.causes_of[r].iter().copied())
            .collect();
        if new_rules
            .iter()
            .any(|&r| self.rules.detections[r].role == Role::Failure)
        {
            // The failure may complete a chain whose other links came first.
            causes.extend(
                group
                    .events
                    .iter()
                    .flat_map(|m| m.rules.iter())
                    .flat_map(|&r| self.rules.causes_of[r].iter().copied()),
            );
        }
        causes.sort_unstable();
        causes.dedup();
        causes.into_iter().any(|c| {
            let cause = &self.rules.causes[c];
            let (count, _) = evaluate(cause, group.events.iter(), a, &[]);
            count == cause.rules.len() as u64 && cause.satisfied(count)
        })
    }

    /// Registers an open attempt: its deadline, and its place in time.
    fn track(&mut self, key: &CompactString, a: &Attempt) {
        self.active.insert(key.clone());
        self.by_time.insert((a.first, key.clone()));
        self.schedule.push(Reverse((a.deadline, key.clone())));
    }

    fn decide_due(&mut self, clock: DateTime<Utc>) {
        let span = td(self.rules.max_timespan);
        while self
            .schedule
            .peek()
            .is_some_and(|Reverse((t, _))| *t <= clock)
        {
            let Reverse((_, key)) = self.schedule.pop().expect("peeked");
            let Some(a) = self.groups.get(&key).and_then(|g| g.attempt.clone()) else {
                continue;
            };
            if !a.decided {
                if clock >= a.deadline {
                    self.decide(&key);
                } else {
                    self.schedule.push(Reverse((a.deadline, key)));
                }
            } else if clock > a.last + span {
                // Retiring: decided once more if new evidence came; the
                // count of VMs that failed alike is made exact here.
                if a.dirty {
                    self.decide(&key);
                } else {
                    self.refresh_related(&key);
                }
                self.dirty.remove(&key);
                // Retired; still in `by_time` while the group is kept, so
                // late host evidence can find and update it.
                self.active.remove(&key);
            } else {
                self.schedule
                    .push(Reverse((a.last + span + TimeDelta::milliseconds(1), key)));
            }
        }
        if !self.dirty.is_empty() {
            let mut keys: Vec<CompactString> = self.dirty.drain().collect();
            keys.sort();
            for key in keys {
                if self
                    .groups
                    .get(&key)
                    .and_then(|g| g.attempt.as_ref())
                    .is_some_and(|a| a.decided && a.dirty)
                {
                    self.decide(&key);
                }
            }
        }
    }

    /// Sets the incident's count of VMs that failed with the same cause
    /// near its attempt to the exact one, when VMs failed alike after its
    /// last decision (see the milestones in `decide`), and hands it on. The
    /// confidence counts up to 4 related VMs, which the milestones already
    /// decided, so only the count changes.
    fn refresh_related(&mut self, key: &str) {
        let Some(group) = self.groups.get(key) else {
            return;
        };
        let Some(a) = &group.attempt else {
            return;
        };
        let Some(at) = a
            .incident
            .as_deref()
            .and_then(|id| group.incidents.iter().position(|i| i.id == id))
        else {
            return;
        };
        let inc = &group.incidents[at];
        if inc.root_cause == "unknown" {
            return;
        }
        let Some(list) = self.recent.get(&inc.root_cause) else {
            return;
        };
        let hash = key_hash(key);
        let count = list.iter().filter(|e| related(e, hash, a.first)).count() as u32;
        if count == inc.related_vms {
            return;
        }
        let group = self.groups.get_mut(key).expect("exists");
        let inc = &mut group.incidents[at];
        inc.related_vms = count;
        let snapshot = inc.clone();
        self.emit(snapshot);
    }

    fn sweep(&mut self, clock: DateTime<Utc>) {
        let keep = td(self.rules.max_timespan) + td(self.cfg.fold_window);
        if clock == DateTime::<Utc>::MAX_UTC {
            return;
        }
        let horizon = clock - keep;
        let recent = self.stats.matched.saturating_sub(RECENT_MATCHED);
        while self
            .pool
            .front()
            .is_some_and(|m| m.ts < horizon && m.arrival < recent)
        {
            self.pool.pop_front();
        }
        if self.pool.is_empty() {
            self.pool_seen.clear();
        }
        let active = &self.active;
        let by_time = &mut self.by_time;
        self.groups.retain(|k, g| {
            let keep = active.contains(k)
                || g.touched >= recent
                || g.last_ts.is_some_and(|t| t >= horizon);
            if !keep {
                if let Some(a) = &g.attempt {
                    by_time.remove(&(a.first, k.clone()));
                }
            }
            keep
        });
    }

    /// Host-level evidence for an attempt: the pool's events on the group's
    /// hosts around it, but copies of events the group holds (a record
    /// exported once with its VM and once without).
    fn pool_for<'a>(&'a self, group: &Group, a: &Attempt) -> Vec<&'a Matched> {
        let span = td(self.rules.max_timespan);
        let hosts = group_hosts(group);
        self.pool
            .iter()
            .filter(|m| m.ts >= a.lo(span) && m.ts <= a.last + span)
            .filter(|m| hosts.iter().any(|h| h.eq_ignore_ascii_case(&m.host)))
            .filter(|m| {
                !group
                    .events
                    .iter()
                    .any(|g| g.content == m.content || (g.record.is_some() && g.record == m.record))
            })
            .collect()
    }

    /// The causes an attempt's events (and its hosts' pool) satisfy, best
    /// first: most rules matched, then priority, confidence, rule order.
    /// Only causes that reference a rule some of the events matched are
    /// evaluated.
    fn score_causes(&self, group: &Group, a: &Attempt, pool: &[&Matched]) -> Vec<Scored> {
        let mut candidates: Vec<usize> = group
            .events
            .iter()
            .chain(pool.iter().copied())
            .flat_map(|m| m.rules.iter())
            .flat_map(|&r| self.rules.causes_of[r].iter().copied())
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut scored = Vec::new();
        for c in candidates {
            let cause = &self.rules.causes[c];
            let (count, matched) = evaluate(cause, group.events.iter(), a, pool);
            if count == 0 || !cause.satisfied(count) {
                continue;
            }
            if !cause.requires.iter().all(|r| matched.contains(r)) {
                continue;
            }
            let ratio = matched.len() as f64 / cause.rules.len() as f64;
            let confidence = cause.confidence * (0.6 + 0.4 * ratio.min(1.0));
            scored.push((matched.len() as u64, cause.priority, confidence, c, matched));
        }
        scored.sort_by(|x, y| {
            y.0.cmp(&x.0)
                .then(y.1.cmp(&x.1))
                .then(y.2.total_cmp(&x.2))
                .then(x.3.cmp(&y.3))
        });
        scored
    }

    /// Source and destination of an attempt: named in a failure's text,
    /// else the host that logged the failure; the host of a
    /// destination-role event, else one named, else another host of the
    /// evidence.
    fn route(
        &self,
        group: &Group,
        a: &Attempt,
        failure_ev: &[&Matched],
        evidence: &[&Matched],
    ) -> (Option<CompactString>, Option<CompactString>) {
        let span = td(self.rules.max_timespan);
        let source = failure_ev
            .iter()
            .find_map(|m| m.src_named.clone())
            .or_else(|| evidence.iter().find_map(|m| m.src_named.clone()))
            .or_else(|| failure_ev.first().map(|m| m.host.clone()));
        let destination = group
            .events
            .iter()
            .filter(|m| m.ts >= a.lo(span) && m.ts <= a.last + span)
            .find(|m| {
                m.rules
                    .iter()
                    .any(|&r| self.rules.detections[r].role == Role::Destination)
            })
            .map(|m| m.host.clone())
            .or_else(|| evidence.iter().find_map(|m| m.dst_named.clone()))
            .or_else(|| {
                evidence
                    .iter()
                    .map(|m| m.host.clone())
                    .find(|h| source.as_ref().is_none_or(|s| !s.eq_ignore_ascii_case(h)))
            });
        (source, destination)
    }

    fn decide(&mut self, key: &str) {
        self.stats.decisions += 1;
        let Some(group) = self.groups.get(key) else {
            return;
        };
        let Some(a) = group.attempt.clone() else {
            return;
        };
        let pool = self.pool_for(group, &a);
        let scored = self.score_causes(group, &a, &pool);
        let span = td(self.rules.max_timespan);
        let failure_ev: Vec<&Matched> = group
            .events
            .iter()
            .filter(|m| m.ts >= a.lo(span) && m.ts <= a.last + span)
            .filter(|m| {
                m.rules
                    .iter()
                    .any(|&r| self.rules.detections[r].role == Role::Failure)
            })
            .collect();
        let (root_cause, confidence, winner_rules, cause_title, playbook) = match scored.first() {
            Some((_, _, conf, c, matched)) => {
                let cause = &self.rules.causes[*c];
                (
                    cause.root_cause.clone(),
                    *conf,
                    matched.clone(),
                    cause.title.clone(),
                    cause.playbook.clone(),
                )
            }
            None => (
                "unknown".to_string(),
                0.3,
                Vec::new(),
                "Live migration failed for a reason no rule explains".to_string(),
                "unknown".to_string(),
            ),
        };
        let alternatives: Vec<Alternative> = scored
            .iter()
            .skip(1)
            .map(|(_, _, conf, c, matched)| Alternative {
                root_cause: self.rules.causes[*c].root_cause.clone(),
                confidence: round2(conf.min(confidence) * 0.7),
                matched: matched
                    .iter()
                    .map(|&r| self.rules.detections[r].name.clone())
                    .collect(),
            })
            .collect();
        // Evidence: failure signals, then the winner's rules within its timespan.
        let winner_span = scored
            .first()
            .map_or(span, |s| td(self.rules.causes[s.3].timespan));
        let evidence = evidence_for(group, &a, &pool, &failure_ev, &winner_rules, winner_span);
        let (source, destination) = self.route(group, &a, &failure_ev, &evidence);
        let mut evidence: Vec<Evidence> =
            evidence.into_iter().map(|m| m.evidence.clone()).collect();
        // Failures first when the list is cut: each must stay in its incident.
        let cut = evidence.len().saturating_sub(self.cfg.max_evidence) as u64;
        if cut > 0 {
            let failures: Vec<Evidence> = evidence
                .iter()
                .filter(|e| failure_names(&self.rules, &e.rule))
                .cloned()
                .collect();
            let room = self.cfg.max_evidence.saturating_sub(failures.len());
            let mut others: Vec<Evidence> = evidence
                .into_iter()
                .filter(|e| !failure_names(&self.rules, &e.rule))
                .collect();
            others.truncate(room);
            evidence = failures;
            evidence.extend(others);
            evidence.sort_by(|x, y| {
                x.timestamp
                    .cmp(&y.timestamp)
                    .then_with(|| evidence_order(x, y))
            });
        }
        let first_seen = evidence.first().map_or(a.first, |e| e.timestamp);
        let last_seen = evidence.last().map_or(a.last, |e| e.timestamp);
        let vm_name = group.vm_name.as_deref().map(str::to_string);
        let vm_id = group.vm_id.as_deref().map(str::to_string);
        // The playbook's steps are filled in when the incident is emitted, so
        // the copy each group keeps stays small.
        let remediation = Remediation {
            playbook: playbook.clone(),
            ..Remediation::default()
        };
        let what = self
            .kb
            .get(&playbook)
            .map_or(cause_title, |p| p.title.clone());
        let title = format!(
            "{} failed to live-migrate {} -> {}: {}",
            vm_name.as_deref().or(vm_id.as_deref()).unwrap_or("a VM"),
            source.as_deref().unwrap_or("?"),
            destination.as_deref().unwrap_or("?"),
            what
        );
        // Other VMs failing the same way at the same time make the cause likelier.
        let related_vms = if root_cause == "unknown" {
            0
        } else {
            let near = TimeDelta::minutes(10);
            let list = self.recent.entry(root_cause.clone()).or_default();
            while list
                .front()
                .is_some_and(|(t, _, _)| *t < a.first - near - near)
            {
                list.pop_front();
            }
            // One entry per VM (its latest attempt), found by its hash
            // first: a cluster-wide cause puts thousands of VMs here.
            let hash = key_hash(key);
            let joined = match list.iter().position(|(_, h, k)| *h == hash && k == key) {
                Some(p) => {
                    list[p].0 = list[p].0.max(a.first);
                    false
                }
                None => {
                    list.push_back((a.first, hash, CompactString::from(key)));
                    true
                }
            };
            let first = a.first;
            let in_window = |e: &&(DateTime<Utc>, u64, CompactString)| related(e, hash, first);
            let count = list.iter().filter(in_window).count() as u32;
            // The earlier ones now have one more related VM. Re-deciding
            // each of them on every newcomer costs the square of a
            // cluster-wide outage (every VM fails alike): they are
            // re-decided when the count reaches 1, 2, 3, 4 (the confidence
            // counts up to 4) and then each power of two, so a stored
            // count is at least half the true one until the attempt
            // retires (its timespan passed), when it is made exact.
            if joined && (count <= 4 || count.is_power_of_two()) {
                let others: Vec<CompactString> = list
                    .iter()
                    .filter(in_window)
                    .map(|(_, _, k)| k.clone())
                    .collect();
                for k in others {
                    if let Some(a) = self.groups.get_mut(&k).and_then(|g| g.attempt.as_mut()) {
                        if a.decided {
                            a.dirty = true;
                            self.dirty.insert(k);
                        }
                    }
                }
            }
            count
        };
        let confidence = if related_vms > 0 {
            (confidence + 0.02 * f64::from(related_vms.min(4))).min(0.99)
        } else {
            confidence
        };
        let fold = td(self.cfg.fold_window);
        let group = self.groups.get_mut(key).expect("exists");
        let attempt = group.attempt.as_mut().expect("exists");
        if !attempt.decided {
            self.schedule.push(Reverse((
                attempt.last + span + TimeDelta::milliseconds(1),
                CompactString::from(key),
            )));
        }
        attempt.decided = true;
        attempt.dirty = false;
        // Which incident does this attempt belong to?
        let existing = attempt
            .incident
            .clone()
            .and_then(|id| group.incidents.iter().position(|i| i.id == id));
        let slot = match existing {
            Some(i)
                if group.incidents[i].root_cause == root_cause || group.incidents[i].count <= 1 =>
            {
                Some(i)
            }
            Some(i) => {
                group.incidents[i].count -= 1;
                None
            }
            None => group.incidents.iter().position(|i| {
                i.status == Status::Open
                    && i.root_cause == root_cause
                    && a.first - i.last_seen <= fold
                    && a.first >= i.first_seen
            }),
        };
        let fresh_id = incident_id(key, a.first);
        let incident = match slot {
            Some(i) => {
                let inc = &mut group.incidents[i];
                let folded_now = attempt.incident.as_deref() != Some(inc.id.as_str());
                if folded_now {
                    inc.count += 1;
                    inc.evidence_omitted +=
                        merge_evidence(&mut inc.evidence, evidence, self.cfg.max_evidence);
                } else if inc.count <= 1 {
                    inc.evidence = evidence;
                    inc.evidence_omitted = cut;
                } else {
                    inc.evidence_omitted +=
                        merge_evidence(&mut inc.evidence, evidence, self.cfg.max_evidence);
                }
                inc.root_cause = root_cause;
                inc.title = title;
                inc.confidence = round2(confidence);
                inc.alternatives = alternatives;
                inc.related_vms = related_vms;
                inc.remediation = remediation;
                inc.first_seen = inc
                    .evidence
                    .first()
                    .map_or(first_seen, |e| e.timestamp.min(first_seen));
                inc.last_seen = inc
                    .evidence
                    .last()
                    .map_or(last_seen, |e| e.timestamp.max(last_seen));
                inc.source_host = source.map(|s| s.to_string()).or(inc.source_host.take());
                inc.destination_host = destination
                    .map(|s| s.to_string())
                    .or(inc.destination_host.take());
                attempt.incident = Some(inc.id.clone());
                inc.clone()
            }
            None => {
                let inc = Incident {
                    id: fresh_id.clone(),
                    root_cause,
                    title,
                    vm_name,
                    vm_id,
                    source_host: source.map(|s| s.to_string()),
                    destination_host: destination.map(|s| s.to_string()),
                    first_seen,
                    last_seen,
                    status: Status::Open,
                    resolved_at: None,
                    count: 1,
                    confidence: round2(confidence),
                    alternatives,
                    related_vms,
                    evidence,
                    remediation,
                    warnings: Vec::new(),
                    evidence_omitted: cut,
                    lookalikes: Vec::new(),
                };
                attempt.incident = Some(fresh_id);
                group.incidents.push(inc.clone());
                if group.incidents.len() > 16 {
                    group.incidents.remove(0);
                }
                inc
            }
        };
        self.emit(incident);
    }

    fn emit(&mut self, mut incident: Incident) {
        // What would settle a look-alike, unless relive's host facts did.
        let settled = incident
            .evidence
            .iter()
            .any(|e| e.provider == HOST_FACTS_PROVIDER);
        incident.lookalikes = match self.kb.get(&incident.remediation.playbook) {
            Some(p) if !settled => {
                let values = [
                    ("vm_name", incident.vm_name.as_deref().unwrap_or("?")),
                    ("vm_id", incident.vm_id.as_deref().unwrap_or("?")),
                    (
                        "source_host",
                        incident.source_host.as_deref().unwrap_or("?"),
                    ),
                    (
                        "destination_host",
                        incident.destination_host.as_deref().unwrap_or("?"),
                    ),
                    ("cluster", "?"),
                ];
                p.lookalike
                    .iter()
                    .map(|l| LookalikeNote {
                        root_cause: l.cause.clone(),
                        settle: fill(&l.settle, &values),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        incident.remediation = self.remediation(
            &incident.remediation.playbook,
            &incident.vm_name,
            &incident.vm_id,
            &incident.source_host,
            &incident.destination_host,
        );
        self.updates.push(incident);
    }

    fn resolve(&mut self, key: &str, ts: DateTime<Utc>, event: &Event, slow: bool) {
        if self
            .groups
            .get(key)
            .and_then(|g| g.attempt.as_ref())
            .is_some_and(|a| !a.decided || a.dirty)
        {
            self.decide(key);
        }
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        let mut resolved = Vec::new();
        for inc in group.incidents.iter_mut() {
            if inc.status == Status::Open && inc.last_seen <= ts {
                inc.status = Status::Resolved;
                inc.resolved_at = Some(ts);
                if slow {
                    inc.warnings.push(format!(
                        "the retry completed with a long blackout ({} event {} on {}): see non-convergence",
                        event.provider, event.event_id, event.host
                    ));
                }
                resolved.push(inc.clone());
            }
        }
        let any = !resolved.is_empty();
        for inc in resolved {
            self.emit(inc);
        }
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        if any {
            group.resolved_at = Some(group.resolved_at.map_or(ts, |r| r.max(ts)));
            if let Some(a) = group.attempt.take() {
                self.by_time.remove(&(a.first, CompactString::from(key)));
            }
            self.active.remove(key);
            self.dirty.remove(key);
        }
    }

    fn remediation(
        &self,
        playbook: &str,
        vm_name: &Option<String>,
        vm_id: &Option<String>,
        source: &Option<String>,
        destination: &Option<String>,
    ) -> Remediation {
        let Some(p) = self.kb.get(playbook) else {
            return Remediation {
                playbook: playbook.to_string(),
                ..Remediation::default()
            };
        };
        let values = [
            ("vm_name", vm_name.as_deref().unwrap_or("?")),
            ("vm_id", vm_id.as_deref().unwrap_or("?")),
            ("source_host", source.as_deref().unwrap_or("?")),
            ("destination_host", destination.as_deref().unwrap_or("?")),
        ];
        Remediation {
            playbook: p.id.clone(),
            fix_class: p.fix_class.clone(),
            retry: p.retry.clone(),
            summary: fill(&p.summary, &values),
            confirm: p.confirm.clone(),
            steps: p.fix.clone(),
        }
    }
}

/// At most `max` bytes, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn merge(target: &mut Group, old: Group) {
    for m in old.events {
        insert_sorted(&mut target.events, m);
    }
    target.seen.extend(old.seen);
    if target.attempt.is_none() {
        target.attempt = old.attempt;
    }
    target.incidents.extend(old.incidents);
    if target.vm_name.is_none() {
        target.vm_name = old.vm_name;
    }
    target.last_ts = match (target.last_ts, old.last_ts) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

fn insert_sorted(events: &mut VecDeque<Matched>, m: Matched) {
    if events.back().is_none_or(|b| b.ts <= m.ts) {
        events.push_back(m);
    } else {
        let at = events.partition_point(|e| e.ts <= m.ts);
        events.insert(at, m);
    }
}

/// A cause an attempt satisfies: rules matched, priority, confidence, the
/// cause's index, the rules it matched.
type Scored = (u64, i64, f64, usize, Vec<usize>);

/// An attempt's evidence: its failure signals, then the events (of the
/// group and of its hosts' pool) matching the winner's rules within its
/// timespan, in a total order, so the list does not depend on the order
/// events arrived in (a replay after a restart gives the same list).
fn evidence_for<'a>(
    group: &'a Group,
    a: &Attempt,
    pool: &[&'a Matched],
    failure_ev: &[&'a Matched],
    winner_rules: &[usize],
    winner_span: TimeDelta,
) -> Vec<&'a Matched> {
    let mut evidence: Vec<&Matched> = failure_ev.to_vec();
    for m in group.events.iter().chain(pool.iter().copied()) {
        if m.ts >= a.lo(winner_span)
            && m.ts <= a.last + winner_span
            && m.rules.iter().any(|r| winner_rules.contains(r))
            && !evidence.iter().any(|e| std::ptr::eq(*e, m))
        {
            evidence.push(m);
        }
    }
    evidence.sort_by(|x, y| {
        x.ts.cmp(&y.ts)
            .then(x.host.cmp(&y.host))
            .then_with(|| evidence_order(&x.evidence, &y.evidence))
    });
    evidence
}

/// Adds `more` to `into` (time order) and keeps at most `cap`, the oldest
/// dropped first; returns how many were dropped.
fn merge_evidence(into: &mut Vec<Evidence>, more: Vec<Evidence>, cap: usize) -> u64 {
    for e in more {
        if !into.contains(&e) {
            into.push(e);
        }
    }
    into.sort_by(|x, y| {
        x.timestamp
            .cmp(&y.timestamp)
            .then_with(|| evidence_order(x, y))
    });
    if into.len() > cap {
        let drop = into.len() - cap;
        into.drain(..drop);
        return drop as u64;
    }
    0
}

/// Whether an evidence's rule names (comma-separated) include a failure rule.
fn failure_names(rules: &RuleSet, names: &str) -> bool {
    names.split(',').any(|n| {
        rules
            .detections
            .iter()
            .any(|d| d.role == Role::Failure && d.name == n)
    })
}

/// Ties between evidence events of the same time: host, channel, event id,
/// record id, message.
fn evidence_order(x: &Evidence, y: &Evidence) -> std::cmp::Ordering {
    x.host
        .cmp(&y.host)
        .then(x.channel.cmp(&y.channel))
        .then(x.event_id.cmp(&y.event_id))
        .then(x.record_id.cmp(&y.record_id))
        .then(x.message.cmp(&y.message))
}

fn group_hosts(group: &Group) -> Vec<CompactString> {
    let mut hosts: Vec<CompactString> = Vec::new();
    for m in &group.events {
        for h in [Some(&m.host), m.src_named.as_ref(), m.dst_named.as_ref()]
            .into_iter()
            .flatten()
        {
            if !hosts.iter().any(|x| x.eq_ignore_ascii_case(h)) {
                hosts.push(h.clone());
            }
        }
    }
    hosts
}

/// Counts what a cause matched around an attempt: distinct rules (temporal),
/// rules in order (temporal_ordered) or events (event_count).
fn evaluate<'a>(
    cause: &CauseRule,
    events: impl Iterator<Item = &'a Matched>,
    a: &Attempt,
    pool: &[&'a Matched],
) -> (u64, Vec<usize>) {
    let span = td(cause.timespan);
    let lo = a.lo(span);
    let hi = a.last + span;
    let mut hits: Vec<(DateTime<Utc>, usize)> = Vec::new();
    for m in events.chain(pool.iter().copied()) {
        if m.ts < lo || m.ts > hi {
            continue;
        }
        for &r in &m.rules {
            if cause.rules.contains(&r) {
                hits.push((m.ts, r));
            }
        }
    }
    match cause.kind {
        CorrelationType::EventCount => {
            let mut rules: Vec<usize> = hits.iter().map(|h| h.1).collect();
            rules.sort_unstable();
            rules.dedup();
            (hits.len() as u64, rules)
        }
        CorrelationType::Temporal => {
            let mut rules: Vec<usize> = hits.iter().map(|h| h.1).collect();
            rules.sort_unstable();
            rules.dedup();
            (rules.len() as u64, rules)
        }
        CorrelationType::TemporalOrdered => {
            hits.sort();
            let mut at = lo;
            let mut rules = Vec::new();
            for &r in &cause.rules {
                match hits.iter().find(|(t, x)| *x == r && *t >= at) {
                    Some((t, _)) => {
                        at = *t;
                        rules.push(r);
                    }
                    None => break,
                }
            }
            (rules.len() as u64, rules)
        }
    }
}

/// Stable across runs, versions and platforms (FNV-1a), as stored ids must be.
/// Whether a recent failure (first failure time, key hash, key) of the
/// same cause is another VM's within ten minutes of `first`.
fn related(entry: &(DateTime<Utc>, u64, CompactString), hash: u64, first: DateTime<Utc>) -> bool {
    let near = TimeDelta::minutes(10);
    entry.1 != hash && entry.0 >= first - near && entry.0 <= first + near
}

/// A VM key's hash, to compare keys cheaply.
fn key_hash(key: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    key.hash(&mut h);
    h.finish()
}

fn incident_id(key: &str, first: DateTime<Utc>) -> String {
    let mut h = fnv::FnvHasher::default();
    key.hash(&mut h);
    first.timestamp().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Source and destination hosts the event's text names
/// ([`parsers::extract::hosts_named`]); an event without text, from its
/// data values.
fn hosts_named(message: &str, event: &Event) -> (Option<CompactString>, Option<CompactString>) {
    let joined;
    let text = if message.is_empty() {
        joined = event
            .data
            .iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .join(" ");
        joined.as_str()
    } else {
        message
    };
    let (source, destination) = parsers::extract::hosts_named(text);
    (
        source.map(CompactString::from),
        destination.map(CompactString::from),
    )
}
