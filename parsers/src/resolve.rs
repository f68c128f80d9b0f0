//! Fills in the VM id of events that name a VM but not its id, or that name
//! neither (1106, 21111 …), from the other events of the same input: a VM
//! name seen elsewhere with its id, or the one VM that Hyper-V events of the
//! same host name within a couple of seconds. Works over a bounded window
//! of events, so memory stays bounded; inferred ids are marked as such.

use std::collections::{HashMap, VecDeque};

use chrono::Duration;
use compact_str::CompactString;

use crate::event::Event;

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

#[derive(Default)]
pub(crate) struct VmResolver {
    names: HashMap<CompactString, CompactString>,
    pending: VecDeque<Event>,
    recent: VecDeque<Seen>,
}

fn is_hyperv(event: &Event) -> bool {
    has_hyperv(event.provider.as_bytes()) || has_hyperv(event.channel.as_bytes())
}

fn has_hyperv(name: &[u8]) -> bool {
    memchr::memchr_iter(b'H', name).any(|i| name[i..].starts_with(b"Hyper-V"))
}

impl VmResolver {
    /// True when `event` can be handed on at once (nothing held, nothing
    /// to infer); the caller then calls [`VmResolver::seen`], else `push`.
    pub(crate) fn passes(&self, event: &Event) -> bool {
        self.pending.is_empty() && (event.vm_id.is_some() || !is_hyperv(event))
    }

    /// Notes an event handed on without `push`.
    pub(crate) fn seen(&mut self, event: &Event) {
        self.learn_name(event);
        self.remember(event);
    }

    /// Holds an event back for context; adds what became ready to `ready`.
    pub(crate) fn push(&mut self, event: Event, ready: &mut Vec<Event>) {
        self.learn_name(&event);
        self.pending.push_back(event);
        if self.pending.len() >= WINDOW {
            self.release(WINDOW / 2, ready);
        }
    }

    /// Remembers which id a VM name stands for, from an event that says both.
    fn learn_name(&mut self, event: &Event) {
        if let (Some(name), Some(id)) = (&event.vm_name, &event.vm_id) {
            if !event.vm_id_inferred && self.names.len() < MAX_NAMES {
                self.names
                    .entry(name.to_lowercase())
                    .or_insert_with(|| id.clone());
            }
        }
    }

    /// Hands on everything still held.
    pub(crate) fn finish(&mut self, ready: &mut Vec<Event>) {
        let n = self.pending.len();
        self.release(n, ready);
    }

    fn release(&mut self, n: usize, ready: &mut Vec<Event>) {
        for i in 0..n.min(self.pending.len()) {
            if self.pending[i].vm_id.is_none() && is_hyperv(&self.pending[i]) {
                let id = self.lookup(i);
                if let Some(id) = id {
                    self.pending[i].vm_id = Some(id);
                    self.pending[i].vm_id_inferred = true;
                }
            }
        }
        for _ in 0..n {
            let Some(event) = self.pending.pop_front() else {
                break;
            };
            self.remember(&event);
            ready.push(event);
        }
    }

    fn remember(&mut self, event: &Event) {
        if let (Some(id), false, true) = (&event.vm_id, event.vm_id_inferred, is_hyperv(event)) {
            if self.recent.len() >= WINDOW {
                self.recent.pop_front();
            }
            self.recent.push_back(Seen {
                host: event.host.clone(),
                timestamp: event.timestamp,
                vm_id: id.clone(),
            });
        }
    }

    fn lookup(&self, i: usize) -> Option<CompactString> {
        let event = &self.pending[i];
        if let Some(name) = &event.vm_name {
            return self.names.get(name.to_lowercase().as_str()).cloned();
        }
        let near = Duration::seconds(NEARBY_SECONDS);
        let held = self.pending.iter().filter_map(|other| {
            let id = other.vm_id.as_ref()?;
            (!other.vm_id_inferred && is_hyperv(other)).then_some((
                &other.host,
                other.timestamp,
                id,
            ))
        });
        let seen = self.recent.iter().map(|s| (&s.host, s.timestamp, &s.vm_id));
        let mut found: Option<&CompactString> = None;
        for (host, timestamp, id) in held.chain(seen) {
            if *host != event.host || (timestamp - event.timestamp).abs() > near {
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
