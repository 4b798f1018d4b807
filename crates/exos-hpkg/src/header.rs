//! The fixed-size, big-endian file headers of HPKG (80 bytes) and HPKR (72 bytes).

use crate::error::{corrupt, ErrorKind, Result};

/// The first bytes of a package.
pub const HPKG_MAGIC: [u8; 4] = *b"hpkg";
/// The first bytes of a repository index.
pub const HPKR_MAGIC: [u8; 4] = *b"hpkr";
/// Bytes of a package header.
pub const HPKG_HEADER_SIZE: usize = 80;
/// Bytes of a repository header.
pub const HPKR_HEADER_SIZE: usize = 72;
/// The format version read and written.
pub const FORMAT_VERSION: u16 = 2;
/// The minor version this crate understands; unknown attribute IDs are
/// tolerated only in files with a newer minor version.
pub const MINOR_VERSION: u16 = 1;
/// Uncompressed size of every heap chunk but the last.
pub const CHUNK_SIZE: u32 = 65536;

/// Haiku caps these sections when reading; so do we, to bound memory.
pub const MAX_TOC_LENGTH: u64 = 64 << 20;
/// Largest package attributes section accepted.
pub const MAX_ATTRIBUTES_LENGTH: u64 = 1 << 20;
/// Largest repository info section accepted.
pub const MAX_REPO_INFO_LENGTH: u64 = 4 << 20;
/// Largest repository packages section accepted.
pub const MAX_REPO_PACKAGES_LENGTH: u64 = 256 << 20;

/// How the heap's chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Chunks stored as they are.
    None,
    /// zlib (what Haiku's tools write).
    Zlib,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The compression a header's field names.
    pub fn from_raw(v: u16) -> Result<Self> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zlib),
            2 => Ok(Compression::Zstd),
            other => Err(corrupt!("unknown heap compression {other}")),
        }
    }

    /// The header field's value.
    pub fn raw(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Zlib => 1,
            Compression::Zstd => 2,
        }
    }

    /// `none`, `zlib` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Heap geometry shared by both file kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapInfo {
    /// File offset where the heap starts (= header size).
    pub offset: u64,
    /// How its chunks are compressed.
    pub compression: Compression,
    /// Bytes the heap occupies in the file, chunk-size table included.
    pub size_compressed: u64,
    /// Length of the logical (uncompressed) heap.
    pub size_uncompressed: u64,
}

/// The HPKG header, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageHeader {
    /// Bytes of the header.
    pub header_size: u16,
    /// The format version (2).
    pub version: u16,
    /// The file's size.
    pub total_size: u64,
    /// The minor format version.
    pub minor_version: u16,
    /// The heap.
    pub heap: HeapInfo,
    /// Bytes of the attributes section.
    pub attributes_length: u32,
    /// Bytes of its string table.
    pub attributes_strings_length: u32,
    /// Strings in its string table.
    pub attributes_strings_count: u32,
    /// Bytes of the TOC section.
    pub toc_length: u64,
    /// Bytes of its string table.
    pub toc_strings_length: u64,
    /// Strings in its string table.
    pub toc_strings_count: u64,
}

/// The HPKR header, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepoHeader {
    /// Bytes of the header.
    pub header_size: u16,
    /// The format version (2).
    pub version: u16,
    /// The file's size.
    pub total_size: u64,
    /// The minor format version.
    pub minor_version: u16,
    /// The heap.
    pub heap: HeapInfo,
    /// Bytes of the repository info section.
    pub info_length: u32,
    /// Bytes of the packages section.
    pub packages_length: u64,
    /// Bytes of its string table.
    pub packages_strings_length: u64,
    /// Strings in its string table.
    pub packages_strings_count: u64,
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().unwrap())
}
fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap())
}

/// Checks the magic and version, distinguishing legacy v1 files so users get
/// a precise message.
fn check_magic_version(b: &[u8], magic: [u8; 4], kind: &'static str) -> Result<()> {
    let found: [u8; 4] = b[0..4].try_into().unwrap();
    if found != magic {
        return Err(ErrorKind::BadMagic(found).into());
    }
    match be16(b, 6) {
        FORMAT_VERSION => Ok(()),
        1 => Err(ErrorKind::LegacyV1(kind).into()),
        v => Err(ErrorKind::UnsupportedVersion(v).into()),
    }
}

/// Validates the heap geometry common to both headers.
fn check_heap(
    header_size: u64,
    total_size: u64,
    file_size: u64,
    compression: Compression,
    chunk_size: u32,
    csize: u64,
    usize_: u64,
) -> Result<HeapInfo> {
    if total_size != file_size {
        return Err(corrupt!(
            "header says the file is {total_size} bytes but it is {file_size} bytes (truncated or padded?)"
        ));
    }
    if chunk_size != CHUNK_SIZE {
        return Err(corrupt!("heap chunk size {chunk_size} is not {CHUNK_SIZE}"));
    }
    let end = header_size
        .checked_add(csize)
        .ok_or_else(|| corrupt!("compressed heap size {csize} overflows"))?;
    if end > total_size {
        return Err(corrupt!(
            "heap ({csize} bytes at offset {header_size}) extends past the end of the file ({total_size} bytes)"
        ));
    }
    if usize_ == 0 && csize != 0 {
        return Err(corrupt!("empty heap with non-zero compressed size {csize}"));
    }
    if compression == Compression::None && csize != usize_ {
        return Err(corrupt!(
            "uncompressed heap: stored size {csize} differs from logical size {usize_}"
        ));
    }
    Ok(HeapInfo {
        offset: header_size,
        compression,
        size_compressed: csize,
        size_uncompressed: usize_,
    })
}

/// The first 40 bytes, laid out alike in HPKG and HPKR headers (see
/// [`write_prefix`]), checked once for both: length, magic, version,
/// header size, total size against the file, compression and heap.
struct Prefix {
    header_size: u16,
    version: u16,
    total_size: u64,
    minor_version: u16,
    heap: HeapInfo,
}

impl Prefix {
    fn parse(
        b: &[u8],
        file_size: u64,
        magic: [u8; 4],
        size: usize,
        kind: &'static str,
    ) -> Result<Prefix> {
        let name = String::from_utf8_lossy(&magic).to_uppercase();
        if b.len() < size {
            if b.len() >= 4 && b[0..4] != magic {
                return Err(ErrorKind::BadMagic(b[0..4].try_into().unwrap()).into());
            }
            return Err(corrupt!(
                "file is {} bytes, too short for an {name} header ({size} bytes)",
                b.len()
            ));
        }
        check_magic_version(b, magic, kind)?;
        let header_size = be16(b, 4);
        if (header_size as usize) < size {
            return Err(corrupt!("header size {header_size} is smaller than {size}"));
        }
        let total_size = be64(b, 8);
        let compression = Compression::from_raw(be16(b, 18))?;
        let heap = check_heap(
            header_size as u64,
            total_size,
            file_size,
            compression,
            be32(b, 20),
            be64(b, 24),
            be64(b, 32),
        )?;
        Ok(Prefix {
            header_size,
            version: be16(b, 6),
            total_size,
            minor_version: be16(b, 16),
            heap,
        })
    }
}

/// Checks a strings subsection's declared geometry against its section.
fn check_strings(what: &str, length: u64, count: u64, section: u64) -> Result<()> {
    if (length <= 1) != (count == 0) {
        return Err(corrupt!(
            "{what}: strings length {length} is inconsistent with string count {count}"
        ));
    }
    if length > section {
        return Err(corrupt!(
            "{what}: strings length {length} exceeds the section length {section}"
        ));
    }
    if count > length {
        return Err(corrupt!(
            "{what}: {count} strings cannot fit in {length} bytes"
        ));
    }
    Ok(())
}

impl PackageHeader {
    /// Parses and validates an HPKG header. `file_size` is the actual size
    /// of the file, checked against `total_size`.
    pub fn parse(b: &[u8], file_size: u64) -> Result<Self> {
        let p = Prefix::parse(b, file_size, HPKG_MAGIC, HPKG_HEADER_SIZE, "package")?;
        let heap = p.heap;
        let h = PackageHeader {
            header_size: p.header_size,
            version: p.version,
            total_size: p.total_size,
            minor_version: p.minor_version,
            heap,
            attributes_length: be32(b, 40),
            attributes_strings_length: be32(b, 44),
            attributes_strings_count: be32(b, 48),
            // 52..56 is reserved1: garbage in real files, ignored.
            toc_length: be64(b, 56),
            toc_strings_length: be64(b, 64),
            toc_strings_count: be64(b, 72),
        };
        if h.attributes_length as u64 > MAX_ATTRIBUTES_LENGTH {
            return Err(ErrorKind::TooLarge {
                what: "package attributes section",
                size: h.attributes_length as u64,
                limit: MAX_ATTRIBUTES_LENGTH,
            }
            .into());
        }
        if h.toc_length > MAX_TOC_LENGTH {
            return Err(ErrorKind::TooLarge {
                what: "TOC section",
                size: h.toc_length,
                limit: MAX_TOC_LENGTH,
            }
            .into());
        }
        let sections = (h.attributes_length as u64)
            .checked_add(h.toc_length)
            .ok_or_else(|| corrupt!("section lengths overflow"))?;
        if sections > heap.size_uncompressed {
            return Err(corrupt!(
                "TOC ({}) and attributes ({}) sections do not fit in the {}-byte heap",
                h.toc_length,
                h.attributes_length,
                heap.size_uncompressed
            ));
        }
        check_strings(
            "package attributes",
            h.attributes_strings_length as u64,
            h.attributes_strings_count as u64,
            h.attributes_length as u64,
        )?;
        check_strings(
            "TOC",
            h.toc_strings_length,
            h.toc_strings_count,
            h.toc_length,
        )?;
        Ok(h)
    }

    /// Heap offset of the package-attributes section.
    pub fn attributes_offset(&self) -> u64 {
        self.heap.size_uncompressed - self.attributes_length as u64
    }

    /// Heap offset of the TOC section.
    pub fn toc_offset(&self) -> u64 {
        self.attributes_offset() - self.toc_length
    }

    /// Serialises the header; `reserved1` is written as 0.
    pub fn to_bytes(&self) -> [u8; HPKG_HEADER_SIZE] {
        let mut b = [0u8; HPKG_HEADER_SIZE];
        write_prefix(
            &mut b,
            HPKG_MAGIC,
            [self.header_size, self.version, self.minor_version],
            self.total_size,
            &self.heap,
        );
        b[40..44].copy_from_slice(&self.attributes_length.to_be_bytes());
        b[44..48].copy_from_slice(&self.attributes_strings_length.to_be_bytes());
        b[48..52].copy_from_slice(&self.attributes_strings_count.to_be_bytes());
        b[56..64].copy_from_slice(&self.toc_length.to_be_bytes());
        b[64..72].copy_from_slice(&self.toc_strings_length.to_be_bytes());
        b[72..80].copy_from_slice(&self.toc_strings_count.to_be_bytes());
        b
    }
}

/// The first 40 bytes, laid out alike in HPKG and HPKR headers: magic,
/// header size, version, total size, minor version, then the heap's
/// compression, chunk size and sizes.
fn write_prefix(
    b: &mut [u8],
    magic: [u8; 4],
    [header_size, version, minor_version]: [u16; 3],
    total_size: u64,
    heap: &HeapInfo,
) {
    b[0..4].copy_from_slice(&magic);
    b[4..6].copy_from_slice(&header_size.to_be_bytes());
    b[6..8].copy_from_slice(&version.to_be_bytes());
    b[8..16].copy_from_slice(&total_size.to_be_bytes());
    b[16..18].copy_from_slice(&minor_version.to_be_bytes());
    b[18..20].copy_from_slice(&heap.compression.raw().to_be_bytes());
    b[20..24].copy_from_slice(&CHUNK_SIZE.to_be_bytes());
    b[24..32].copy_from_slice(&heap.size_compressed.to_be_bytes());
    b[32..40].copy_from_slice(&heap.size_uncompressed.to_be_bytes());
}

impl RepoHeader {
    /// Serialises the header; `reserved1` is written as 0.
    pub fn to_bytes(&self) -> [u8; HPKR_HEADER_SIZE] {
        let mut b = [0u8; HPKR_HEADER_SIZE];
        write_prefix(
            &mut b,
            HPKR_MAGIC,
            [self.header_size, self.version, self.minor_version],
            self.total_size,
            &self.heap,
        );
        b[40..44].copy_from_slice(&self.info_length.to_be_bytes());
        b[48..56].copy_from_slice(&self.packages_length.to_be_bytes());
        b[56..64].copy_from_slice(&self.packages_strings_length.to_be_bytes());
        b[64..72].copy_from_slice(&self.packages_strings_count.to_be_bytes());
        b
    }

    /// Parses and validates an HPKR header.
    pub fn parse(b: &[u8], file_size: u64) -> Result<Self> {
        let p = Prefix::parse(b, file_size, HPKR_MAGIC, HPKR_HEADER_SIZE, "repository")?;
        let heap = p.heap;
        let h = RepoHeader {
            header_size: p.header_size,
            version: p.version,
            total_size: p.total_size,
            minor_version: p.minor_version,
            heap,
            info_length: be32(b, 40),
            // 44..48 is reserved1, ignored.
            packages_length: be64(b, 48),
            packages_strings_length: be64(b, 56),
            packages_strings_count: be64(b, 64),
        };
        if h.info_length as u64 > MAX_REPO_INFO_LENGTH {
            return Err(ErrorKind::TooLarge {
                what: "repository info section",
                size: h.info_length as u64,
                limit: MAX_REPO_INFO_LENGTH,
            }
            .into());
        }
        if h.packages_length > MAX_REPO_PACKAGES_LENGTH {
            return Err(ErrorKind::TooLarge {
                what: "repository packages section",
                size: h.packages_length,
                limit: MAX_REPO_PACKAGES_LENGTH,
            }
            .into());
        }
        let sections = (h.info_length as u64)
            .checked_add(h.packages_length)
            .ok_or_else(|| corrupt!("section lengths overflow"))?;
        if sections > heap.size_uncompressed {
            return Err(corrupt!(
                "info ({}) and packages ({}) sections do not fit in the {}-byte heap",
                h.info_length,
                h.packages_length,
                heap.size_uncompressed
            ));
        }
        check_strings(
            "repository packages",
            h.packages_strings_length,
            h.packages_strings_count,
            h.packages_length,
        )?;
        Ok(h)
    }

    /// Where the packages section starts in the uncompressed heap.
    pub fn packages_offset(&self) -> u64 {
        self.heap.size_uncompressed - self.packages_length
    }

    /// Where the repository info section starts in the uncompressed heap.
    pub fn info_offset(&self) -> u64 {
        self.packages_offset() - self.info_length as u64
    }
}
