//! The JSON API under `/api/v1/` (every operation is in `/openapi.json`),
//! `/metrics` and `/healthz`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use correlate::{Incident, IncidentStore, Status};
use serde::Serialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::AppState;

/// An error as the API answers it: a status and `{"error": …}` (with the
/// character position of a query's problem when known).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    position: Option<usize>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            position: None,
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "HTTP request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
    pub(crate) fn position(&self) -> Option<usize> {
        self.position
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(p) = self.position {
            body["position"] = json!(p);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<index::IndexError> for ApiError {
    fn from(e: index::IndexError) -> Self {
        match e {
            index::IndexError::Query {
                query: _,
                reason,
                position,
            } => ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("query: {reason}"),
                position,
            },
            index::IndexError::UnknownField(f) => ApiError::bad(format!(
                "count_by: no field `{f}` (host, event_id, level, channel, provider, vm_name, vm_id, hresult)"
            )),
            other => ApiError::internal(other),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Query parameters, or a 400 that says what is wrong with them.
pub(crate) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

pub(crate) fn params(p: Params) -> ApiResult<HashMap<String, String>> {
    p.map(|q| q.0)
        .map_err(|e| ApiError::bad(format!("query string: {e}")))
}

fn text_param<'a>(p: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    p.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

pub(crate) fn when(p: &HashMap<String, String>, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    text_param(p, name)
        .map(|t| {
            parsers::time::parse_when(t, Utc::now()).map_err(|e| {
                ApiError::bad(format!(
                    "{name}: {e} (an RFC 3339 time or a span back from now such as 24h)"
                ))
            })
        })
        .transpose()
}

fn number(p: &HashMap<String, String>, name: &str, default: usize, max: usize) -> ApiResult<usize> {
    // Given but empty is a mistake, not the default.
    match p.get(name).map(|t| t.trim()) {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(format!(
                "{name}: `{t}` is not a whole number from 1 to {max}"
            ))),
        },
    }
}

/// Runs blocking work (the index, polars, files) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a worker failed: {e}")))?
}

/// `GET /healthz`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Unknown paths under `/api/v1`.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such API path (see /openapi.json)")
}

// ---------------------------------------------------------------- search

/// The most hits one search returns.
pub(crate) const MAX_HITS: usize = 1000;

/// The fields counts may be taken by.
pub(crate) const COUNT_FIELDS: [&str; 8] = [
    "host", "event_id", "level", "channel", "provider", "vm_name", "vm_id", "hresult",
];

/// A search's answer.
#[derive(Debug, Serialize)]
pub(crate) struct SearchResult {
    pub(crate) total: usize,
    pub(crate) took_ms: f64,
    pub(crate) hits: Vec<SearchHit>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) counts: BTreeMap<String, Vec<FieldCount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) histogram: Option<Histogram>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SearchHit {
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) event: Value,
}

#[derive(Debug, Serialize)]
pub(crate) struct FieldCount {
    pub(crate) value: String,
    pub(crate) count: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Histogram {
    pub(crate) interval_ms: i64,
    pub(crate) buckets: Vec<HistogramBucket>,
}

#[derive(Debug, Serialize)]
pub(crate) struct HistogramBucket {
    pub(crate) start: DateTime<Utc>,
    pub(crate) count: u64,
}

/// What a search asks for, read from the query string.
pub(crate) struct SearchAsk {
    pub(crate) request: index::SearchRequest,
    pub(crate) count_by: Vec<String>,
    pub(crate) histogram: Option<String>,
}

pub(crate) fn search_ask(p: &HashMap<String, String>) -> ApiResult<SearchAsk> {
    let since = when(p, "since")?;
    let until = when(p, "until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(ApiError::bad("since must be before until"));
        }
    }
    let count_by: Vec<String> = text_param(p, "count_by")
        .map(|s| {
            s.split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for f in &count_by {
        if !COUNT_FIELDS.contains(&f.as_str()) {
            return Err(ApiError::bad(format!(
                "count_by: no field `{f}` ({})",
                COUNT_FIELDS.join(", ")
            )));
        }
    }
    let histogram = text_param(p, "histogram").map(str::to_string);
    if let Some(h) = histogram.as_deref() {
        if h != "auto" {
            let span = parsers::time::parse_span(h)
                .map_err(|e| ApiError::bad(format!("histogram: {e} (auto or a span like 1m)")))?;
            if span < std::time::Duration::from_millis(1) {
                return Err(ApiError::bad("histogram: the bucket must be at least 1ms"));
            }
        }
    }
    Ok(SearchAsk {
        request: index::SearchRequest {
            query: p.get("q").cloned().unwrap_or_default(),
            since,
            until,
            limit: number(p, "limit", 50, MAX_HITS)?,
        },
        count_by,
        histogram,
    })
}

/// Bucket widths the automatic histogram picks from.
const NICE: [i64; 16] = [
    1_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    600_000,
    1_800_000,
    3_600_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    604_800_000,
    2_592_000_000,
    31_536_000_000,
];

/// Runs a search with its counts and histogram.
pub(crate) fn run_search(
    index: Option<&index::EventIndex>,
    ask: &SearchAsk,
) -> ApiResult<SearchResult> {
    let started = std::time::Instant::now();
    let Some(index) = index else {
        return Ok(SearchResult {
            total: 0,
            took_ms: 0.0,
            hits: Vec::new(),
            counts: BTreeMap::new(),
            histogram: ask.histogram.as_ref().map(|_| Histogram {
                interval_ms: 60_000,
                buckets: Vec::new(),
            }),
        });
    };
    let hits = index.search(&ask.request)?;
    let mut counts = BTreeMap::new();
    for field in &ask.count_by {
        let mut list = index.count_by(&ask.request, field)?;
        list.truncate(50);
        counts.insert(
            field.clone(),
            list.into_iter()
                .map(|(value, count)| FieldCount { value, count })
                .collect(),
        );
    }
    let histogram = match ask.histogram.as_deref() {
        None => None,
        Some(h) => {
            let interval_ms = if h == "auto" {
                let oldest = match ask.request.since {
                    Some(s) => Some(s),
                    None => index
                        .histogram(&ask.request, chrono::Duration::days(1))?
                        .first()
                        .map(|(t, _)| *t),
                };
                let newest = ask
                    .request
                    .until
                    .or_else(|| hits.hits.first().map(|h| h.timestamp));
                let span = match (oldest, newest) {
                    (Some(a), Some(b)) => (b - a).num_milliseconds().max(1),
                    _ => 60_000,
                };
                NICE.iter()
                    .copied()
                    .find(|w| span / w <= 80)
                    .unwrap_or(NICE[NICE.len() - 1])
            } else {
                parsers::time::parse_span(h)
                    .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
                    .unwrap_or(60_000)
                    .max(1)
            };
            let buckets = index
                .histogram(&ask.request, chrono::Duration::milliseconds(interval_ms))?
                .into_iter()
                .map(|(start, count)| HistogramBucket { start, count })
                .collect();
            Some(Histogram {
                interval_ms,
                buckets,
            })
        }
    };
    Ok(SearchResult {
        total: hits.total,
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
        hits: hits
            .hits
            .into_iter()
            .map(|h| SearchHit {
                timestamp: h.timestamp,
                event: serde_json::from_str(&h.json).unwrap_or(Value::Null),
            })
            .collect(),
        counts,
        histogram,
    })
}

/// `GET /api/v1/search`.
pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> ApiResult<Json<SearchResult>> {
    let p = params(p)?;
    let ask = search_ask(&p)?;
    let result = blocking(move || {
        let index = state.index()?;
        run_search(index.as_deref(), &ask)
    })
    .await?;
    Ok(Json(result))
}

// ------------------------------------------------------------- incidents

/// One row of the incident list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IncidentSummary {
    pub(crate) id: String,
    pub(crate) root_cause: String,
    pub(crate) title: String,
    pub(crate) vm_name: Option<String>,
    pub(crate) vm_id: Option<String>,
    pub(crate) source_host: Option<String>,
    pub(crate) destination_host: Option<String>,
    pub(crate) status: Status,
    pub(crate) count: u32,
    pub(crate) confidence: f64,
    pub(crate) first_seen: DateTime<Utc>,
    pub(crate) last_seen: DateTime<Utc>,
    pub(crate) related_vms: u32,
}

impl From<&Incident> for IncidentSummary {
    fn from(i: &Incident) -> Self {
        IncidentSummary {
            id: i.id.clone(),
            root_cause: i.root_cause.clone(),
            title: i.title.clone(),
            vm_name: i.vm_name.clone(),
            vm_id: i.vm_id.clone(),
            source_host: i.source_host.clone(),
            destination_host: i.destination_host.clone(),
            status: i.status,
            count: i.count,
            confidence: i.confidence,
            first_seen: i.first_seen,
            last_seen: i.last_seen,
            related_vms: i.related_vms,
        }
    }
}

/// The sort orders of the incident list.
pub(crate) const SORTS: [&str; 6] = [
    "last_seen",
    "first_seen",
    "confidence",
    "count",
    "root_cause",
    "vm",
];

/// The incidents a listing asks for, sorted.
pub(crate) fn list_incidents(
    data: &std::path::Path,
    p: &HashMap<String, String>,
) -> ApiResult<(usize, Vec<IncidentSummary>)> {
    let filter = correlate::IncidentFilter {
        status: text_param(p, "status")
            .map(|s| s.parse::<Status>())
            .transpose()
            .map_err(|e| ApiError::bad(format!("status: {e}")))?,
        vm: text_param(p, "vm").map(str::to_string),
        host: text_param(p, "host").map(str::to_string),
        root_cause: text_param(p, "root_cause").map(str::to_string),
        since: when(p, "since")?,
    };
    let sort = text_param(p, "sort").unwrap_or("-last_seen");
    let (descending, key) = match sort.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, sort),
    };
    if !SORTS.contains(&key) {
        return Err(ApiError::bad(format!(
            "sort: `{sort}` is not one of {} (a leading - sorts descending)",
            SORTS.join(", ")
        )));
    }
    let limit = number(p, "limit", 500, 10_000)?;
    let mut incidents: Vec<IncidentSummary> = IncidentStore::new(data)
        .load()
        .map_err(ApiError::internal)?
        .iter()
        .filter(|i| filter.matches(i))
        .map(IncidentSummary::from)
        .collect();
    incidents.sort_by(|a, b| {
        let order = match key {
            "first_seen" => a.first_seen.cmp(&b.first_seen),
            "confidence" => a.confidence.total_cmp(&b.confidence),
            "count" => a.count.cmp(&b.count),
            "root_cause" => a.root_cause.cmp(&b.root_cause),
            "vm" => a.vm_name.cmp(&b.vm_name),
            _ => a.last_seen.cmp(&b.last_seen),
        };
        let order = order.then_with(|| a.id.cmp(&b.id));
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    let total = incidents.len();
    incidents.truncate(limit);
    Ok((total, incidents))
}

/// `GET /api/v1/incidents`.
pub(crate) async fn incidents(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> ApiResult<Json<Value>> {
    let p = params(p)?;
    let (total, list) = blocking(move || list_incidents(&state.ctx.data, &p)).await?;
    Ok(Json(json!({ "total": total, "incidents": list })))
}

pub(crate) fn find_incident(data: &std::path::Path, id: &str) -> ApiResult<Incident> {
    IncidentStore::new(data)
        .find(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no incident `{id}`")))
}

/// `GET /api/v1/incidents/{id}`.
pub(crate) async fn incident(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Incident>> {
    Ok(Json(
        blocking(move || find_incident(&state.ctx.data, &id)).await?,
    ))
}

/// An incident with everything the detail page shows.
#[derive(Debug, Serialize)]
pub(crate) struct Explanation {
    pub(crate) incident: Incident,
    /// Lane of each evidence event (same order): source, destination,
    /// cluster or other.
    pub(crate) lanes: Vec<&'static str>,
    /// Failures of other VMs with the same cause within ten minutes.
    pub(crate) related: Vec<Related>,
    pub(crate) why: Option<Why>,
    pub(crate) plan: Option<remediate::plan::Plan>,
    pub(crate) plan_problem: Option<String>,
    pub(crate) actions: Vec<ActionView>,
    pub(crate) audit: Vec<remediate::audit::Entry>,
    pub(crate) alerts: Vec<remediate::alert::journal::NotificationStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Why {
    pub(crate) fm: String,
    pub(crate) title: String,
    pub(crate) explanation: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Related {
    pub(crate) incident: String,
    pub(crate) vm_name: Option<String>,
    pub(crate) evidence: correlate::Evidence,
}

#[derive(Debug, Serialize)]
pub(crate) struct ActionView {
    pub(crate) key: String,
    pub(crate) stage: remediate::plan::Stage,
    pub(crate) title: String,
    pub(crate) class: remediate::plan::Class,
    pub(crate) target: Option<String>,
    pub(crate) state: String,
    pub(crate) waiting: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
}

/// The lane an evidence event belongs in.
pub(crate) fn lane(incident: &Incident, e: &correlate::Evidence) -> &'static str {
    let short = parsers::event::short_host(&e.host);
    let is = |h: &Option<String>| h.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(short));
    let cluster = e
        .channel
        .to_ascii_lowercase()
        .contains("failoverclustering")
        || e.provider
            .to_ascii_lowercase()
            .contains("failoverclustering")
        || e.channel.eq_ignore_ascii_case("cluster");
    if cluster {
        "cluster"
    } else if is(&incident.source_host) {
        "source"
    } else if is(&incident.destination_host) {
        "destination"
    } else {
        "cluster"
    }
}

/// The word a unit enum serializes to (`awaiting_approval`, `fix`, `sent`).
pub(crate) fn word(v: impl Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn explain_incident(state: &AppState, id: &str) -> ApiResult<Explanation> {
    let data = &state.ctx.data;
    // One read of the store: the incident and the others failing alike.
    let all = IncidentStore::new(data)
        .load()
        .map_err(ApiError::internal)?;
    let incident = correlate::find_in(&all, id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no incident `{id}`")))?;
    let lanes = incident
        .evidence
        .iter()
        .map(|e| lane(&incident, e))
        .collect();
    let window = chrono::TimeDelta::minutes(10);
    let mut related = Vec::new();
    if incident.root_cause != "unknown" {
        for other in &all {
            if other.id == incident.id
                || other.root_cause != incident.root_cause
                || other.last_seen < incident.first_seen - window
                || other.first_seen > incident.last_seen + window
            {
                continue;
            }
            // Its failure, or else its first event.
            let shown = other
                .evidence
                .iter()
                .find(|e| e.rule.contains("fail"))
                .or(other.evidence.first());
            if let Some(e) = shown {
                related.push(Related {
                    incident: other.id.clone(),
                    vm_name: other.vm_name.clone(),
                    evidence: e.clone(),
                });
            }
            if related.len() >= 50 {
                break;
            }
        }
    }
    let kb = state.knowledge()?;
    let why = kb.get(&incident.remediation.playbook).map(|p| Why {
        fm: p.fm.clone(),
        title: p.title.clone(),
        explanation: p.explanation.trim().to_string(),
    });
    let facts = remediate::plan::Facts {
        clusters: state.ctx.remediation.clusters.clone(),
    };
    let (plan, plan_problem) = match remediate::plan::Plan::for_incident(&incident, &kb, &facts, 1)
    {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let audit_path = data.join("remediation/audit.jsonl");
    let audit: Vec<remediate::audit::Entry> = if audit_path.exists() {
        remediate::audit::read(&audit_path)
            .map_err(ApiError::internal)?
            .entries
            .into_iter()
            .filter(|e| e.incident == incident.id)
            .collect()
    } else {
        Vec::new()
    };
    // Every action the log knows for the incident (all attempts), in the
    // order first seen; the plan's own first, so a fresh incident shows
    // its steps as not started.
    let mut keys: Vec<(String, Option<&remediate::plan::Action>)> = Vec::new();
    if let Some(plan) = &plan {
        for a in &plan.actions {
            keys.push((a.key.clone(), Some(a)));
        }
    }
    for e in &audit {
        if let Some(k) = &e.key {
            if !keys.iter().any(|(key, _)| key == k) {
                keys.push((k.clone(), None));
            }
        }
    }
    let actions = keys
        .into_iter()
        .map(|(key, action)| {
            let st = remediate::audit::state_in(&audit, &key);
            let last = audit.iter().rev().find(|e| e.key.as_deref() == Some(&key));
            let state_word = match st {
                remediate::audit::ActionState::New => "not started".to_string(),
                remediate::audit::ActionState::AwaitingApproval => "awaiting approval".into(),
                remediate::audit::ActionState::Approved => "approved".into(),
                remediate::audit::ActionState::Interrupted => "interrupted".into(),
                remediate::audit::ActionState::Done(w) => word(w),
            };
            let (stage, title, class, target) = match action {
                Some(a) => (
                    a.stage,
                    fill(&a.title, &a.params),
                    a.class,
                    a.target.clone(),
                ),
                None => (
                    stage_of_key(&key),
                    key.clone(),
                    last.and_then(|e| e.class)
                        .unwrap_or(remediate::plan::Class::Approval),
                    None,
                ),
            };
            ActionView {
                waiting: st == remediate::audit::ActionState::AwaitingApproval,
                key,
                stage,
                title,
                class,
                target,
                state: state_word,
                detail: last.map(|e| e.detail.clone()).filter(|d| !d.is_empty()),
            }
        })
        .collect();
    let alerts = remediate::alert::journal::read(data)
        .map(|entries| {
            remediate::alert::journal::statuses(&entries)
                .into_iter()
                .filter(|s| s.alerts.iter().any(|a| a == &incident.id))
                .collect()
        })
        .unwrap_or_default();
    Ok(Explanation {
        incident,
        lanes,
        related,
        why,
        plan,
        plan_problem,
        actions,
        audit,
        alerts,
    })
}

/// A title with the placeholders whose values the plan knows filled in,
/// for reading (the page escapes it; commands keep their placeholders).
fn fill(title: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = title.to_string();
    for (k, v) in params {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The stage an action key names (`ID/fix/2/1` and the like).
fn stage_of_key(key: &str) -> remediate::plan::Stage {
    use remediate::plan::Stage;
    match key.split('/').nth(1).unwrap_or_default() {
        "confirm" => Stage::Confirm,
        "verify" => Stage::Verify,
        "retry" => Stage::Retry,
        "verify-retry" => Stage::VerifyRetry,
        _ => Stage::Fix,
    }
}

/// `GET /api/v1/incidents/{id}/explain`.
pub(crate) async fn explain(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Explanation>> {
    Ok(Json(blocking(move || explain_incident(&state, &id)).await?))
}

// --------------------------------------------------------------- actions

/// `GET /api/v1/actions`.
pub(crate) async fn actions(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> ApiResult<Json<Value>> {
    let p = params(p)?;
    let incident = text_param(&p, "incident").map(str::to_string);
    let data = state.ctx.data.clone();
    blocking(move || {
        let path = data.join("remediation/audit.jsonl");
        if !path.exists() {
            return Ok(Json(json!({ "entries": [], "unreadable": 0 })));
        }
        let read = remediate::audit::read(&path).map_err(ApiError::internal)?;
        let entries: Vec<&remediate::audit::Entry> = read
            .entries
            .iter()
            .filter(|e| {
                incident
                    .as_deref()
                    .is_none_or(|id| e.incident.starts_with(id))
            })
            .collect();
        Ok(Json(
            json!({ "entries": entries, "unreadable": read.unreadable }),
        ))
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    incident: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    by: Option<String>,
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body: {e}")))
}

/// One line of control-free text of at most `max` characters.
fn line(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

async fn decide(
    state: Arc<AppState>,
    caller: Caller,
    key: String,
    body: Bytes,
    approve: bool,
) -> ApiResult<Json<Value>> {
    let body: DecisionBody = json_body(&body)?;
    blocking(move || {
        let audit =
            remediate::audit::AuditLog::open(&state.ctx.data).map_err(ApiError::internal)?;
        let who = match body.by.as_deref().map(|b| line(b, 80)) {
            Some(by) if !by.is_empty() => format!("{by} via {}", caller.who),
            _ => caller.who.clone(),
        };
        let comment = line(&body.comment, 500);
        let entry = remediate::approval::decide(
            &audit,
            &state.ctx.remediation,
            &remediate::approval::Decision {
                key: &key,
                incident: body.incident.as_deref(),
                who: &who,
                approve,
                reason: &comment,
                now: Utc::now(),
            },
        )
        .map_err(|e| {
            use remediate::approval::ApprovalError as E;
            let status = match &e {
                E::Unknown(_) => StatusCode::NOT_FOUND,
                E::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::CONFLICT,
            };
            ApiError::new(status, e.to_string())
        })?;
        tracing::info!(key = %key, incident = %entry.incident, who = %who, approve, "action decided over HTTP");
        state.live.poke();
        Ok(Json(json!({ "decided": entry })))
    })
    .await
}

/// `POST /api/v1/actions/{key}/approve`.
pub(crate) async fn approve(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    decide(state, caller, key, body, true).await
}

/// `POST /api/v1/actions/{key}/reject`.
pub(crate) async fn reject(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    decide(state, caller, key, body, false).await
}

// -------------------------------------------------------------- silences

fn silence_error(e: remediate::alert::StateError) -> ApiError {
    match e {
        remediate::alert::StateError::Silence(m) if m.starts_with("no silence") => {
            ApiError::not_found(m)
        }
        remediate::alert::StateError::Silence(m) => ApiError::new(StatusCode::CONFLICT, m),
        other => ApiError::internal(other),
    }
}

/// `GET /api/v1/silences`.
pub(crate) async fn silences(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let now = Utc::now();
        let list = remediate::alert::silence::SilenceStore::new(&state.ctx.data)
            .load()
            .map_err(ApiError::internal)?;
        let list: Vec<Value> = list
            .into_iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                v["state"] = json!(s.state(now));
                v
            })
            .collect();
        Ok(Json(json!({ "silences": list })))
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    created_by: Option<String>,
}

/// `POST /api/v1/silences`.
pub(crate) async fn add_silence(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: SilenceBody = json_body(&body)?;
    let matchers = body
        .matchers
        .iter()
        .map(|m| m.parse::<remediate::alert::matcher::Matcher>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad(format!("matchers: {e}")))?;
    if matchers.is_empty() {
        return Err(ApiError::bad(
            "matchers: give at least one, e.g. [\"vm=ADFS1\"]",
        ));
    }
    let now = Utc::now();
    let ends_at = match (&body.duration, &body.ends_at) {
        (Some(d), None) => {
            let span = parsers::time::parse_span(d)
                .map_err(|e| ApiError::bad(format!("duration: {e}")))?;
            chrono::Duration::from_std(span)
                .ok()
                .and_then(|s| now.checked_add_signed(s))
                .filter(|t| *t < now + chrono::Duration::days(3650))
                .ok_or_else(|| ApiError::bad("duration: longer than ten years"))?
        }
        (None, Some(t)) => DateTime::parse_from_rfc3339(t)
            .map_err(|e| ApiError::bad(format!("ends_at: {e}")))?
            .with_timezone(&Utc),
        _ => {
            return Err(ApiError::bad(
                "give exactly one of duration (e.g. 2h) and ends_at (RFC 3339)",
            ))
        }
    };
    if ends_at <= now {
        return Err(ApiError::bad("the silence would end before it starts"));
    }
    let author = match body.created_by.as_deref().map(|b| line(b, 80)) {
        Some(b) if !b.is_empty() => format!("{b} via {}", caller.who),
        _ => caller.who.clone(),
    };
    let comment = line(&body.comment, 500);
    let silence = blocking(move || {
        remediate::alert::silence::SilenceStore::new(&state.ctx.data)
            .add(remediate::alert::silence::NewSilence {
                matchers,
                starts_at: None,
                ends_at,
                created_by: author,
                comment,
            })
            .map_err(|e| match e {
                remediate::alert::StateError::Silence(m) => ApiError::bad(m),
                other => ApiError::internal(other),
            })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(silence)).into_response())
}

/// `DELETE /api/v1/silences/{id}`: expires it now.
pub(crate) async fn expire_silence(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let s = remediate::alert::silence::SilenceStore::new(&state.ctx.data)
            .expire(&id, &caller.who)
            .map_err(silence_error)?;
        Ok(Json(json!({ "expired": s })))
    })
    .await
}

// ----------------------------------------------------------------- stats

pub(crate) fn stats_request(p: &HashMap<String, String>) -> ApiResult<index::StatsRequest> {
    Ok(index::StatsRequest {
        since: when(p, "since")?,
        until: when(p, "until")?,
        top: number(p, "top", 10, 1000)?,
    })
}

/// `GET /api/v1/stats`.
pub(crate) async fn stats(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> ApiResult<Json<index::stats::MigrationStats>> {
    let p = params(p)?;
    let request = stats_request(&p)?;
    let stats = blocking(move || {
        crate::stats::gather(&state.ctx.data, &request)
            .map_err(|e| ApiError::internal(format!("{e:#}")))
    })
    .await?;
    Ok(Json(stats))
}

// ---------------------------------------------------------------- status

/// Hosts the status lists (most events first); the rest are counted.
const MAX_STATUS_HOSTS: usize = 200;

/// `GET /api/v1/status`.
pub(crate) async fn status(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let incidents = IncidentStore::new(&state.ctx.data)
            .load()
            .map_err(ApiError::internal)?;
        let open = incidents
            .iter()
            .filter(|i| i.status == Status::Open)
            .count();
        let index = state.index()?;
        let events = index.as_ref().map_or(0, |i| i.len());
        // Each host that logged: its events and its newest event's time.
        let mut hosts = Vec::new();
        let mut hosts_omitted = 0;
        if let Some(index) = &index {
            let counts = index.count_by(&index::SearchRequest::new(""), "host")?;
            hosts_omitted = counts.len().saturating_sub(MAX_STATUS_HOSTS);
            for (host, n) in counts.into_iter().take(MAX_STATUS_HOSTS) {
                let quoted = host.replace('\\', "\\\\").replace('"', "\\\"");
                let mut one = index::SearchRequest::new(&format!("host:\"{quoted}\""));
                one.limit = 1;
                let newest = index
                    .search(&one)
                    .ok()
                    .and_then(|h| h.hits.first().map(|h| h.timestamp));
                hosts.push(json!({ "host": host, "events": n, "newest_event": newest }));
            }
        }
        let agents = state
            .ctx
            .agents
            .as_ref()
            .map(|a| a.snapshot())
            .unwrap_or_default();
        let stages: Vec<Value> = state
            .ctx
            .registry
            .stages()
            .iter()
            .map(|m| {
                use std::sync::atomic::Ordering::Relaxed;
                json!({
                    "name": m.name,
                    "items_in": m.items_in.load(Relaxed),
                    "items_out": m.items_out.load(Relaxed),
                    "errors": m.errors.load(Relaxed),
                    "queue_depth": m.queue_depth.load(Relaxed),
                    "lag_ms": m.lag_ms.load(Relaxed),
                })
            })
            .collect();
        let extra: Vec<Value> = state
            .ctx
            .extra_metrics
            .iter()
            .flat_map(|f| f())
            .map(|g| {
                let labels: BTreeMap<&str, &str> =
                    g.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                json!({ "name": g.name, "labels": labels, "value": g.value })
            })
            .collect();
        let r = &state.ctx.remediation;
        Ok(Json(json!({
            "mode": state.ctx.mode,
            "version": env!("CARGO_PKG_VERSION"),
            "data": state.ctx.data.display().to_string(),
            "listening": state.ctx.listening,
            "index": { "events": events },
            "hosts": hosts,
            "hosts_omitted": hosts_omitted,
            "agents": agents,
            "incidents": { "open": open, "resolved": incidents.len() - open },
            "stages": stages,
            "counters": extra,
            "remediation": {
                "enabled": r.enabled,
                "mode": r.mode.as_str(),
                "hosts": r.hosts.keys().collect::<Vec<_>>(),
            },
        })))
    })
    .await
}

// ------------------------------------------------------------ migrations

fn host_access<'a>(
    state: &'a AppState,
    host: &str,
) -> ApiResult<(&'a String, &'a remediate::executor::HostAccess)> {
    state
        .ctx
        .remediation
        .hosts
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(host))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no host `{host}` in [remediation.hosts] of relive.toml"
            ))
        })
}

/// Each configured relive host: its VMs (state, passes) and ledger.
pub(crate) fn hosts_view(state: &AppState) -> Vec<Value> {
    state
        .ctx
        .remediation
        .hosts
        .iter()
        .map(|(name, access)| {
            let result = access.connect().and_then(|mut c| {
                let vms = c.list_vms().map_err(|e| e.to_string())?;
                let ledger = c.ledger().map_err(|e| e.to_string())?;
                Ok((vms, ledger))
            });
            match result {
                Ok((vms, ledger)) => json!({
                    "name": name, "reachable": true, "vms": vms, "ledger": ledger,
                }),
                Err(e) => json!({ "name": name, "reachable": false, "error": e }),
            }
        })
        .collect()
}

/// `GET /api/v1/migrations`: the relive hosts' VMs and ledgers, and the
/// migrations this server started (with their last progress).
pub(crate) async fn migrations(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let hosts = hosts_view(&state);
        let started = state.live.started_migrations();
        let mut running = Vec::new();
        for (host, id) in started {
            let progress = host_access(&state, &host)
                .ok()
                .and_then(|(_, a)| a.connect().ok())
                .and_then(|mut c| c.query(&id).ok());
            running.push(json!({ "host": host, "id": id, "progress": progress }));
        }
        Ok(Json(json!({ "hosts": hosts, "started": running })))
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MigrationBody {
    #[serde(default)]
    source: String,
    #[serde(default)]
    vm: String,
    #[serde(default)]
    destination: String,
}

/// `POST /api/v1/migrations`: starts a live migration on a relive host.
pub(crate) async fn start_migration(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: MigrationBody = json_body(&body)?;
    if body.source.is_empty() || body.vm.is_empty() || body.destination.is_empty() {
        return Err(ApiError::bad("give source, vm and destination"));
    }
    blocking(move || {
        let (name, access) = host_access(&state, &body.source)?;
        let name = name.clone();
        let mut client = access
            .connect()
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{name}: {e}")))?;
        let id = client
            .migrate(
                &body.vm,
                &body.destination,
                None,
                migrate_core::report::MigrationParams::default(),
            )
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, format!("{name}: {e}")))?;
        tracing::info!(host = %name, vm = %body.vm, destination = %body.destination, id = %id, who = %caller.who, "migration started over HTTP");
        state.live.migration_started(&name, &id);
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "host": name, "id": id })),
        )
            .into_response())
    })
    .await
}

/// `GET /api/v1/migrations/{host}/{id}`: progress (`query-migrate`).
pub(crate) async fn migration_progress(
    State(state): State<Arc<AppState>>,
    Path((host, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    blocking(move || {
        let (name, access) = host_access(&state, &host)?;
        let mut client = access
            .connect()
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{name}: {e}")))?;
        let info = client
            .query(&id)
            .map_err(|e| ApiError::not_found(format!("{name}: {e}")))?;
        Ok(Json(json!({ "host": name, "id": id, "progress": info })))
    })
    .await
}

// --------------------------------------------------------------- metrics

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let text = blocking(move || {
        let mut out = state.ctx.registry.render_prometheus();
        let mut gauges: Vec<super::Gauge> =
            state.ctx.extra_metrics.iter().flat_map(|f| f()).collect();
        let incidents = IncidentStore::new(&state.ctx.data)
            .load()
            .unwrap_or_default();
        let mut open_by: BTreeMap<String, u64> = BTreeMap::new();
        for i in incidents.iter().filter(|i| i.status == Status::Open) {
            *open_by.entry(i.root_cause.clone()).or_default() += 1;
        }
        for (cause, n) in open_by {
            gauges.push(super::Gauge {
                name: "relive_incidents_open",
                kind: "gauge",
                help: "Open incidents by root cause.",
                labels: vec![("root_cause", cause)],
                value: n as f64,
            });
        }
        if let Ok(Some(index)) = state.index() {
            gauges.push(super::Gauge {
                name: "relive_index_events",
                kind: "gauge",
                help: "Events in the committed index.",
                labels: Vec::new(),
                value: index.len() as f64,
            });
        }
        render_gauges(&mut out, &gauges);
        Ok(out)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Appends gauges, one HELP/TYPE per family, label values escaped.
pub(crate) fn render_gauges(out: &mut String, gauges: &[super::Gauge]) {
    use std::fmt::Write as _;
    let mut families: Vec<&str> = Vec::new();
    for g in gauges {
        if !families.contains(&g.name) {
            families.push(g.name);
        }
    }
    for family in families {
        let mut first = true;
        for g in gauges.iter().filter(|g| g.name == family) {
            if first {
                let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
                let _ = writeln!(out, "# TYPE {} {}", g.name, g.kind);
                first = false;
            }
            let labels: Vec<String> = g
                .labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let _ = writeln!(out, "{}{labels} {}", g.name, g.value);
        }
    }
}
