//! The workload a VM runs: a thread that writes pages of a working set at a
//! set rate, so a migration has to chase dirty pages (migration.md 5.3: 4
//! bytes into each 4 KiB page per pass, paced).
//!
//! Page 0, word 0 holds the number of passes the workload has completed over
//! its working set: the guest-visible counter. A VM that resumes on the
//! destination continues from the counter in its memory; a counter that
//! goes backwards means a lost page (the QEMU 7.2 TCG symptom).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::disk::GuestDisk;
use crate::memory::GuestMemory;

/// Which pages a workload writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Sweeps the working set in order, wrapping (the benchmark guest).
    #[default]
    Sequential,
    /// Random pages of the working set.
    Random,
}

/// What the workload does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// First page of the working set (page 0 holds the counter).
    #[serde(default = "one")]
    pub first_page: usize,
    /// Pages in the working set.
    pub pages: usize,
    /// Page writes per second (0 = as fast as it can).
    pub rate: u64,
    /// Page order.
    #[serde(default)]
    pub pattern: Pattern,
    /// Also write a disk block after every this many page writes (0 = never).
    #[serde(default)]
    pub disk_every: u32,
}

fn one() -> usize {
    1
}

impl WorkloadSpec {
    /// A working set of `mib` MiB written at `rate` pages/s.
    pub fn mib(mib: u64, rate: u64) -> WorkloadSpec {
        WorkloadSpec {
            first_page: 1,
            pages: (mib as usize) << 8,
            rate,
            pattern: Pattern::Sequential,
            disk_every: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Running,
    PauseRequested,
    Paused,
    Stop,
}

#[derive(Debug)]
struct Control {
    run: Mutex<Run>,
    changed: Condvar,
    throttle: AtomicU32,
    written: AtomicU64,
}

/// A running workload thread.
#[derive(Debug)]
pub struct Workload {
    control: Arc<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
    spec: WorkloadSpec,
}

impl Workload {
    /// Starts writing `memory` as `spec` says, from position `position`
    /// (a resumed VM continues where its source stopped).
    pub fn start(memory: Arc<GuestMemory>, spec: WorkloadSpec, position: u64) -> Workload {
        Workload::start_with(memory, None, spec, position, false)
    }

    /// Like [`Workload::start`], but paused before its first write when
    /// `paused` (a VM that arrives paused, QEMU's `-S`).
    pub fn start_with(
        memory: Arc<GuestMemory>,
        disk: Option<Arc<GuestDisk>>,
        spec: WorkloadSpec,
        position: u64,
        paused: bool,
    ) -> Workload {
        let control = Arc::new(Control {
            run: Mutex::new(if paused { Run::Paused } else { Run::Running }),
            changed: Condvar::new(),
            throttle: AtomicU32::new(0),
            written: AtomicU64::new(0),
        });
        let thread = {
            let control = control.clone();
            let spec = spec.clone();
            std::thread::Builder::new()
                .name("vm-workload".into())
                .spawn(move || run(&memory, disk.as_deref(), &spec, &control, position))
                .expect("spawn workload thread")
        };
        Workload {
            control,
            thread: Mutex::new(Some(thread)),
            spec,
        }
    }

    /// What it runs.
    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// Stops the workload between two writes and waits until it has.
    pub fn pause(&self) {
        let mut run = self.control.run.lock().expect("workload lock");
        if *run == Run::Running {
            *run = Run::PauseRequested;
            self.control.changed.notify_all();
        }
        while *run == Run::PauseRequested {
            run = self.control.changed.wait(run).expect("workload lock");
        }
    }

    /// Lets a paused workload go on.
    pub fn resume(&self) {
        let mut run = self.control.run.lock().expect("workload lock");
        if matches!(*run, Run::Paused | Run::PauseRequested) {
            *run = Run::Running;
            self.control.changed.notify_all();
        }
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        *self.control.run.lock().expect("workload lock") == Run::Paused
    }

    /// Slows the workload by `percent` (auto-converge), 0..=99.
    pub fn set_throttle(&self, percent: u32) {
        self.control
            .throttle
            .store(percent.min(99), Ordering::Relaxed);
    }

    /// The current throttle.
    pub fn throttle(&self) -> u32 {
        self.control.throttle.load(Ordering::Relaxed)
    }

    /// Pages written since it started (the ground truth next to the
    /// tracker's count of newly dirty pages).
    pub fn pages_written(&self) -> u64 {
        self.control.written.load(Ordering::Relaxed)
    }

    /// Stops the thread for good.
    pub fn stop(&self) {
        {
            let mut run = self.control.run.lock().expect("workload lock");
            *run = Run::Stop;
            self.control.changed.notify_all();
        }
        let thread = self.thread.lock().expect("workload lock").take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The position to resume from: the counter in page 0 says how many
/// passes were completed; the workload restarts at the next pass.
pub fn position_of(memory: &GuestMemory, spec: &WorkloadSpec) -> u64 {
    memory
        .read_word(0, 0)
        .saturating_mul(spec.pages.max(1) as u64)
}

fn run(
    memory: &GuestMemory,
    disk: Option<&GuestDisk>,
    spec: &WorkloadSpec,
    control: &Control,
    mut position: u64,
) {
    let mut disk_failed = false;
    let pages = spec
        .pages
        .min(memory.pages().saturating_sub(spec.first_page));
    if pages == 0 {
        return;
    }
    let started = Instant::now();
    let mut allowed = 0f64;
    let mut last = started;
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ position;
    loop {
        {
            let mut run = control.run.lock().expect("workload lock");
            loop {
                match *run {
                    Run::Running => break,
                    Run::Stop => return,
                    Run::PauseRequested => {
                        *run = Run::Paused;
                        control.changed.notify_all();
                    }
                    Run::Paused => {
                        run = control.changed.wait(run).expect("workload lock");
                        last = Instant::now();
                    }
                }
            }
        }
        // Pace in slices of about a millisecond.
        let now = Instant::now();
        let throttle = f64::from(control.throttle.load(Ordering::Relaxed)) / 100.0;
        let budget = if spec.rate == 0 {
            256
        } else {
            allowed += (now - last).as_secs_f64() * spec.rate as f64 * (1.0 - throttle);
            allowed = allowed.min(spec.rate as f64 / 10.0 + 1.0);
            allowed as u64
        };
        last = now;
        if budget == 0 {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        for _ in 0..budget.min(256) {
            let pass = position / pages as u64;
            let offset = (position % pages as u64) as usize;
            let page = spec.first_page
                + match spec.pattern {
                    Pattern::Sequential => offset,
                    Pattern::Random => {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % pages as u64) as usize
                    }
                };
            // 4 bytes of pass number and 4 of page: a store per page.
            memory.write_word(page, pass as usize, (pass << 32) | page as u64);
            if let Some(disk) = disk.filter(|_| spec.disk_every > 0 && !disk_failed) {
                if position.is_multiple_of(u64::from(spec.disk_every)) {
                    let block = (position / u64::from(spec.disk_every)) as usize;
                    if let Err(e) = disk.write_u32(block, pass as usize, pass as u32) {
                        tracing::warn!(error = %e, path = %disk.path().display(), "the workload cannot write its disk");
                        disk_failed = true;
                    }
                }
            }
            position += 1;
            if offset + 1 == pages {
                memory.write_word(0, 0, pass + 1);
            }
            control.written.fetch_add(1, Ordering::Relaxed);
        }
        if spec.rate != 0 {
            allowed -= budget.min(256) as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_workload_pauses_and_counts_passes() {
        let memory = Arc::new(GuestMemory::new(65));
        let w = Workload::start(
            memory.clone(),
            WorkloadSpec {
                first_page: 1,
                pages: 64,
                rate: 20_000,
                pattern: Pattern::Sequential,
                disk_every: 0,
            },
            0,
        );
        std::thread::sleep(Duration::from_millis(200));
        w.pause();
        let written = w.pages_written();
        assert!(
            (1_000..=8_000).contains(&written),
            "paced near 20k/s: {written}"
        );
        let counter = memory.read_word(0, 0);
        assert!(counter >= 15, "{counter} passes over 64 pages");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(w.pages_written(), written, "no write while paused");
        w.resume();
        std::thread::sleep(Duration::from_millis(50));
        assert!(w.pages_written() > written);
        w.stop();
    }
}
