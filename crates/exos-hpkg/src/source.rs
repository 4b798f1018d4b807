//! Where a package's bytes come from: a local file, or anything else that
//! answers positioned reads (a lazily fetched remote package).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Positioned, thread-safe reads of a package file's bytes. Readers never
/// seek, so one source serves every thread at once.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The file's size in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Says that bytes `offset..offset + len` are about to be read (a whole
    /// file's stored data): a source that fetches from far away fetches
    /// them now, in one go. Errors are the later reads' to report.
    fn will_need(&self, _offset: u64, _len: u64) {}

    /// The local file holding every byte, when there is one (lets callers
    /// hand it to the kernel, e.g. for passthrough).
    fn local_file(&self) -> Option<&File> {
        None
    }

    /// Whether bytes are fetched from far away when first read (a lazily
    /// installed package): such a source is told of a whole file before
    /// any of it is read ([`Source::will_need`]: one request instead of one
    /// per read), and its files are never read ahead on a guess.
    fn fetched_on_demand(&self) -> bool {
        false
    }
}

impl Source for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    /// Starts reading the range from disk in the background
    /// (`POSIX_FADV_WILLNEED`): the reads that follow find it cached
    /// instead of waiting for the disk one request at a time.
    fn will_need(&self, offset: u64, len: u64) {
        if let Some(len) = std::num::NonZeroU64::new(len) {
            let _ = rustix::fs::fadvise(self, offset, Some(len), rustix::fs::Advice::WillNeed);
        }
    }

    fn local_file(&self) -> Option<&File> {
        Some(self)
    }
}

/// Bytes in memory (a package being sealed, a test's or fuzzer's input).
impl Source for Vec<u8> {
    fn len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}
