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
    /// tantivy failed.
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index directory could not be opened.
    #[error("index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    /// A query that does not parse.
    #[error("bad query {query:?}: {reason}")]
    Query {
        /// The query text.
        query: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--count-by` on a field that cannot be grouped on.
    #[error("cannot count by {0:?}: use host, event_id, level, channel, provider, vm_name, vm_id or hresult")]
    UnknownField(String),
}
