//! The tantivy schema: one field per `Event` field, named as admins type
//! them in queries.

use std::collections::BTreeMap;

use parsers::Event;
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, IndexRecordOption, JsonObjectOptions, NumericOptions,
    Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, TEXT,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer};
use tantivy::{Index, TantivyDocument};

/// Tokenizer for exact-match fields that match regardless of case.
pub const KEYWORD: &str = "keyword_lower";
/// The time field.
pub const TIMESTAMP: &str = "timestamp";

/// Handles to every field.
pub struct Fields {
    /// Event time (fast date).
    pub timestamp: Field,
    /// Event id.
    pub event_id: Field,
    /// EventRecordID.
    pub record_id: Field,
    /// Host as logged and its short name (both match `host:`).
    pub host: Field,
    /// Host as logged (the `--count-by host` column).
    pub host_name: Field,
    /// Channel.
    pub channel: Field,
    /// Provider.
    pub provider: Field,
    /// Level name.
    pub level: Field,
    /// VM name.
    pub vm_name: Field,
    /// VM id.
    pub vm_id: Field,
    /// First HRESULT.
    pub hresult: Field,
    /// Message text.
    pub message: Field,
    /// `data.<Name>`: every EventData/UserData field.
    pub data: Field,
    /// Input format name.
    pub format: Field,
    /// The stored ECS JSON.
    pub source: Field,
    /// The dedup key.
    pub dedup_key: Field,
}

/// The fast column a `--count-by` name groups on.
pub fn group_column(field: &str) -> Option<&'static str> {
    Some(match field {
        "host" | "host_name" => "host_name",
        "event_id" => "event_id",
        "level" => "level",
        "channel" => "channel",
        "provider" => "provider",
        "vm_name" => "vm_name",
        "vm_id" => "vm_id",
        "hresult" => "hresult",
        "format" => "format",
        _ => return None,
    })
}

fn keyword(fast: bool, layout: u32) -> TextOptions {
    // One token per value: no frequencies or positions to keep (wildcards
    // run as regex terms, see `query`). Layout 1 kept positions here, which
    // cost indexing time and answered no query.
    let record = if layout == 1 {
        IndexRecordOption::WithFreqsAndPositions
    } else {
        IndexRecordOption::Basic
    };
    let options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(KEYWORD)
            .set_index_option(record),
    );
    if fast {
        // Grouping shows values as logged, not lower-cased.
        options.set_fast("raw")
    } else {
        options
    }
}

/// Builds the schema relive writes.
pub fn build() -> (Schema, Fields) {
    build_layout(crate::SCHEMA_VERSION)
}

/// Builds the schema of an index layout (1 or 2): the same fields in the
/// same order, indexed differently.
pub fn build_layout(layout: u32) -> (Schema, Fields) {
    let mut s = Schema::builder();
    let timestamp = s.add_date_field(
        TIMESTAMP,
        DateOptions::from(INDEXED | STORED | FAST).set_precision(DateTimePrecision::Nanoseconds),
    );
    let event_id = s.add_u64_field("event_id", NumericOptions::from(INDEXED | FAST));
    let record_id = s.add_u64_field("record_id", NumericOptions::from(INDEXED));
    let host = s.add_text_field("host", keyword(false, layout));
    let host_name = s.add_text_field("host_name", TextOptions::default().set_fast("raw"));
    let channel = s.add_text_field("channel", keyword(true, layout));
    let provider = s.add_text_field("provider", keyword(true, layout));
    let level = s.add_text_field("level", keyword(true, layout));
    let vm_name = s.add_text_field("vm_name", keyword(true, layout));
    let vm_id = s.add_text_field("vm_id", keyword(true, layout));
    let hresult = s.add_text_field("hresult", keyword(true, layout));
    let message = s.add_text_field("message", TEXT);
    let data = s.add_json_field(
        "data",
        JsonObjectOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let format = s.add_text_field("format", keyword(true, layout));
    let source = s.add_text_field("source", STORED);
    let dedup_key = s.add_text_field(
        "dedup_key",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic),
        ),
    );
    let fields = Fields {
        timestamp,
        event_id,
        record_id,
        host,
        host_name,
        channel,
        provider,
        level,
        vm_name,
        vm_id,
        hresult,
        message,
        data,
        format,
        source,
        dedup_key,
    };
    (s.build(), fields)
}

/// Registers the tokenizers the schema names.
pub fn register_tokenizers(index: &Index) {
    index.tokenizers().register(
        KEYWORD,
        TextAnalyzer::builder(RawTokenizer::default())
            .filter(LowerCaser)
            .build(),
    );
}

impl Fields {
    /// The document for an event.
    pub fn document(&self, event: &Event, key: &str) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        let nanos = event.timestamp.timestamp_nanos_opt().unwrap_or_default();
        doc.add_date(
            self.timestamp,
            tantivy::DateTime::from_timestamp_nanos(nanos),
        );
        doc.add_u64(self.event_id, u64::from(event.event_id));
        if let Some(record_id) = event.record_id {
            doc.add_u64(self.record_id, record_id);
        }
        if !event.host.is_empty() {
            doc.add_text(self.host, &event.host);
            let short = event.short_host();
            if short != event.host {
                doc.add_text(self.host, short);
            }
            doc.add_text(self.host_name, &event.host);
        }
        let mut text = |field: Field, value: &str| {
            if !value.is_empty() {
                doc.add_text(field, value);
            }
        };
        text(self.channel, &event.channel);
        text(self.provider, &event.provider);
        text(self.level, event.level.as_str());
        text(self.vm_name, event.vm_name.as_deref().unwrap_or_default());
        text(self.vm_id, event.vm_id.as_deref().unwrap_or_default());
        text(self.hresult, event.hresult.as_deref().unwrap_or_default());
        text(self.message, &event.message);
        text(
            self.format,
            event.origin.format.map(|f| f.name()).unwrap_or_default(),
        );
        text(self.dedup_key, key);
        let json = event.to_json();
        text(self.source, &json);
        if !event.data.is_empty() || event.vm_name.is_some() || event.vm_id.is_some() {
            use tantivy::schema::OwnedValue;
            // Built straight as tantivy values, without a serde_json detour.
            let mut map: BTreeMap<String, OwnedValue> = BTreeMap::new();
            for (name, value) in event.data.iter() {
                map.insert(name.to_owned(), OwnedValue::Str(value.to_owned()));
            }
            if let Some(vm_name) = &event.vm_name {
                map.entry("VmName".to_owned())
                    .or_insert_with(|| OwnedValue::Str(vm_name.to_string()));
            }
            if let Some(vm_id) = &event.vm_id {
                map.entry("VmId".to_owned())
                    .or_insert_with(|| OwnedValue::Str(vm_id.to_string()));
            }
            doc.add_object(self.data, map);
        }
        doc
    }
}
