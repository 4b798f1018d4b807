//! Opening an HPKG file: header, chunk table, TOC and package attributes,
//! then random-access reads of any entry's data.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attr::{parse_string_table, AttrParser};
use crate::budget::{Budget, Limits};
use crate::error::{corrupt, Result, ResultExt};
use crate::header::{PackageHeader, HPKG_HEADER_SIZE};
use crate::heap::HeapReader;
use crate::info::PackageInfo;
use crate::source::Source;
use crate::toc::{DataRef, Entry, EntryId, FileAttribute, Toc};

/// An open, validated package. Cheap to share between threads (`&Package`
/// is all reads need); file data is decompressed on demand.
#[derive(Debug)]
pub struct Package {
    path: PathBuf,
    header: PackageHeader,
    heap: HeapReader,
    toc: Toc,
    info: PackageInfo,
    /// Bytes charged while opening (index, attributes, chunk table).
    memory: u64,
    /// The key a sealed file was opened with (see [`crate::crypt`]).
    sealed: Option<crate::crypt::KeyId>,
}

/// How a package is opened: the memory it may allocate, and the keys a
/// sealed one may be decrypted with (none by default).
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// How much memory opening may allocate.
    pub limits: Limits,
    /// Keys for sealed packages.
    pub keys: crate::crypt::KeyRing,
}

impl OpenOptions {
    /// The default limits, and these keys.
    pub fn with_keys(keys: crate::crypt::KeyRing) -> OpenOptions {
        OpenOptions {
            keys,
            ..OpenOptions::default()
        }
    }
}

impl Package {
    /// Opens and validates a package file, within the default memory
    /// [`Limits`] and with no keys (a sealed file is refused, naming the
    /// key it needs).
    pub fn open(path: impl AsRef<Path>) -> Result<Package> {
        Package::open_with(path, &OpenOptions::default())
    }

    /// Opens and validates a package file; opening may allocate at most
    /// what the options' limits allow for the file's size, and decrypt
    /// with their keys only.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Package> {
        let path = path.as_ref();
        let file = File::open(path).at(path)?;
        Package::load(Arc::new(file), path, options).at(path)
    }

    /// Reads a package from an already open file; `path` is used in errors.
    pub fn from_file(file: File, path: impl AsRef<Path>, options: &OpenOptions) -> Result<Package> {
        let path = path.as_ref();
        Package::load(Arc::new(file), path, options).at(path)
    }

    /// Reads a package from any [`Source`] (e.g. one fetched lazily over
    /// the network); `path` names it in errors.
    pub fn from_source(
        source: Arc<dyn Source>,
        path: impl AsRef<Path>,
        options: &OpenOptions,
    ) -> Result<Package> {
        let path = path.as_ref();
        Package::load(source, path, options).at(path)
    }

    fn load(file: Arc<dyn Source>, path: &Path, options: &OpenOptions) -> Result<Package> {
        let limits = options.limits;
        let mut file_size = file.len()?;
        let mut hb = vec![0u8; HPKG_HEADER_SIZE.min(file_size as usize)];
        file.read_exact_at(&mut hb, 0)?;
        // An encrypted package: the package inside, decrypted as read.
        let mut sealed = None;
        let file = if crate::crypt::is_encrypted(&hb) {
            let source = crate::crypt::EncryptedSource::open(file, &options.keys)?;
            sealed = Some(source.key_id());
            file_size = source.len()?;
            hb.truncate(HPKG_HEADER_SIZE.min(file_size as usize));
            source.read_exact_at(&mut hb, 0)?;
            Arc::new(source) as Arc<dyn Source>
        } else {
            file
        };
        let budget = Budget::new(limits, file_size);
        let header = PackageHeader::parse(&hb, file_size)?;
        let heap = HeapReader::new(file, header.heap, &budget)?;

        // The attributes section and its string table are freed once the
        // package info is decoded; the info's own strings stay charged.
        budget.charge(header.attributes_length as u64, "package attributes")?;
        let info = {
            let attrs =
                heap.read_vec(header.attributes_offset(), header.attributes_length as u64)?;
            let strings_len = header.attributes_strings_length as usize;
            let strings = parse_string_table(
                "package attributes strings",
                &attrs[..strings_len],
                header.attributes_strings_count as u64,
                &budget,
            )?;
            let mut p = AttrParser::new(
                "package attributes",
                &attrs[strings_len..],
                &strings,
                header.minor_version,
                header.heap.size_uncompressed,
                &budget,
            );
            let info = PackageInfo::parse(&mut p)?;
            p.expect_end()?;
            info
        };
        budget.release(
            header.attributes_length as u64
                + crate::attr::string_table_cost(header.attributes_strings_count as u64),
        );
        crate::info::check_name(&info.name)
            .map_err(|e| corrupt!("package name {:?} is invalid: {e}", info.name))?;

        budget.charge(header.toc_length, "TOC")?;
        let toc_bytes = heap.read_vec(header.toc_offset(), header.toc_length)?;
        let toc = Toc::parse(
            toc_bytes,
            header.toc_strings_length,
            header.toc_strings_count,
            header.minor_version,
            header.heap.size_uncompressed,
            &budget,
        )?;
        Ok(Package {
            path: path.to_path_buf(),
            header,
            heap,
            toc,
            info,
            memory: budget.used(),
            sealed,
        })
    }

    /// Checks that every heap chunk decompresses to its declared size, so
    /// every entry's data can be read (what opening alone does not check:
    /// it reads only the TOC and attributes). Errors name the entries whose
    /// data the bad chunk holds.
    pub fn verify_data(&self) -> Result<()> {
        let Err((chunk, err)) = self.heap.verify() else {
            return Ok(());
        };
        let cs = crate::header::CHUNK_SIZE as u64;
        let (start, end) = (chunk * cs, (chunk + 1) * cs);
        let mut hit: Vec<String> = Vec::new();
        let mut more = 0usize;
        for (_, e) in self.toc.walk() {
            if let DataRef::Heap { offset, size } = e.data() {
                if offset < end && offset.saturating_add(size) > start {
                    if hit.len() < 5 {
                        hit.push(e.path());
                    } else {
                        more += 1;
                    }
                }
            }
        }
        let holds = match (hit.is_empty(), more) {
            (true, _) => "package metadata".to_string(),
            (false, 0) => format!("data of {}", hit.join(", ")),
            (false, m) => format!("data of {} and {m} more", hit.join(", ")),
        };
        Err(corrupt!("{err} (the chunk holds {holds})")).at(&self.path)
    }

    /// The file offset from which everything opening the package reads
    /// lies, besides the header: the TOC, the package attributes and the
    /// chunk table (in that order, to the end of the file).
    pub fn metadata_file_offset(&self) -> u64 {
        self.heap.file_offset_of(self.header.toc_offset())
    }

    /// The key id of a sealed (encrypted) package; `None` for a plain one.
    pub fn sealed_with(&self) -> Option<crate::crypt::KeyId> {
        self.sealed
    }

    /// Bytes of memory opening this package was charged (its index, chunk
    /// table and attributes); what a mount budgets per package.
    pub fn memory_usage(&self) -> u64 {
        self.memory
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated header.
    pub fn header(&self) -> &PackageHeader {
        &self.header
    }

    /// The package attributes.
    pub fn info(&self) -> &PackageInfo {
        &self.info
    }

    /// The table of contents.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// The heap reader.
    pub fn heap(&self) -> &HeapReader {
        &self.heap
    }

    /// The TOC entry `id`.
    pub fn entry(&self, id: EntryId) -> Entry<'_> {
        self.toc.entry(id)
    }

    /// Reads up to `buf.len()` bytes of a data reference starting at
    /// `offset`; returns how many were read (0 at or past the end).
    pub fn read_data_at(&self, data: DataRef, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let size = data.size();
        if offset >= size {
            return Ok(0);
        }
        let n = (size - offset).min(buf.len() as u64) as usize;
        match data {
            DataRef::None => Ok(0),
            DataRef::Inline { .. } => match self.toc.inline(data) {
                Some(inline) => Ok(copy_inline(inline, offset, buf)),
                None => {
                    Err(corrupt!("inline data reference outside this package's TOC")).at(&self.path)
                }
            },
            DataRef::Heap { offset: h, .. } => {
                self.heap
                    .read_exact_at(h + offset, &mut buf[..n])
                    .at(&self.path)?;
                Ok(n)
            }
        }
    }

    /// Whether its bytes are fetched when first read
    /// ([`Source::fetched_on_demand`]).
    pub fn fetched_on_demand(&self) -> bool {
        self.heap.source().fetched_on_demand()
    }

    /// Tells the source that `entry`'s data is about to be read (see
    /// [`Source::will_need`]).
    pub fn will_read(&self, entry: Entry<'_>) {
        if let DataRef::Heap { offset, size } = entry.data() {
            let (a, b) = self.heap.stored_range(offset, size);
            self.heap.source().will_need(a, b - a);
        }
    }

    /// Reads file bytes of `entry` at `offset` into `buf`; returns the count.
    pub fn read_at(&self, entry: Entry<'_>, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_data_at(entry.data(), offset, buf)
    }

    /// The whole content of a file attribute.
    pub fn read_attribute(&self, attr: &FileAttribute<'_>) -> Result<Vec<u8>> {
        if let Some(inline) = attr.inline_data() {
            return Ok(inline.to_vec());
        }
        match attr.data {
            DataRef::Heap { offset, size } => {
                if size > MAX_ATTRIBUTE_SIZE {
                    return Err(corrupt!(
                        "attribute {:?} is {size} bytes, over the {MAX_ATTRIBUTE_SIZE}-byte limit",
                        attr.name
                    ))
                    .at(&self.path);
                }
                self.heap.read_vec(offset, size).at(&self.path)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// A digest of every regular file's content (BLAKE3, first 16 bytes),
    /// by entry id, ascending: what lets a mount serve identical files of
    /// different packages as one inode. Goes through the heap once in
    /// order, each chunk decompressed once, bypassing the chunk caches.
    pub fn content_digests(&self) -> Result<Vec<(EntryId, [u8; 16])>> {
        let toc = self.toc();
        let mut files: Vec<(u64, EntryId)> = (0..toc.len() as EntryId)
            .filter(|&id| self.entry(id).kind() == crate::EntryKind::File)
            .map(|id| match self.entry(id).data() {
                DataRef::Heap { offset, .. } => (offset, id),
                _ => (0, id),
            })
            .collect();
        files.sort_unstable();
        let mut out = Vec::with_capacity(files.len());
        let mut buf = vec![0u8; 1 << 18];
        let mut last = None;
        for (_, id) in files {
            let entry = self.entry(id);
            let mut hasher = blake3::Hasher::new();
            match entry.data() {
                DataRef::Heap { offset, size } => {
                    let mut done = 0u64;
                    while done < size {
                        let n = (size - done).min(buf.len() as u64) as usize;
                        self.heap
                            .read_exact_at_uncached(offset + done, &mut buf[..n], &mut last)
                            .at(&self.path)?;
                        hasher.update(&buf[..n]);
                        done += n as u64;
                    }
                }
                data => {
                    let n = self.read_data_at(data, 0, &mut buf)?;
                    hasher.update(&buf[..n]);
                }
            }
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
            out.push((id, digest));
        }
        out.sort_unstable_by_key(|&(id, _)| id);
        Ok(out)
    }

    /// A sequential reader over a file entry's content.
    pub fn open_file(&self, entry: Entry<'_>) -> EntryReader<'_> {
        EntryReader {
            package: self,
            data: entry.data(),
            pos: 0,
        }
    }
}

/// Largest file attribute we load into memory (Haiku's own host tools
/// limit attributes to well under this).
pub const MAX_ATTRIBUTE_SIZE: u64 = 16 << 20;

fn copy_inline(inline: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    if offset >= inline.len() as u64 {
        return 0;
    }
    let src = &inline[offset as usize..];
    let n = src.len().min(buf.len());
    buf[..n].copy_from_slice(&src[..n]);
    n
}

/// `io::Read` over one entry's content.
pub struct EntryReader<'a> {
    package: &'a Package,
    data: DataRef,
    pos: u64,
}

impl Read for EntryReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .package
            .read_data_at(self.data, self.pos, buf)
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}
