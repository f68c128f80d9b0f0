//! `index` owns relive's searchable store of events: [`EventIndex`], a
//! tantivy index on disk under `--data`, with one field per `Event` field,
//! the Lucene/Kibana query language over short field names
//! (`event_id:21502 AND host:node-b`, `vm_name:ADFS1`, `data.ErrorCode:0x80070002`,
//! `event_id:[21000 TO 22000]`, `NOT level:information`, wildcards), time
//! ranges, newest-first results and counts by any exact field.
//!
//! Ingest is idempotent: every event has a dedup key (host + channel +
//! record id, or a content hash where a format has none) and adding an
//! event replaces the one with the same key.
//!
//! [`stage`] runs the index as a pipeline stage: event batches in, one
//! commit at a time out, for the correlator.
//!
//! Migration metrics live beside it in [`MetricStore`] (Parquet by day)
//! and [`stats`] computes the analytics over them with polars.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let mut index = index::EventIndex::open(dir.path()).unwrap();
//! let text = "Log Name:      System\nSource:        Microsoft-Windows-Hyper-V-High-Availability\n\
//! Date:          9/27/2018 15:36:44\nEvent ID:      21502\nLevel:         Error\n\
//! Computer:      NODE-B.datawisetech.corp\nDescription:\nLive migration of 'Virtual Machine ADFS1' failed.\n";
//! let out = parsers::parse_bytes(text.as_bytes(), &parsers::ParseOptions::default());
//! for event in &out.events {
//!     index.add(event).unwrap();
//! }
//! index.commit().unwrap();
//! let hits = index.search(&index::SearchRequest::new("event_id:21502 AND host:node-b")).unwrap();
//! assert_eq!(hits.total, 1);
//! ```
#![deny(missing_docs)]

mod error;
pub mod metrics;
mod query;
mod schema;
pub mod stage;
pub mod stats;

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;

use chrono::{DateTime, Utc};
use parsers::Event;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery};
use tantivy::schema::Value;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

pub use error::IndexError;
pub use metrics::MetricStore;
use schema::Fields;
pub use stats::{migration_stats, MigrationStats, StatsRequest};

/// The schema and document builder, for the benchmark's bare-tantivy
/// baseline (same schema, same documents, no dedup). Not a stable API.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::schema::{build, build_layout, register_tokenizers, Fields};
    pub use crate::WRITER_BYTES;
    pub use parsers::dedup::index_key as dedup_key;
}

/// How many events are buffered before the writer commits on its own.
const COMMIT_EVERY: u64 = 200_000;
/// ... or when this long has passed since the last commit, so events show
/// up in searches within seconds while a long ingest runs.
const COMMIT_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
/// Version of the index layout; bumped whenever the schema changes.
pub const SCHEMA_VERSION: u32 = 2;
/// Layouts this relive opens: 1 differs from 2 only in how exact-match
/// fields are indexed, so its stored schema still serves every query.
const READABLE_VERSIONS: [u32; 2] = [1, 2];
const VERSION_FILE: &str = "relive-index-version";
/// Memory the writer may use for its buffers.
#[doc(hidden)]
pub const WRITER_BYTES: usize = 128 * 1024 * 1024;

/// True when two schemas have the same fields (names and value types) in
/// the same order, whatever their indexing options.
fn same_fields(a: &tantivy::schema::Schema, b: &tantivy::schema::Schema) -> bool {
    a.num_fields() == b.num_fields()
        && a.fields().zip(b.fields()).all(|((_, x), (_, y))| {
            x.name() == y.name() && x.field_type().value_type() == y.field_type().value_type()
        })
}

/// The event index under one data directory.
pub struct EventIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Option<IndexWriter>,
    uncommitted: u64,
    last_commit: std::time::Instant,
    /// Richness of each event added through this handle, by dedup key hash:
    /// when exports overlap, the copy that says most is the one kept.
    kept: HashMap<u64, u32>,
    /// The index as it was before this handle first wrote (`None` when it
    /// was empty): where copies from earlier runs are looked up.
    before: Option<Option<Before>>,
    /// How many keys `kept` may hold at a commit before it is emptied.
    kept_max: usize,
    /// Whether the index held events when this handle first wrote (decided
    /// then, under the writer lock): only then can a key this handle never
    /// added already be in it.
    had_events: Option<bool>,
    /// The keys `kept` forgot, so a key never added through this handle
    /// needs no lookup in an index that was empty.
    forgotten: Option<Forgotten>,
}

/// A Bloom filter of forgotten dedup keys (10 bits and 7 probes per key,
/// about 1 % false positives, each costing one lookup in the index). Once
/// it holds its capacity it is saturated and every key is looked up, so
/// memory stays bounded whatever runs through the handle.
struct Forgotten {
    bits: Vec<u64>,
    capacity: usize,
    count: usize,
    saturated: bool,
}

impl Forgotten {
    const PROBES: u64 = 7;

    fn new(capacity: usize) -> Self {
        let words = (capacity.max(64) * 10).div_ceil(64);
        Forgotten {
            bits: vec![0; words],
            capacity,
            count: 0,
            saturated: false,
        }
    }

    fn positions(&self, hash: u64) -> impl Iterator<Item = usize> {
        let n = (self.bits.len() * 64) as u64;
        // Double hashing; the second hash is a SplitMix64 finalizer of the first.
        let mut z = hash.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let step = (z ^ (z >> 31)) | 1;
        (0..Self::PROBES).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) % n) as usize)
    }

    fn insert(&mut self, hash: u64) {
        if self.count >= self.capacity {
            self.saturated = true;
            return;
        }
        self.count += 1;
        let mut bits = [0usize; Self::PROBES as usize];
        for (slot, bit) in bits.iter_mut().zip(self.positions(hash)) {
            *slot = bit;
        }
        for bit in bits {
            self.bits[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.saturated
            || self
                .positions(hash)
                .all(|bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// A committed snapshot to look earlier copies up in, with the time span
/// of each of its segments.
struct Before {
    searcher: tantivy::Searcher,
    /// (first, last) event time of each segment, ns; `None` if unknown.
    spans: Vec<Option<(i64, i64)>>,
}

/// How far apart two copies of one event may be stamped: a text or CSV
/// export converted with a wrongly assumed zone is off by at most the
/// widest UTC offset either way (+14 h / -12 h), plus a margin.
const COPY_SKEW_NS: i64 = 27 * 3600 * 1_000_000_000;

impl Before {
    fn new(searcher: tantivy::Searcher) -> Self {
        let spans = searcher
            .segment_readers()
            .iter()
            .map(|segment| {
                let column = segment.fast_fields().date(schema::TIMESTAMP).ok()?;
                Some((
                    column.min_value().into_timestamp_nanos(),
                    column.max_value().into_timestamp_nanos(),
                ))
            })
            .collect();
        Before { searcher, spans }
    }

    /// True when some segment whose time span could hold a copy of an event
    /// stamped `nanos` has the term: most events of a bulk load are newer
    /// than every committed segment and skip the term lookups entirely.
    fn may_hold(&self, term: &Term, nanos: i64) -> Result<bool, IndexError> {
        for (segment, span) in self.searcher.segment_readers().iter().zip(&self.spans) {
            if let Some((first, last)) = span {
                if nanos < first.saturating_sub(COPY_SKEW_NS)
                    || nanos > last.saturating_add(COPY_SKEW_NS)
                {
                    continue;
                }
            }
            let postings = segment.inverted_index(term.field())?;
            if postings
                .doc_freq(term)
                .map_err(|e| IndexError::Tantivy(e.into()))?
                > 0
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The Bloom filter of forgotten keys holds this many times `kept_max`
/// keys (2 M kept: 32 M forgotten in 40 MB); past that every new key is
/// looked up in the index.
const FORGOTTEN_PER_KEPT: usize = 16;

/// Keys remembered between commits by default (about 60 MB); see
/// [`EventIndex::set_dedup_memory`].
const KEPT_MAX: usize = 2_000_000;

/// A search: query text, optional time range, how many hits.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Query in Lucene syntax over the short field names; empty matches all.
    pub query: String,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many hits, newest first.
    pub limit: usize,
}

impl SearchRequest {
    /// A request for `query` with no time range and 20 hits.
    pub fn new(query: &str) -> Self {
        SearchRequest {
            query: query.to_owned(),
            since: None,
            until: None,
            limit: 20,
        }
    }
}

/// One hit: the event's time and its ECS JSON as indexed.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Event time.
    pub timestamp: DateTime<Utc>,
    /// The normalized event as one ECS JSON line.
    pub json: String,
}

/// Search results.
#[derive(Debug, Clone)]
pub struct Hits {
    /// How many events matched in all.
    pub total: usize,
    /// The newest `limit` of them.
    pub hits: Vec<Hit>,
}

impl EventIndex {
    /// Opens the index in `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let (schema, fields) = schema::build();
        let version_path = dir.join(VERSION_FILE);
        let has_index = dir.join("meta.json").exists();
        let found = match std::fs::read_to_string(&version_path) {
            Ok(text) => Some(text.trim().parse::<u32>().unwrap_or(0)),
            Err(_) if has_index => Some(0),
            Err(_) => None,
        };
        let version_error = || IndexError::Version {
            path: dir.display().to_string(),
            found: found.unwrap_or(SCHEMA_VERSION),
        };
        if found.is_some_and(|v| !READABLE_VERSIONS.contains(&v)) {
            return Err(version_error());
        }
        let directory = tantivy::directory::MmapDirectory::open(dir)?;
        let index = if has_index {
            // An index keeps the schema it was written with (layout 1 kept
            // positions on exact-match fields); the fields must be the same.
            let index = Index::open(directory)?;
            if !same_fields(&index.schema(), &schema) {
                return Err(version_error());
            }
            index
        } else {
            Index::create(directory, schema, tantivy::IndexSettings::default())?
        };
        if !version_path.exists() {
            std::fs::write(&version_path, format!("{SCHEMA_VERSION}\n")).map_err(|source| {
                IndexError::Io {
                    path: version_path.display().to_string(),
                    source,
                }
            })?;
        }
        schema::register_tokenizers(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(EventIndex {
            index,
            fields,
            reader,
            writer: None,
            uncommitted: 0,
            last_commit: std::time::Instant::now(),
            kept: HashMap::new(),
            before: None,
            kept_max: KEPT_MAX,
            had_events: None,
            forgotten: None,
        })
    }

    fn writer(&mut self) -> Result<&mut IndexWriter, IndexError> {
        if self.writer.is_none() {
            self.writer = Some(self.index.writer(WRITER_BYTES)?);
        }
        Ok(self.writer.as_mut().expect("writer was just created"))
    }

    /// Adds an event, replacing any earlier event with the same dedup key,
    /// unless an earlier copy added through this handle says more (has the
    /// VM id, the rendered message, more data fields).
    pub fn add(&mut self, event: &Event) -> Result<(), IndexError> {
        let key = parsers::dedup::index_key(event);
        let rich = parsers::dedup::richness(event);
        let hash = parsers::dedup::fnv1a(&[key.as_bytes()]);
        let key_field = self.fields.dedup_key;
        // Only an event whose key was seen before needs a delete: a first
        // ingest adds without any (deletes are what slows a bulk load).
        let replace = match self.kept.get(&hash) {
            Some(&kept) if kept >= rich => return Ok(()),
            Some(_) => true,
            None => match self.earlier_richness(
                &key,
                hash,
                event.timestamp.timestamp_nanos_opt().unwrap_or_default(),
            )? {
                Some(earlier) if earlier >= rich => {
                    self.kept.insert(hash, earlier);
                    return Ok(());
                }
                Some(_) => true,
                None => false,
            },
        };
        self.kept.insert(hash, rich);
        let doc = self.fields.document(event, &key);
        let writer = self.writer()?;
        if replace {
            writer.delete_term(Term::from_field_text(key_field, &key));
        }
        writer.add_document(doc)?;
        self.uncommitted += 1;
        if self.uncommitted >= COMMIT_EVERY
            || (self.uncommitted.is_multiple_of(1024) && self.last_commit.elapsed() >= COMMIT_AFTER)
        {
            self.commit()?;
        }
        Ok(())
    }

    /// How much the copy of `key` indexed before this handle wrote says,
    /// when there is one.
    fn earlier_richness(
        &mut self,
        key: &str,
        hash: u64,
        nanos: i64,
    ) -> Result<Option<u32>, IndexError> {
        if self.had_events.is_none() {
            // Decided under the writer lock, on a fresh view: no other
            // writer can add events after this.
            self.writer()?;
            self.reader.reload()?;
            self.had_events = Some(self.reader.searcher().num_docs() > 0);
        }
        let maybe_here = self.had_events == Some(true)
            || self.forgotten.as_ref().is_some_and(|f| f.may_contain(hash));
        if !maybe_here {
            return Ok(None);
        }
        let before = self.before.get_or_insert_with(|| {
            let searcher = self.reader.searcher();
            (searcher.num_docs() > 0).then(|| Before::new(searcher))
        });
        let Some(before) = before else {
            return Ok(None);
        };
        let term = Term::from_field_text(self.fields.dedup_key, key);
        if !before.may_hold(&term, nanos)? {
            return Ok(None);
        }
        let searcher = &before.searcher;
        let query = tantivy::query::TermQuery::new(term, tantivy::schema::IndexRecordOption::Basic);
        let top = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        let Some((_, address)) = top.first() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(*address)?;
        let json = doc
            .get_first(self.fields.source)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let parsed = parsers::parse_bytes(json.as_bytes(), &parsers::ParseOptions::default());
        Ok(Some(
            parsed
                .events
                .first()
                .map(parsers::dedup::richness)
                .unwrap_or(0),
        ))
    }

    /// Makes everything added so far durable and visible to searches.
    pub fn commit(&mut self) -> Result<(), IndexError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.commit()?;
        }
        self.uncommitted = 0;
        self.last_commit = std::time::Instant::now();
        self.reader.reload()?;
        if self.kept.len() > self.kept_max {
            // Everything remembered is committed now, so the index itself
            // can answer for it: a long-running collector stays within
            // bounded memory, and the old snapshot stops pinning segments
            // that merges have replaced.
            let capacity = self.kept_max.saturating_mul(FORGOTTEN_PER_KEPT);
            let forgotten = self
                .forgotten
                .get_or_insert_with(|| Forgotten::new(capacity));
            for hash in self.kept.keys() {
                forgotten.insert(*hash);
            }
            self.kept.clear();
            self.before = None;
        }
        Ok(())
    }

    /// Commits, then waits until the writer's pending segment merges have
    /// finished and frees the writer (the next `add` opens a new one). An
    /// index handle that is dropped instead stops its merges where they
    /// are: call this before measuring what an index occupies on disk.
    pub fn commit_and_wait_for_merges(&mut self) -> Result<(), IndexError> {
        self.commit()?;
        if let Some(writer) = self.writer.take() {
            writer.wait_merging_threads()?;
        }
        self.reader.reload()?;
        Ok(())
    }

    /// How many dedup keys this handle remembers between commits (default
    /// 2 M, about 60 MB). Past that, at the next commit, it forgets them
    /// into a Bloom filter (16 times as many keys in 10 bits each) and
    /// looks a key the filter may hold up in the index; once the filter is
    /// full every new key is looked up, which is slower per event but keeps
    /// a collector that runs for months in bounded memory.
    pub fn set_dedup_memory(&mut self, keys: usize) {
        self.kept_max = keys;
    }

    /// Makes searches through this handle see what other handles (or an
    /// ingest in another process) have committed since it was opened.
    /// Each search runs on one committed snapshot.
    pub fn refresh(&self) -> Result<(), IndexError> {
        self.reader.reload()?;
        Ok(())
    }

    /// Number of events in the committed index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// True when the committed index holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn query(&self, request: &SearchRequest) -> Result<Box<dyn Query>, IndexError> {
        let original = request.query.trim();
        let text = original;
        let mut parser = QueryParser::for_index(&self.index, vec![self.fields.message]);
        parser.set_conjunction_by_default();
        parser.allow_regexes();
        let rewritten = query::rewrite_wildcards(text);
        let text = rewritten.as_str();
        let parsed: Box<dyn Query> = if text.is_empty() || text == "*" {
            Box::new(AllQuery)
        } else {
            match parser.parse_query(text) {
                Ok(query) => query,
                // `NOT level:information` alone means "all events but those".
                Err(tantivy::query::QueryParserError::AllButQueryForbidden) => parser
                    .parse_query(&format!("* {text}"))
                    .map_err(|source| query::explain_error(original, &source.to_string()))?,
                Err(source) => return Err(query::explain_error(original, &source.to_string())),
            }
        };
        if request.since.is_none() && request.until.is_none() {
            return Ok(parsed);
        }
        let bound = |t: Option<DateTime<Utc>>, inclusive: bool| match t {
            None => Bound::Unbounded,
            Some(t) => {
                let term = Term::from_field_date(
                    self.fields.timestamp,
                    tantivy::DateTime::from_timestamp_nanos(
                        t.timestamp_nanos_opt().unwrap_or(i64::MAX),
                    ),
                );
                if inclusive {
                    Bound::Included(term)
                } else {
                    Bound::Excluded(term)
                }
            }
        };
        let range = RangeQuery::new(bound(request.since, true), bound(request.until, false));
        Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Must, parsed),
            (Occur::Must, Box::new(range)),
        ])))
    }

    /// Runs a search: the total count and the newest hits.
    pub fn search(&self, request: &SearchRequest) -> Result<Hits, IndexError> {
        let query = self.query(request)?;
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(request.limit.max(1))
            .order_by_fast_field::<tantivy::DateTime>(schema::TIMESTAMP, Order::Desc);
        let (total, docs) = searcher.search(&query, &(Count, top))?;
        let mut hits = Vec::with_capacity(docs.len());
        for (_, address) in docs.into_iter().take(request.limit) {
            hits.push(self.hit(&searcher, address)?);
        }
        Ok(Hits { total, hits })
    }

    /// The events a search matches, read back from their stored ECS JSON
    /// (origin file and offset included), newest first, and how many
    /// matched in all: more than were returned means `limit` cut the rest,
    /// which the caller must say.
    pub fn events(&self, request: &SearchRequest) -> Result<(Vec<Event>, usize), IndexError> {
        let hits = self.search(request)?;
        let options = parsers::ParseOptions {
            format: Some(parsers::Format::EcsJson),
            ..parsers::ParseOptions::default()
        };
        let mut events = Vec::with_capacity(hits.hits.len());
        for hit in &hits.hits {
            let out = parsers::parse_bytes(hit.json.as_bytes(), &options);
            let origin = serde_json::from_str::<serde_json::Value>(&hit.json).ok();
            let log = origin.as_ref().and_then(|v| v.get("log"));
            for mut event in out.events {
                if let Some(log) = log {
                    event.origin.path = log
                        .pointer("/file/path")
                        .and_then(|p| p.as_str())
                        .map(std::sync::Arc::from);
                    event.origin.offset = log.get("offset").and_then(|o| o.as_u64()).unwrap_or(0);
                }
                events.push(event);
            }
        }
        Ok((events, hits.total))
    }

    fn hit(&self, searcher: &tantivy::Searcher, address: DocAddress) -> Result<Hit, IndexError> {
        let doc: TantivyDocument = searcher.doc(address)?;
        let json = doc
            .get_first(self.fields.source)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let timestamp = doc
            .get_first(self.fields.timestamp)
            .and_then(|v| v.as_datetime())
            .and_then(|t| DateTime::<Utc>::from_timestamp_nanos(t.into_timestamp_nanos()).into())
            .unwrap_or_default();
        Ok(Hit { timestamp, json })
    }

    /// Runs a tantivy aggregation (Elasticsearch request shape) over the
    /// events a search matches and returns its result as JSON.
    fn aggregate(
        &self,
        request: &SearchRequest,
        aggregation: serde_json::Value,
    ) -> Result<serde_json::Value, IndexError> {
        let bad = |e: serde_json::Error| IndexError::Query {
            query: request.query.clone(),
            reason: e.to_string(),
            position: None,
        };
        let query = self.query(request)?;
        let aggs: tantivy::aggregation::agg_req::Aggregations =
            serde_json::from_value(aggregation).map_err(bad)?;
        let collector =
            tantivy::aggregation::AggregationCollector::from_aggs(aggs, Default::default());
        let result = self.reader.searcher().search(&query, &collector)?;
        serde_json::to_value(result).map_err(bad)
    }

    /// Deletes every event older than `cutoff`; returns how many went.
    pub fn prune(&mut self, cutoff: DateTime<Utc>) -> Result<u64, IndexError> {
        let before = self.len();
        let upper = Term::from_field_date(
            self.fields.timestamp,
            tantivy::DateTime::from_timestamp_nanos(
                cutoff.timestamp_nanos_opt().unwrap_or(i64::MAX),
            ),
        );
        let query = RangeQuery::new(Bound::Unbounded, Bound::Excluded(upper));
        self.writer()?.delete_query(Box::new(query))?;
        self.commit()?;
        Ok(before.saturating_sub(self.len()))
    }

    /// Counts the events matching a search in time buckets of `interval`
    /// (for the web UI's histogram): `(bucket start, count)`, oldest first.
    pub fn histogram(
        &self,
        request: &SearchRequest,
        interval: chrono::Duration,
    ) -> Result<Vec<(DateTime<Utc>, u64)>, IndexError> {
        let millis = interval.num_milliseconds().max(1);
        let value = self.aggregate(
            request,
            serde_json::json!({
                "h": { "date_histogram": { "field": schema::TIMESTAMP, "fixed_interval": format!("{millis}ms"), "min_doc_count": 1 } }
            }),
        )?;
        Ok(value["h"]["buckets"]
            .as_array()
            .map(|buckets| {
                buckets
                    .iter()
                    .filter_map(|b| {
                        let key = b["key"].as_f64()? as i64;
                        let start = DateTime::<Utc>::from_timestamp_millis(key)?;
                        Some((start, b["doc_count"].as_u64().unwrap_or(0)))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Counts the events matching a search, grouped by an exact field
    /// (`host`, `event_id`, `level`, `channel`, `provider`, `vm_name`,
    /// `vm_id`, `hresult`), largest first.
    pub fn count_by(
        &self,
        request: &SearchRequest,
        field: &str,
    ) -> Result<Vec<(String, u64)>, IndexError> {
        let column = schema::group_column(field)
            .ok_or_else(|| IndexError::UnknownField(field.to_owned()))?;
        let value = self.aggregate(
            request,
            serde_json::json!({
                "by": { "terms": { "field": column, "size": 10_000, "min_doc_count": 1 } }
            }),
        )?;
        let mut out: Vec<(String, u64)> = value["by"]["buckets"]
            .as_array()
            .map(|buckets| {
                buckets
                    .iter()
                    .map(|b| {
                        let key = match &b["key"] {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (key, b["doc_count"].as_u64().unwrap_or(0))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }
}
