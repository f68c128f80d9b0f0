//! The collector wired to an index stage, as `relive serve` wires it but
//! without correlation (shared by the tests and the collector benchmark).

use std::time::Duration;

/// A collector whose batches go through the index stage (what `relive
/// serve` wires, without correlation): acks are done after each commit.
pub struct Indexed {
    collector: Option<ingest::Collector>,
    index: Option<std::thread::JoinHandle<()>>,
}

impl Indexed {
    /// Starts the collector and an index stage under `options.data`.
    pub fn start(options: ingest::CollectorOptions, commit: Duration) -> Indexed {
        let index = index::EventIndex::open(&options.data.join("index")).expect("index opens");
        let store = index::MetricStore::open(&options.data.join("metrics"));
        let (tx, rx) = pipeline::bounded(16, Default::default());
        let (ctx, mut crx) = pipeline::bounded::<pipeline::Committed>(16, Default::default());
        let stage = index::stage::IndexStage::new(
            index,
            store,
            index::stage::IndexStageOptions {
                commit_interval: commit,
                ..Default::default()
            },
            pipeline::StageMetrics::new("index"),
        );
        let handle = std::thread::spawn(move || {
            let acker = std::thread::spawn(move || loop {
                match pipeline::Source::recv(&mut crx, Duration::from_millis(100)) {
                    pipeline::Recv::Item(c) => c.ack.done().expect("cursor stored"),
                    pipeline::Recv::Idle => {}
                    pipeline::Recv::Closed => return,
                }
            });
            stage.run(Box::new(rx), Box::new(ctx));
            acker.join().unwrap();
        });
        let collector = ingest::Collector::start(options, Box::new(tx)).expect("collector starts");
        Indexed {
            collector: Some(collector),
            index: Some(handle),
        }
    }

    /// The collector.
    pub fn collector(&self) -> &ingest::Collector {
        self.collector.as_ref().expect("running")
    }

    /// Stops the collector and waits for the index stage to commit.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(c) = self.collector.take() {
            c.shutdown();
        }
        if let Some(i) = self.index.take() {
            i.join().expect("index stage ends");
        }
    }
}

impl Drop for Indexed {
    fn drop(&mut self) {
        self.stop();
    }
}
