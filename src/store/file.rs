//! The files segments live in: positioned writes and reads, and a durability barrier.
//!
//! The log is written through this trait so that tests can put a [`FaultFile`] underneath: a
//! file in memory that keeps only what a completed sync covered when the "power" goes, can
//! tear the last write at a sector boundary, flip bits, and fail writes or syncs on demand.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Positioned reads, shared between the writer and readers of message bodies.
pub trait ReadAt: Send + Sync {
    /// Reads into `buf` from `offset`; returns how many bytes were read (short at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The file's size.
    fn size(&self) -> io::Result<u64>;
}

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

impl ReadAt for FsFile {
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

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl SegmentFile for FsFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        ReadAt::read_at(self, offset, buf)
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

/// The directory the log's segment files live in, numbered `1, 2, …`. Every operation that
/// changes the directory (create, rename, remove) is durable when it returns: a segment's
/// data synced into a file whose directory entry a power loss could undo would be lost all
/// the same.
pub trait Storage: Send + Sync + 'static {
    /// A segment file open for writing.
    type File: SegmentFile + Send;
    /// The numbers of the segments present, in order.
    fn numbers(&self) -> io::Result<Vec<u64>>;
    /// Opens an existing segment.
    fn open(&mut self, number: u64) -> io::Result<Self::File>;
    /// Creates segment `number`, `size` bytes long, starting with `header`: a retired file
    /// reused if one is kept (its old records stay, under an older generation), else a new
    /// preallocated one. The header is written and synced before the file takes the number.
    fn create(&mut self, number: u64, size: u64, header: &[u8]) -> io::Result<Self::File>;
    /// Takes a segment out of the log, keeping its file for reuse if fewer than
    /// [`SPARE_FILES`] are kept, else deleting it.
    fn retire(&mut self, number: u64) -> io::Result<()>;
    /// A handle to read segment `number` from any thread, valid even after it is removed.
    fn reader(&self, number: u64) -> io::Result<Arc<dyn ReadAt>>;
    /// How a segment is named in errors and reports.
    fn name(&self, number: u64) -> PathBuf;
    /// Bytes free on the device, if known.
    fn free_space(&self) -> Option<u64>;
}

/// Retired segment files kept for reuse: preallocating a segment writes it whole once, and
/// reusing one instead saves that write.
pub const SPARE_FILES: usize = 2;

/// Segments as files `00000001.wal`, `00000002.wal`, … in a directory.
///
/// A clone reads and writes the same directory but does not hold its lock: only the storage
/// the log owns does, so the lock goes when the log is closed, however many readers remain.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
    /// Held open with an exclusive `flock` while this storage exists: a second broker on the
    /// same directory would interleave its writes with ours.
    _lock: Option<Arc<File>>,
}

impl Clone for FsStorage {
    fn clone(&self) -> Self {
        Self::existing(&self.dir)
    }
}

impl FsStorage {
    /// Storage in `dir`, created if missing, locked against a second user.
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        lock_exclusive(&lock).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} is in use by another process ({e})", dir.display()),
            )
        })?;
        // A segment whose creation a crash interrupted never got its number: remove it.
        for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().ends_with(".wal.new") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: Some(Arc::new(lock)),
        })
    }

    /// Storage in `dir` as it is, for reading only (`ferry wal check`): not locked.
    pub fn existing(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            _lock: None,
        }
    }

    /// A file kept for reuse by [`Storage::retire`].
    fn spare_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("spare-{i}.wal.free"))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    fn open_rw(&self, number: u64) -> io::Result<FsFile> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.name(number))
            .map(FsFile)
    }
}

impl Storage for FsStorage {
    type File = FsFile;

    fn numbers(&self) -> io::Result<Vec<u64>> {
        let mut numbers: Vec<u64> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn open(&mut self, number: u64) -> io::Result<FsFile> {
        self.open_rw(number)
    }

    fn create(&mut self, number: u64, size: u64, header: &[u8]) -> io::Result<FsFile> {
        for i in 0..SPARE_FILES {
            let spare = self.spare_path(i);
            if spare.exists() {
                let f = OpenOptions::new().read(true).write(true).open(&spare)?;
                let mut file = FsFile(f);
                file.preallocate(size)?;
                file.0.write_all_at(header, 0)?;
                file.0.sync_data()?;
                std::fs::rename(&spare, self.name(number))?;
                self.sync_dir()?;
                return Ok(file);
            }
        }
        // Written under a temporary name and renamed once full size, so a crash never leaves
        // a numbered segment that is short or has no header.
        let tmp = self.dir.join(format!("{number:08}.wal.new"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)?;
        let mut file = FsFile(f);
        file.preallocate(size)?;
        file.0.write_all_at(header, 0)?;
        file.0.sync_data()?;
        std::fs::rename(&tmp, self.name(number))?;
        self.sync_dir()?;
        Ok(file)
    }

    fn retire(&mut self, number: u64) -> io::Result<()> {
        match (0..SPARE_FILES)
            .map(|i| self.spare_path(i))
            .find(|p| !p.exists())
        {
            Some(spare) => std::fs::rename(self.name(number), spare)?,
            None => std::fs::remove_file(self.name(number))?,
        }
        self.sync_dir()
    }

    fn reader(&self, number: u64) -> io::Result<Arc<dyn ReadAt>> {
        let f = File::open(self.name(number))?;
        Ok(Arc::new(FsFile(f)))
    }

    fn name(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:08}.wal"))
    }

    fn free_space(&self) -> Option<u64> {
        free_bytes(&self.dir)
    }
}

/// Takes an exclusive `flock` on `file` without waiting; released when it is closed (also
/// by the kernel when the process dies, so a `kill -9` never leaves a stale lock).
#[allow(unsafe_code)]
fn lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a valid open descriptor; flock only changes its lock state.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Free bytes for unprivileged users on the filesystem holding `path` (`statvfs`).
// The field types differ between targets, hence the conversions.
#[allow(unsafe_code, clippy::useless_conversion)]
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid struct the call fills in.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// A [`FaultFile`] shared between the log and the test that will pull the plug on it.
#[derive(Debug, Clone, Default)]
pub struct SharedFault(Arc<Mutex<FaultFile>>);

impl SharedFault {
    fn lock(&self) -> MutexGuard<'_, FaultFile> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReadAt for SharedFault {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read_at(offset, buf)
    }
    fn size(&self) -> io::Result<u64> {
        self.lock().len()
    }
}

impl SegmentFile for SharedFault {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.lock().write_at(offset, data)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read_at(offset, buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.lock().sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.lock().len()
    }
}

/// A directory of [`FaultFile`]s in memory (for tests). Directory changes are durable at
/// once, as [`FsStorage`] makes them; file contents obey the fault file's rules.
#[derive(Debug, Clone, Default)]
pub struct FaultStorage {
    inner: Arc<Mutex<FaultDir>>,
}

#[derive(Debug, Default)]
struct FaultDir {
    files: BTreeMap<u64, SharedFault>,
    spares: Vec<SharedFault>,
    /// Set by [`FaultStorage::pull_plug`]: every write and sync fails from then on.
    dead: bool,
    free: Option<u64>,
}

impl FaultStorage {
    fn lock(&self) -> MutexGuard<'_, FaultDir> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes: from now on nothing is written, and every write not covered by a
    /// completed sync is lost, the most recent one torn after `torn_sectors` sectors.
    pub fn pull_plug(&self, torn_sectors: usize) {
        let mut dir = self.lock();
        dir.dead = true;
        for f in dir.files.values() {
            let mut f = f.lock();
            f.fail_writes = usize::MAX;
            f.fail_syncs = usize::MAX;
        }
        // Only the newest file can have unsynced writes (the log syncs before it rolls).
        let newest = dir.files.keys().next_back().copied();
        for (n, f) in &dir.files {
            f.lock()
                .power_loss(if Some(*n) == newest { torn_sectors } else { 0 });
        }
    }

    /// Power is back: files accept writes again (what was lost stays lost).
    pub fn restore(&self) {
        let mut dir = self.lock();
        dir.dead = false;
        for f in dir.files.values() {
            let mut f = f.lock();
            f.fail_writes = 0;
            f.fail_syncs = 0;
        }
    }

    /// Pretends the device has `bytes` free (`None`: unknown).
    pub fn set_free_space(&self, bytes: Option<u64>) {
        self.lock().free = bytes;
    }

    /// Runs `f` on segment `number`'s file (to flip bits or fail writes).
    pub fn with_file<R>(&self, number: u64, f: impl FnOnce(&mut FaultFile) -> R) -> Option<R> {
        let dir = self.lock();
        dir.files.get(&number).map(|file| f(&mut file.lock()))
    }

    fn check_alive(dir: &FaultDir) -> io::Result<()> {
        if dir.dead {
            Err(io::Error::other("injected: the power is off"))
        } else {
            Ok(())
        }
    }
}

impl Storage for FaultStorage {
    type File = SharedFault;

    fn numbers(&self) -> io::Result<Vec<u64>> {
        Ok(self.lock().files.keys().copied().collect())
    }

    fn open(&mut self, number: u64) -> io::Result<SharedFault> {
        self.lock()
            .files
            .get(&number)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn create(&mut self, number: u64, size: u64, header: &[u8]) -> io::Result<SharedFault> {
        let mut dir = self.lock();
        Self::check_alive(&dir)?;
        let mut f = match dir.spares.pop() {
            Some(f) => f,
            None => SharedFault(Arc::new(Mutex::new(FaultFile::new(size as usize)))),
        };
        f.write_at(0, header)?;
        f.sync_data()?;
        dir.files.insert(number, f.clone());
        Ok(f)
    }

    fn retire(&mut self, number: u64) -> io::Result<()> {
        let mut dir = self.lock();
        Self::check_alive(&dir)?;
        if let Some(f) = dir.files.remove(&number)
            && dir.spares.len() < SPARE_FILES
        {
            dir.spares.push(f);
        }
        Ok(())
    }

    fn reader(&self, number: u64) -> io::Result<Arc<dyn ReadAt>> {
        let f = self.clone().open(number)?;
        Ok(Arc::new(f))
    }

    fn name(&self, number: u64) -> PathBuf {
        PathBuf::from(format!("fault/{number:08}.wal"))
    }

    fn free_space(&self) -> Option<u64> {
        self.lock().free
    }
}
