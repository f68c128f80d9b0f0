//! A VM's memory: N 4 KiB pages really allocated, shared between the
//! workload that writes it and the migration that reads it.
//!
//! Pages are arrays of `AtomicU64`, so a page can be read while the
//! workload writes it without undefined behaviour (the read may see a mix
//! of old and new words: that page is dirty again and will be resent). Every
//! write through [`GuestMemory::write_word`] marks its page in the dirty
//! tracker *after* the store, with release ordering, so a sync that sees the
//! mark also sees the data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::dirty::AtomicBitmap;

/// Bytes per page.
pub const PAGE_SIZE: usize = 4096;
/// 64-bit words per page.
pub const PAGE_WORDS: usize = PAGE_SIZE / 8;

/// Guest memory with its cooperative dirty tracker.
pub struct GuestMemory {
    words: Box<[AtomicU64]>,
    pages: usize,
    dirty: Arc<AtomicBitmap>,
}

impl std::fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMemory")
            .field("pages", &self.pages)
            .finish()
    }
}

impl GuestMemory {
    /// Allocates `pages` zeroed pages.
    pub fn new(pages: usize) -> GuestMemory {
        let words: Vec<AtomicU64> = std::iter::repeat_with(|| AtomicU64::new(0))
            .take(pages * PAGE_WORDS)
            .collect();
        GuestMemory {
            words: words.into_boxed_slice(),
            pages,
            dirty: Arc::new(AtomicBitmap::new(pages)),
        }
    }

    /// Allocates enough pages for `mib` MiB.
    pub fn with_mib(mib: u64) -> GuestMemory {
        GuestMemory::new((mib as usize) * (1 << 20) / PAGE_SIZE)
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        (self.pages * PAGE_SIZE) as u64
    }

    /// The dirty tracker every write marks.
    pub fn dirty(&self) -> &Arc<AtomicBitmap> {
        &self.dirty
    }

    fn page(&self, page: usize) -> &[AtomicU64] {
        &self.words[page * PAGE_WORDS..(page + 1) * PAGE_WORDS]
    }

    /// Writes one word of a page (the workload's store) and marks the page dirty.
    pub fn write_word(&self, page: usize, word: usize, value: u64) {
        self.page(page)[word % PAGE_WORDS].store(value, Ordering::Relaxed);
        self.dirty.mark(page);
    }

    /// Reads one word.
    pub fn read_word(&self, page: usize, word: usize) -> u64 {
        self.page(page)[word % PAGE_WORDS].load(Ordering::Relaxed)
    }

    /// Copies a page into `out`; true when the page is all zero.
    pub fn read_page(&self, page: usize, out: &mut [u8]) -> bool {
        let mut any = 0u64;
        for (word, chunk) in self.page(page).iter().zip(out.chunks_exact_mut(8)) {
            let value = word.load(Ordering::Relaxed);
            any |= value;
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        any == 0
    }

    /// [`read_page`](Self::read_page) and [`bytes_digest`] of what it read,
    /// in one pass over the words: the source's send path under
    /// `verify = sent`. Returns (all zero, digest).
    pub fn read_page_digest(&self, page: usize, out: &mut [u8]) -> (bool, u64) {
        let mut lanes = LANES;
        let mut any = 0u64;
        for (i, (words, quad)) in self
            .page(page)
            .chunks_exact(4)
            .zip(out.chunks_exact_mut(32))
            .enumerate()
        {
            for ((lane, word), bytes) in lanes.iter_mut().zip(words).zip(quad.chunks_exact_mut(8)) {
                let value = word.load(Ordering::Relaxed);
                any |= value;
                bytes.copy_from_slice(&value.to_le_bytes());
                *lane = mix(*lane, value ^ (i as u64));
            }
        }
        (any == 0, digest_finish(lanes, page))
    }

    /// Overwrites a page with `data` (4096 bytes) without marking it dirty:
    /// the destination's receive path.
    pub fn write_page(&self, page: usize, data: &[u8]) {
        for (word, chunk) in self.page(page).iter().zip(data.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
    }

    /// [`write_page`](Self::write_page) and [`bytes_digest`] of `data` in
    /// one pass over the bytes: the destination's receive path.
    pub fn write_page_digest(&self, page: usize, data: &[u8]) -> u64 {
        let mut lanes = LANES;
        for (i, (words, quad)) in self
            .page(page)
            .chunks_exact(4)
            .zip(data.chunks_exact(32))
            .enumerate()
        {
            for ((lane, word), bytes) in lanes.iter_mut().zip(words).zip(quad.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(bytes);
                let value = u64::from_le_bytes(b);
                word.store(value, Ordering::Relaxed);
                *lane = mix(*lane, value ^ (i as u64));
            }
        }
        digest_finish(lanes, page)
    }

    /// Zeroes a page (a zero-page marker received).
    pub fn zero_page(&self, page: usize) {
        for word in self.page(page) {
            word.store(0, Ordering::Relaxed);
        }
    }

    /// Fills `pages` starting at `first` with pseudo-random non-zero data
    /// (the benchmarks' "non-zero fill").
    pub fn fill(&self, first: usize, pages: usize, seed: u64) {
        let mut x = seed | 1;
        for page in first..(first + pages).min(self.pages) {
            for word in self.page(page) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.store(x, Ordering::Relaxed);
            }
        }
    }

    /// Digest of one page's current content.
    pub fn page_digest(&self, page: usize) -> u64 {
        let mut lanes = LANES;
        for (i, quad) in self.page(page).chunks_exact(4).enumerate() {
            for (lane, word) in lanes.iter_mut().zip(quad) {
                *lane = mix(*lane, word.load(Ordering::Relaxed) ^ (i as u64));
            }
        }
        digest_finish(lanes, page)
    }

    /// Digests of pages `range`, into `out`.
    pub fn digests(&self, range: std::ops::Range<usize>, out: &mut [u64]) {
        for (page, slot) in range.zip(out.iter_mut()) {
            *slot = self.page_digest(page);
        }
    }

    /// Digests of every page, computed on `threads` threads.
    pub fn all_digests(&self, threads: usize) -> Vec<u64> {
        let mut out = vec![0u64; self.pages];
        let threads = threads.max(1);
        let per = self.pages.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (i, chunk) in out.chunks_mut(per).enumerate() {
                let start = i * per;
                scope.spawn(move || self.digests(start..start + chunk.len(), chunk));
            }
        });
        out
    }

    /// True when every page of both memories is equal (the tests' full compare).
    pub fn same_as(&self, other: &GuestMemory) -> bool {
        self.pages == other.pages
            && self
                .words
                .iter()
                .zip(other.words.iter())
                .all(|(a, b)| a.load(Ordering::Relaxed) == b.load(Ordering::Relaxed))
    }

    /// Pages whose content differs between two memories.
    pub fn differing_pages(&self, other: &GuestMemory) -> Vec<usize> {
        (0..self.pages.min(other.pages))
            .filter(|&p| {
                self.page(p)
                    .iter()
                    .zip(other.page(p))
                    .any(|(a, b)| a.load(Ordering::Relaxed) != b.load(Ordering::Relaxed))
            })
            .collect()
    }
}

/// The digest of page bytes as sent or received (the destination keeps
/// one per page as it applies them): the same function as
/// [`GuestMemory::page_digest`] over a byte buffer.
pub fn bytes_digest(data: &[u8], page: usize) -> u64 {
    digest_finish(page_lanes(data), page)
}

/// The digest's starting lanes.
const LANES: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x85EB_CA77_C2B2_AE63,
];

/// One step of a digest lane.
#[inline(always)]
fn mix(lane: u64, value: u64) -> u64 {
    (lane ^ value)
        .wrapping_mul(0x9FB2_1C65_1E98_DF25)
        .rotate_left(29)
}

fn page_lanes(data: &[u8]) -> [u64; 4] {
    let mut lanes = LANES;
    for (i, quad) in data.chunks_exact(32).enumerate() {
        for (lane, bytes) in lanes.iter_mut().zip(quad.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *lane = mix(*lane, u64::from_le_bytes(b) ^ (i as u64));
        }
    }
    lanes
}

/// Per-page digests folded into one value, in page order (both ends of a
/// migration fold theirs and compare before exchanging the whole list).
pub fn fold_digests(digests: impl IntoIterator<Item = u64>) -> u64 {
    let mut h = 0x6A09_E667_F3BC_C909u64;
    for d in digests {
        h = (h.rotate_left(23) ^ d).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    h ^ (h >> 29)
}

/// The digest of an all-zero page (cheap: the lanes of a zero page are
/// computed once).
pub fn zero_digest(page: usize) -> u64 {
    static LANES: std::sync::OnceLock<[u64; 4]> = std::sync::OnceLock::new();
    let lanes = LANES.get_or_init(|| page_lanes(&[0u8; PAGE_SIZE]));
    digest_finish(*lanes, page)
}

fn digest_finish(lanes: [u64; 4], page: usize) -> u64 {
    let mut h = (page as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    for lane in lanes {
        h ^= lane;
        h = h.rotate_left(31).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_memory_and_of_bytes_agree() {
        let mem = GuestMemory::new(4);
        mem.fill(0, 3, 7);
        let mut buf = vec![0u8; PAGE_SIZE];
        for page in 0..4 {
            let zero = mem.read_page(page, &mut buf);
            assert_eq!(zero, page == 3);
            assert_eq!(mem.page_digest(page), bytes_digest(&buf, page));
        }
        assert_eq!(mem.page_digest(3), zero_digest(3));
        assert_ne!(mem.page_digest(0), mem.page_digest(1));
        mem.write_word(1, 5, 0xdead);
        assert_ne!(mem.page_digest(1), bytes_digest(&buf, 1));
        // The receive path stores and digests in one pass: same result.
        let other = GuestMemory::new(4);
        mem.read_page(2, &mut buf);
        assert_eq!(other.write_page_digest(2, &buf), mem.page_digest(2));
        assert_eq!(other.page_digest(2), mem.page_digest(2));
        assert!(!other.read_page(2, &mut buf));
        // So does the send path's read and digest.
        let mut copy = vec![1u8; PAGE_SIZE];
        for page in 0..4 {
            let (zero, digest) = mem.read_page_digest(page, &mut copy);
            assert_eq!((zero, digest), (page == 3, mem.page_digest(page)));
            mem.read_page(page, &mut buf);
            assert_eq!(copy, buf);
        }
    }
}
