//! Property tests over page sets, dirty patterns and whole migrations.

use std::collections::BTreeSet;
use std::sync::Arc;

use migrate_core::dirty::{AtomicBitmap, DirtyTracker, PageSet};
use migrate_core::memory::GuestMemory;
use migrate_core::report::{MigrationParams, Status};
use migrate_core::workload::{Pattern, WorkloadSpec};
use proptest::prelude::*;

use crate::{host, request};

#[derive(Debug, Clone)]
enum Op {
    Insert(usize),
    Take(usize, usize),
}

fn op(pages: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..pages).prop_map(Op::Insert),
        (0..pages, 1..200usize).prop_map(|(c, n)| Op::Take(c, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A page set behaves as a set: inserts count once, `take` removes
    /// and returns pages in order from the cursor, wrapping, never twice.
    #[test]
    fn page_set_is_a_set(pages in 1usize..700, ops in proptest::collection::vec(op(700), 0..300)) {
        let mut set = PageSet::new(pages);
        let mut model = BTreeSet::new();
        for op in ops {
            match op {
                Op::Insert(p) => {
                    let p = p % pages;
                    prop_assert_eq!(set.insert(p), model.insert(p));
                }
                Op::Take(cursor, n) => {
                    let mut cursor = cursor % pages;
                    let start = cursor;
                    let mut out = Vec::new();
                    set.take(&mut cursor, n, &mut out);
                    let expected: Vec<usize> = model
                        .range(start - start % 64..)
                        .chain(model.range(..start - start % 64))
                        .copied()
                        .take(n)
                        .collect();
                    prop_assert_eq!(&out, &expected);
                    for p in &out {
                        model.remove(p);
                    }
                }
            }
            prop_assert_eq!(set.len(), model.len());
            for p in 0..pages {
                prop_assert_eq!(set.contains(p), model.contains(&p));
            }
        }
    }

    /// Whatever the interleaving of writes and syncs, every page written
    /// after `start` is reported by some sync, and nothing else is.
    #[test]
    fn tracker_reports_exactly_the_written_pages(
        pages in 1usize..500,
        steps in proptest::collection::vec(prop_oneof![(0..500usize).prop_map(Some), Just(None)], 0..400),
    ) {
        let memory = GuestMemory::new(pages);
        let tracker: &AtomicBitmap = memory.dirty();
        memory.write_word(0, 0, 1); // before start: not reported
        tracker.start();
        let mut written = BTreeSet::new();
        let mut reported = PageSet::new(pages);
        for step in steps {
            match step {
                Some(p) => {
                    memory.write_word(p % pages, p, p as u64);
                    written.insert(p % pages);
                }
                None => {
                    tracker.sync_and_clear(&mut reported);
                }
            }
        }
        tracker.sync_and_clear(&mut reported);
        for p in 0..pages {
            prop_assert_eq!(reported.contains(p), written.contains(&p), "page {}", p);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Whole migrations under random dirty patterns: the destination's
    /// memory equals the source's at pause, every time.
    #[test]
    fn migrations_under_random_dirty_patterns_keep_memory_equal(
        mib in 1u64..4,
        ws_pages in 1usize..256,
        rate in prop_oneof![Just(0u64), 1_000u64..50_000],
        random in any::<bool>(),
        cap_mib in prop_oneof![Just(0u64), 2u64..16],
    ) {
        let src = host("HV01", |_| {});
        let dst = host("HV02", |c| c.incoming_paused = true);
        let mut vm = migrate_core::config::VmConfig::new("P1", mib);
        vm.fill_mib = mib / 2;
        vm.workload = Some(WorkloadSpec {
            first_page: 1,
            pages: ws_pages,
            rate,
            pattern: if random { Pattern::Random } else { Pattern::Sequential },
            disk_every: 0,
        });
        src.host.start_vm(vm).unwrap();
        let source_memory: Arc<GuestMemory> = src.host.vm_memory("P1").unwrap();
        let params = MigrationParams {
            max_bandwidth: cap_mib << 20,
            downtime_limit: 50,
            timeout: 20_000,
            timeout_strategy: migrate_core::report::TimeoutStrategy::Force,
            ..MigrationParams::default()
        };
        let report = src.host.migrate(request("P1", &dst, params)).unwrap().wait();
        prop_assert_eq!(report.info.status, Status::Completed, "{:?}", report.error);
        let dest_memory = dst.host.vm_memory("P1").unwrap();
        prop_assert!(dest_memory.same_as(&source_memory), "differ: {:?}", dest_memory.differing_pages(&source_memory));
        src.host.shutdown();
        dst.host.shutdown();
    }
}
