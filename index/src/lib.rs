//! `index` will own relive's searchable store: the tantivy event index on disk
//! (`EventIndex`: schema, writer with a commit policy, searcher, the
//! Lucene-style query language with short field names) and the migration
//! metrics store (Parquet partitioned by day, read lazily with polars for
//! `relive stats`).
//!
//! Nothing is implemented yet; see the searchable-index issue.
#![deny(missing_docs)]
