//! A VM's disk image: a real file, written by the workload in 4 KiB blocks
//! with a dirty bitmap, so a shared-nothing migration can mirror it during
//! pre-copy exactly as it chases dirty memory pages.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::dirty::AtomicBitmap;
use crate::memory::{bytes_digest, PAGE_SIZE};

/// Block size (the same as a page, so blocks travel as pages do).
pub const BLOCK_SIZE: usize = PAGE_SIZE;

/// An open disk image with its dirty-block tracker.
#[derive(Debug)]
pub struct GuestDisk {
    file: File,
    path: PathBuf,
    blocks: usize,
    dirty: AtomicBitmap,
}

impl GuestDisk {
    /// Opens (and with `create`, creates or extends) the image at `path`
    /// with `size_mib` MiB.
    pub fn open(path: &Path, size_mib: u64, create: bool) -> std::io::Result<GuestDisk> {
        if create {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        let bytes = size_mib << 20;
        if file.metadata()?.len() < bytes {
            file.set_len(bytes)?;
        }
        let blocks = (bytes as usize) / BLOCK_SIZE;
        Ok(GuestDisk {
            file,
            path: path.to_path_buf(),
            blocks,
            dirty: AtomicBitmap::new(blocks),
        })
    }

    /// Where the image is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The dirty-block tracker.
    pub fn dirty(&self) -> &AtomicBitmap {
        &self.dirty
    }

    /// The workload's write: 4 bytes into a block, then the block is dirty.
    pub fn write_u32(&self, block: usize, word: usize, value: u32) -> std::io::Result<()> {
        let block = block % self.blocks.max(1);
        let offset = (block * BLOCK_SIZE + (word % (BLOCK_SIZE / 4)) * 4) as u64;
        self.file.write_all_at(&value.to_le_bytes(), offset)?;
        self.dirty.mark(block);
        Ok(())
    }

    /// Reads a block; true when it is all zero.
    pub fn read_block(&self, block: usize, out: &mut [u8]) -> std::io::Result<bool> {
        self.file
            .read_exact_at(&mut out[..BLOCK_SIZE], (block * BLOCK_SIZE) as u64)?;
        Ok(out[..BLOCK_SIZE].iter().all(|b| *b == 0))
    }

    /// Overwrites a block (the destination's receive path; not marked).
    pub fn write_block(&self, block: usize, data: &[u8]) -> std::io::Result<()> {
        self.file
            .write_all_at(&data[..BLOCK_SIZE], (block * BLOCK_SIZE) as u64)
    }

    /// Digest of a block's content, as `memory::bytes_digest` of the bytes
    /// with the block's index in the migration's page space.
    pub fn digest(&self, block: usize, index: usize) -> std::io::Result<u64> {
        let mut buf = vec![0u8; BLOCK_SIZE];
        self.read_block(block, &mut buf)?;
        Ok(bytes_digest(&buf, index))
    }

    /// Flushes the image to disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}
