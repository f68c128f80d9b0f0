//! Dirty-page tracking behind one trait, and the page sets it produces.
//!
//! [`AtomicBitmap`] is the cooperative tracker: the workload marks each page
//! it writes (see `GuestMemory::write_word`). `sync_and_clear` swaps every
//! word of the bitmap to zero *before* the migration reads the pages it
//! returns, so a write that lands after the swap is caught by the next sync
//! (the re-arm order QEMU 7.2's TCG path got wrong; migration.md 4.6).

use std::sync::atomic::{AtomicU64, Ordering};

/// A dirty-page tracker.
pub trait DirtyTracker: Send + Sync {
    /// Starts tracking: everything written from now on is reported.
    fn start(&self);
    /// Moves the pages written since the last sync into `into` (OR) and
    /// re-arms tracking first; returns how many pages were newly dirty.
    fn sync_and_clear(&self, into: &mut PageSet) -> usize;
    /// Stops tracking.
    fn stop(&self);
}

/// The cooperative tracker: one bit per page, set by the writer.
#[derive(Debug)]
pub struct AtomicBitmap {
    bits: Box<[AtomicU64]>,
}

impl AtomicBitmap {
    /// A clean bitmap for `pages` pages.
    pub fn new(pages: usize) -> AtomicBitmap {
        AtomicBitmap {
            bits: std::iter::repeat_with(|| AtomicU64::new(0))
                .take(pages.div_ceil(64))
                .collect(),
        }
    }

    /// Like `sync_and_clear`, into `into` from index `first` on (a
    /// multiple of 64): a disk's blocks after the memory's pages.
    pub fn sync_into(&self, into: &mut PageSet, first: usize) -> usize {
        debug_assert_eq!(first % 64, 0);
        let mut new = 0;
        for (i, word) in self.bits.iter().enumerate() {
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let bits = word.swap(0, Ordering::AcqRel);
            new += into.or_word(first / 64 + i, bits);
        }
        new
    }

    /// Marks `page` written (after the data store).
    pub fn mark(&self, page: usize) {
        self.bits[page / 64].fetch_or(1 << (page % 64), Ordering::Release);
    }
}

impl DirtyTracker for AtomicBitmap {
    fn start(&self) {
        for word in self.bits.iter() {
            word.swap(0, Ordering::AcqRel);
        }
    }

    fn sync_and_clear(&self, into: &mut PageSet) -> usize {
        self.sync_into(into, 0)
    }

    fn stop(&self) {}
}

/// A set of page numbers (a plain bitmap with a count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageSet {
    words: Vec<u64>,
    count: usize,
    pages: usize,
}

impl PageSet {
    /// An empty set over `pages` pages.
    pub fn new(pages: usize) -> PageSet {
        PageSet {
            words: vec![0; pages.div_ceil(64)],
            count: 0,
            pages,
        }
    }

    /// Every page.
    pub fn full(pages: usize) -> PageSet {
        let mut set = PageSet::new(pages);
        for page in 0..pages {
            set.insert(page);
        }
        set
    }

    /// Number of pages in the set.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a page; true when it was not there.
    pub fn insert(&mut self, page: usize) -> bool {
        let bit = 1u64 << (page % 64);
        let word = &mut self.words[page / 64];
        let new = *word & bit == 0;
        *word |= bit;
        self.count += usize::from(new);
        new
    }

    /// True when `page` is in the set.
    pub fn contains(&self, page: usize) -> bool {
        self.words
            .get(page / 64)
            .is_some_and(|w| w & (1 << (page % 64)) != 0)
    }

    fn or_word(&mut self, i: usize, bits: u64) -> usize {
        let word = &mut self.words[i];
        let new = (bits & !*word).count_ones() as usize;
        *word |= bits;
        self.count += new;
        new
    }

    /// Removes and returns up to `max` pages, scanning from `*cursor`
    /// (wrapping), in page order.
    pub fn take(&mut self, cursor: &mut usize, max: usize, out: &mut Vec<usize>) {
        let words = self.words.len();
        if words == 0 {
            return;
        }
        let mut scanned = 0;
        let mut i = (*cursor / 64) % words;
        while out.len() < max && self.count > 0 && scanned <= words {
            let mut word = self.words[i];
            while word != 0 && out.len() < max {
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                out.push(i * 64 + bit);
                self.words[i] &= !(1 << bit);
                self.count -= 1;
            }
            if word == 0 {
                i = (i + 1) % words;
                scanned += 1;
            }
        }
        *cursor = i * 64;
    }

    /// Number of pages the set covers.
    pub fn capacity(&self) -> usize {
        self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_moves_marks_and_rearms() {
        let tracker = AtomicBitmap::new(200);
        tracker.start();
        tracker.mark(3);
        tracker.mark(130);
        let mut set = PageSet::new(200);
        assert_eq!(tracker.sync_and_clear(&mut set), 2);
        assert!(set.contains(3) && set.contains(130) && !set.contains(4));
        assert_eq!(tracker.sync_and_clear(&mut set), 0);
        tracker.mark(3);
        assert_eq!(tracker.sync_and_clear(&mut set), 0, "already in the set");
        let mut cursor = 100;
        let mut out = Vec::new();
        set.take(&mut cursor, 10, &mut out);
        assert_eq!(out, vec![130, 3]);
        assert!(set.is_empty());
    }
}
