//! The files segments live in: positioned writes and reads, and a durability barrier.
//!
//! The log is written through this trait so that tests can put a [`FaultFile`] underneath: a
//! file in memory that keeps only what a completed sync covered when the "power" goes, can
//! tear the last write at a sector boundary, flip bits, and fail writes or syncs on demand.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// One segment file.
pub trait SegmentFile {
    /// Writes all of `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Reads into `buf` from `offset`; returns how many bytes were read (short at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Makes every write so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// The file's size.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A real file.
#[derive(Debug)]
pub struct FsFile(pub File);

impl FsFile {
    /// Fills the file with zeros up to `size` and syncs it, so later appends never extend the
    /// file (an `fdatasync` then has no metadata to write) and a crash cannot leave a hole.
    pub fn preallocate(&mut self, size: u64) -> io::Result<()> {
        let zeros = vec![0u8; 1 << 20];
        let mut at = self.len()?;
        while at < size {
            let n = (size - at).min(zeros.len() as u64) as usize;
            self.0
                .write_all_at(zeros.get(..n).unwrap_or_default(), at)?;
            at += n as u64;
        }
        self.0.sync_all()
    }
}

impl SegmentFile for FsFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or_default();
            match self.0.read_at(rest, offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// Sector size assumed for torn writes: a write is durable, or not, per sector.
pub const SECTOR: usize = 512;

/// A file in memory that fails like a disk does (for tests).
#[derive(Debug, Clone, Default)]
pub struct FaultFile {
    /// What the last completed sync made durable.
    durable: Vec<u8>,
    /// What a reader sees now (durable plus unsynced writes).
    visible: Vec<u8>,
    /// Unsynced writes, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
    /// The next this-many writes fail.
    pub fail_writes: usize,
    /// The next this-many syncs fail (and make nothing durable).
    pub fail_syncs: usize,
}

impl FaultFile {
    /// A zero-filled file of `size` bytes, all durable.
    pub fn new(size: usize) -> Self {
        Self {
            durable: vec![0; size],
            visible: vec![0; size],
            ..Default::default()
        }
    }

    /// Power loss: every write not covered by a completed sync is lost, except that the last
    /// one may have reached the disk up to a sector boundary (`torn_sectors` of it, counted
    /// from its start; 0 keeps none of it).
    pub fn power_loss(&mut self, torn_sectors: usize) {
        if let Some((offset, data)) = self.pending.last() {
            let keep = (torn_sectors * SECTOR).min(data.len());
            let at = *offset as usize;
            if let (Some(dst), Some(src)) = (self.durable.get_mut(at..at + keep), data.get(..keep))
            {
                dst.copy_from_slice(src);
            }
        }
        self.pending.clear();
        self.visible = self.durable.clone();
    }

    /// Flips one bit of the durable and visible contents.
    pub fn flip_bit(&mut self, bit: usize) {
        for buf in [&mut self.durable, &mut self.visible] {
            if let Some(b) = buf.get_mut(bit / 8) {
                *b ^= 1 << (bit % 8);
            }
        }
    }

    /// The bytes a reader sees.
    pub fn contents(&self) -> &[u8] {
        &self.visible
    }
}

impl SegmentFile for FaultFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            return Err(io::Error::other("injected write failure"));
        }
        let at = offset as usize;
        let end = at + data.len();
        if end > self.visible.len() {
            self.visible.resize(end, 0);
            self.durable.resize(end, 0);
        }
        if let Some(dst) = self.visible.get_mut(at..end) {
            dst.copy_from_slice(data);
        }
        self.pending.push((offset, data.to_vec()));
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let at = (offset as usize).min(self.visible.len());
        let n = buf.len().min(self.visible.len() - at);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), self.visible.get(at..at + n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.fail_syncs > 0 {
            self.fail_syncs -= 1;
            return Err(io::Error::other("injected sync failure"));
        }
        for (offset, data) in self.pending.drain(..) {
            let at = offset as usize;
            if let Some(dst) = self.durable.get_mut(at..at + data.len()) {
                dst.copy_from_slice(&data);
            }
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.visible.len() as u64)
    }
}
