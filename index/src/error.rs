//! Errors of the event index.

/// What went wrong with the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The data directory could not be created or read.
    #[error("cannot use index directory {path}")]
    Io {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The index on disk was written with another schema.
    #[error("the index in {path} was written by another version of relive (index layout {found}, this relive writes {}); move it away or delete it and ingest again", crate::SCHEMA_VERSION)]
    Version {
        /// The directory.
        path: String,
        /// The layout version found (0 = none recorded).
        found: u32,
    },
    /// The metric store (Parquet, polars) failed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// tantivy failed.
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index directory could not be opened.
    #[error("index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    /// A query that does not parse.
    #[error("bad query: {reason}\n  {query}\n  {}", caret(*position))]
    Query {
        /// The query text as the user wrote it.
        query: String,
        /// What is wrong with it.
        reason: String,
        /// Character position of the problem, when known.
        position: Option<usize>,
    },
    /// `--count-by` on a field that cannot be grouped on.
    #[error("cannot count by {0:?}: use host, event_id, level, channel, provider, vm_name, vm_id or hresult")]
    UnknownField(String),
}

fn caret(position: Option<usize>) -> String {
    match position {
        Some(p) => format!("{}^", " ".repeat(p)),
        None => String::new(),
    }
}
