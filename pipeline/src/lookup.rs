//! Reading committed events back: what a stage that keeps state in memory
//! (the correlator) warms up from after a restart. The index implements it;
//! the correlator only sees this trait.

use chrono::{DateTime, Utc};
use parsers::Event;

/// A store of committed events that can be read back by time and event id.
pub trait EventLookup {
    /// Events with one of `event_ids` (any id when `None`) stamped in
    /// `[since, until)` (open ends when `None`), at most `limit` of them,
    /// and how many matched in all (more than returned: `limit` cut them).
    fn events_between(
        &self,
        event_ids: Option<&[u32]>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<(Vec<Event>, usize), LookupError>;
}

/// The store could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read committed events back: {0}")]
pub struct LookupError(pub String);
