//! A bound on the descriptors that storage holds open, for the whole process.
//!
//! Every file a partition keeps using — segment logs, active or sealed, and arrival
//! indexes — is a [`CachedFile`]: its descriptor is opened on use and stays open while it is
//! among the [`max_open`] most recently opened ones; past that, the cache closes the least
//! recently used (second chance: a file used since the last pass gets another round). A
//! file written since its last fsync is never closed by the cache (the fsync that makes the
//! write durable, and reports its error, runs on a descriptor that was open when it was
//! written), so the bound can be exceeded by the files a group commit has not reached yet.
//! A caller in the middle of a read, write or fsync holds its own reference to the
//! descriptor, so closing never cuts one short. The bound is per process because the
//! descriptor limit is: several in-process nodes (the scenarios) share it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::error::{BrokerError, Result};

/// The share of the process's descriptor limit (`RLIMIT_NOFILE`, soft) that storage keeps
/// open: the rest is for sockets, the metadata store and the files a group commit holds.
const SHARE_OF_LIMIT: u64 = 4;
/// Files kept open at least, whatever the limit.
const MIN_OPEN: usize = 64;

static OPEN: Mutex<VecDeque<Weak<CachedFile>>> = Mutex::new(VecDeque::new());

/// Files kept open at most, per process: a quarter of the descriptor limit the process had
/// when storage first opened a file.
pub fn max_open() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        usize::try_from(soft / SHARE_OF_LIMIT)
            .unwrap_or(usize::MAX)
            .max(MIN_OPEN)
    })
}

/// A file whose descriptor the process-wide bound manages.
#[derive(Debug)]
pub struct CachedFile {
    path: PathBuf,
    me: Weak<CachedFile>,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    handle: Option<Arc<File>>,
    /// Opened for writing when the cache opens it again.
    writable: bool,
    /// Opened or used since the cache last looked.
    used: bool,
    /// Writes begun and not yet returned.
    writing: u32,
    /// Writes returned, counted from the start.
    written: u64,
    /// Of those, how many an fsync that succeeded had begun after.
    synced: u64,
}

impl FileState {
    /// Written and not known durable: the cache keeps it open.
    fn dirty(&self) -> bool {
        self.writing > 0 || self.written > self.synced
    }
}

impl CachedFile {
    /// Takes a descriptor just opened (or created) by the caller into the bound.
    pub fn new(path: PathBuf, file: File, writable: bool) -> Arc<Self> {
        let cached = Arc::new_cyclic(|me| CachedFile {
            path,
            me: me.clone(),
            state: Mutex::new(FileState {
                handle: Some(Arc::new(file)),
                writable,
                used: true,
                writing: 0,
                written: 0,
                synced: 0,
            }),
        });
        admit(Arc::downgrade(&cached));
        cached
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open descriptor, opening the file again if the cache closed it.
    pub fn handle(&self) -> Result<Arc<File>> {
        self.open(false)
            .map_err(BrokerError::io("open", &self.path))
    }

    /// The descriptor, opened again if the cache closed it ([`open_making_room`]: a failed
    /// write fences its partition, so a write must not fail for want of a descriptor the
    /// cache holds for nothing). The file is opened outside its lock, which the cache takes
    /// while making room; if another caller opened it meanwhile, that descriptor serves.
    fn open(&self, write: bool) -> std::io::Result<Arc<File>> {
        let writable = {
            let mut state = self.lock();
            state.used = true;
            if let Some(handle) = &state.handle {
                let handle = handle.clone();
                state.writing += u32::from(write);
                return Ok(handle);
            }
            state.writable
        };
        let opened = Arc::new(open_making_room(
            OpenOptions::new().read(true).write(writable),
            &self.path,
        )?);
        let mut state = self.lock();
        state.writing += u32::from(write);
        if let Some(handle) = &state.handle {
            return Ok(handle.clone());
        }
        state.handle = Some(opened.clone());
        drop(state);
        admit(self.me.clone());
        Ok(opened)
    }

    /// Runs a write on the descriptor. Counted as begun under the same lock that hands
    /// the descriptor out, and as written once it returned, so the cache cannot close the
    /// file from before the write until an fsync that began after it succeeded.
    fn write<T>(&self, write: impl FnOnce(&File) -> std::io::Result<T>) -> std::io::Result<T> {
        let handle = self.open(true)?;
        let result = write(&handle);
        let mut state = self.lock();
        state.writing -= 1;
        state.written += 1;
        result
    }

    pub fn write_all_at(&self, bytes: &[u8], position: u64) -> std::io::Result<()> {
        self.write(|file| file.write_all_at(bytes, position))
    }

    pub fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.write(|file| file.set_len(len))
    }

    /// fsyncs the file's data: every write returned before the call is durable when it
    /// returns. A file the cache closed is opened again (what another process left in the
    /// page cache, found by recovery, is made durable too).
    pub fn sync_data(&self) -> std::io::Result<()> {
        let (open, covers) = {
            let state = self.lock();
            (state.handle.clone(), state.written)
        };
        let handle = match open {
            Some(handle) => handle,
            None => self.open(false)?,
        };
        handle.sync_data()?;
        let mut state = self.lock();
        state.synced = state.synced.max(covers);
        Ok(())
    }

    /// The file is never written again (a sealed segment): reopened read-only.
    pub fn seal(&self) {
        self.lock().writable = false;
    }

    /// The cache's visit: `true` keeps the file open for another round (used since the last
    /// visit, or written and not yet fsynced), `false` means it was closed now or before.
    fn second_chance(&self) -> bool {
        let mut state = self.lock();
        if state.handle.is_none() {
            return false;
        }
        if state.dirty() || std::mem::replace(&mut state.used, false) {
            return true;
        }
        state.handle = None;
        false
    }

    pub(crate) fn is_open(&self) -> bool {
        self.lock().handle.is_some()
    }
}

/// Takes a file whose descriptor was just opened into the bound, closing others past it.
fn admit(file: Weak<CachedFile>) {
    let max = max_open();
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    open.push_back(file);
    // Each file is looked at most twice: once to clear its "used" mark, once to close it.
    let mut budget = 2 * open.len();
    while open.len() > max && budget > 0 {
        budget -= 1;
        let Some(victim) = open.pop_front() else {
            break;
        };
        let Some(victim) = victim.upgrade() else {
            continue; // dropped: its descriptor is closed already
        };
        if victim.second_chance() {
            open.push_back(Arc::downgrade(&victim));
        }
    }
}

/// `EMFILE` or `ENFILE`.
fn out_of_descriptors(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Opens a file storage keeps in the bound (a new segment, an arrival index, one the cache
/// closed): when the process is out of descriptors (other files and sockets took them),
/// every file the cache may close is closed and the open tried once more. Not to be called
/// under a cached file's lock.
pub(crate) fn open_making_room(options: &OpenOptions, path: &Path) -> std::io::Result<File> {
    match options.open(path) {
        Err(e) if out_of_descriptors(&e) => {
            close_all_closable();
            options.open(path)
        }
        other => other,
    }
}

/// Closes every file the cache holds open that no write keeps open, whatever its second
/// chance.
fn close_all_closable() {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    open.retain(|file| {
        let Some(file) = file.upgrade() else {
            return false;
        };
        let mut state = file.lock();
        if state.handle.is_some() && !state.dirty() {
            state.handle = None;
        }
        state.handle.is_some()
    });
}

/// How many storage files hold a descriptor now (for tests and metrics).
pub fn open_now() -> usize {
    OPEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|f| f.upgrade().is_some_and(|f| f.is_open()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(dir: &Path) -> Arc<CachedFile> {
        let path = dir.join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        CachedFile::new(path, file, true)
    }

    #[test]
    fn a_written_file_stays_open_until_its_fsync_then_closes_past_a_second_chance() {
        let temp = tempfile::tempdir().unwrap();
        let file = cached(temp.path());
        file.write_all_at(b"acknowledged", 0).unwrap();
        for _ in 0..3 {
            assert!(file.second_chance(), "closed before its fsync");
        }
        file.sync_data().unwrap();
        assert!(file.second_chance(), "used since the last visit");
        assert!(!file.second_chance());
        assert!(!file.is_open());
        // Opened again on use, for writing: the write lands and marks it again.
        file.write_all_at(b"!", 12).unwrap();
        assert!(file.is_open());
        assert!(file.second_chance());
        file.sync_data().unwrap();
        assert_eq!(
            std::fs::read(temp.path().join("f")).unwrap(),
            b"acknowledged!"
        );
    }

    #[test]
    fn a_write_an_fsync_did_not_cover_keeps_the_file_open() {
        let temp = tempfile::tempdir().unwrap();
        let file = cached(temp.path());
        // An fsync runs while a write is under way (the group commit fsyncs outside the
        // partition lock): it may not cover that write.
        file.write(|f| {
            file.sync_data().unwrap();
            f.write_all_at(b"late", 0)
        })
        .unwrap();
        for _ in 0..3 {
            assert!(file.second_chance(), "closed with a write no fsync covered");
        }
        file.sync_data().unwrap();
        assert!(file.second_chance(), "used since the last visit");
        assert!(!file.second_chance());
    }

    #[test]
    fn a_sealed_file_is_opened_again_read_only() {
        let temp = tempfile::tempdir().unwrap();
        let file = cached(temp.path());
        file.seal();
        file.sync_data().unwrap();
        assert!(file.second_chance());
        assert!(!file.second_chance());
        let error = file.write_all_at(b"late", 0).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(9), "{error}"); // EBADF
    }
}
