//! Fills in the VM id of events that name a VM but not its id, or that name
//! neither (1106, 21111 …), from the other events of the same input: a VM
//! name seen elsewhere with its id, or the one VM that Hyper-V events of the
//! same host name within a couple of seconds. Works over a bounded window
//! of events, so memory stays bounded; inferred ids are marked as such.

use std::collections::{HashMap, VecDeque};

use chrono::Duration;
use compact_str::CompactString;

use crate::event::{Event, EventHead};

/// Events held back for context.
const WINDOW: usize = 1024;
/// Distinct VM names remembered per input.
const MAX_NAMES: usize = 65_536;
/// How far apart (same host) an event may be to lend its VM id.
const NEARBY_SECONDS: i64 = 2;

/// A Hyper-V event that named its VM, kept for context after it was handed on.
struct Seen {
    host: CompactString,
    timestamp: chrono::DateTime<chrono::Utc>,
    vm_id: CompactString,
}

/// What the resolver reads of an event: the whole [`Event`], or the
/// [`EventHead`] of one whose JSON line a worker thread already wrote.
pub(crate) trait Subject {
    fn host(&self) -> &str;
    fn timestamp(&self) -> chrono::DateTime<chrono::Utc>;
    fn vm_name(&self) -> Option<&CompactString>;
    fn vm_id(&self) -> Option<&CompactString>;
    fn vm_id_inferred(&self) -> bool;
    fn hyperv(&self) -> bool;
}

impl Subject for Event {
    fn host(&self) -> &str {
        &self.host
    }
    fn timestamp(&self) -> chrono::DateTime<chrono::Utc> {
        self.timestamp
    }
    fn vm_name(&self) -> Option<&CompactString> {
        self.vm_name.as_ref()
    }
    fn vm_id(&self) -> Option<&CompactString> {
        self.vm_id.as_ref()
    }
    fn vm_id_inferred(&self) -> bool {
        self.vm_id_inferred
    }
    fn hyperv(&self) -> bool {
        is_hyperv(self)
    }
}

impl Subject for EventHead {
    fn host(&self) -> &str {
        &self.host
    }
    fn timestamp(&self) -> chrono::DateTime<chrono::Utc> {
        self.timestamp
    }
    fn vm_name(&self) -> Option<&CompactString> {
        self.vm_name.as_ref()
    }
    fn vm_id(&self) -> Option<&CompactString> {
        self.vm_id.as_ref()
    }
    fn vm_id_inferred(&self) -> bool {
        false
    }
    fn hyperv(&self) -> bool {
        self.hyperv
    }
}

/// An event held back for context: whole, or (never one the resolver could
/// change, see [`is_candidate`]) as its head and JSON line.
pub(crate) enum Held {
    Event(Event),
    Line(EventHead, Vec<u8>),
}

impl Held {
    fn subject(&self) -> &dyn Subject {
        match self {
            Held::Event(event) => event,
            Held::Line(head, _) => head,
        }
    }
}

#[derive(Default)]
pub(crate) struct VmResolver {
    names: HashMap<CompactString, CompactString>,
    pending: VecDeque<Held>,
    recent: VecDeque<Seen>,
}

pub(crate) fn is_hyperv(event: &Event) -> bool {
    has_hyperv(event.provider.as_bytes()) || has_hyperv(event.channel.as_bytes())
}

fn has_hyperv(name: &[u8]) -> bool {
    memchr::memchr_iter(b'H', name).any(|i| name[i..].starts_with(b"Hyper-V"))
}

/// True when the resolver may fill in this event's VM id: a Hyper-V event
/// without one. Only these must reach it whole; any other may be handed on
/// as its [`EventHead`] and JSON line.
pub(crate) fn is_candidate(event: &Event, hyperv: bool) -> bool {
    event.vm_id.is_none() && hyperv
}

impl VmResolver {
    /// True when `event` can be handed on at once (nothing held, nothing
    /// to infer); the caller then calls [`VmResolver::seen`], else `push`.
    pub(crate) fn passes(&self, event: &dyn Subject) -> bool {
        self.pending.is_empty() && (event.vm_id().is_some() || !event.hyperv())
    }

    /// Notes an event handed on without `push`.
    pub(crate) fn seen(&mut self, event: &dyn Subject) {
        self.learn_name(event);
        self.remember(event);
    }

    /// Holds an event back for context; adds what became ready to `ready`.
    pub(crate) fn push(&mut self, held: Held, ready: &mut Vec<Held>) {
        self.learn_name(held.subject());
        self.pending.push_back(held);
        if self.pending.len() >= WINDOW {
            self.release(WINDOW / 2, ready);
        }
    }

    /// Remembers which id a VM name stands for, from an event that says both.
    fn learn_name(&mut self, event: &dyn Subject) {
        if let (Some(name), Some(id)) = (event.vm_name(), event.vm_id()) {
            if !event.vm_id_inferred() && self.names.len() < MAX_NAMES {
                self.names
                    .entry(name.to_lowercase())
                    .or_insert_with(|| id.clone());
            }
        }
    }

    /// Hands on everything still held.
    pub(crate) fn finish(&mut self, ready: &mut Vec<Held>) {
        let n = self.pending.len();
        self.release(n, ready);
    }

    fn release(&mut self, n: usize, ready: &mut Vec<Held>) {
        for i in 0..n.min(self.pending.len()) {
            let Held::Event(event) = &self.pending[i] else {
                continue;
            };
            if event.vm_id.is_none() && is_hyperv(event) {
                let id = self.lookup(i);
                if let (Some(id), Held::Event(event)) = (id, &mut self.pending[i]) {
                    event.vm_id = Some(id);
                    event.vm_id_inferred = true;
                }
            }
        }
        for _ in 0..n {
            let Some(held) = self.pending.pop_front() else {
                break;
            };
            self.remember(held.subject());
            ready.push(held);
        }
    }

    fn remember(&mut self, event: &dyn Subject) {
        if let (Some(id), false, true) = (event.vm_id(), event.vm_id_inferred(), event.hyperv()) {
            if self.recent.len() >= WINDOW {
                self.recent.pop_front();
            }
            self.recent.push_back(Seen {
                host: event.host().into(),
                timestamp: event.timestamp(),
                vm_id: id.clone(),
            });
        }
    }

    fn lookup(&self, i: usize) -> Option<CompactString> {
        let event = self.pending[i].subject();
        if let Some(name) = event.vm_name() {
            return self.names.get(name.to_lowercase().as_str()).cloned();
        }
        let near = Duration::seconds(NEARBY_SECONDS);
        let held = self.pending.iter().filter_map(|other| {
            let other = other.subject();
            let id = other.vm_id()?;
            (!other.vm_id_inferred() && other.hyperv()).then_some((
                other.host(),
                other.timestamp(),
                id,
            ))
        });
        let seen = self
            .recent
            .iter()
            .map(|s| (s.host.as_str(), s.timestamp, &s.vm_id));
        let mut found: Option<&CompactString> = None;
        for (host, timestamp, id) in held.chain(seen) {
            if host != event.host() || (timestamp - event.timestamp()).abs() > near {
                continue;
            }
            match found {
                Some(seen) if seen != id => return None,
                _ => found = Some(id),
            }
        }
        found.cloned()
    }
}
