//! # exos-hostile — the hostile inputs EXOS is tested against
//!
//! Every crafted package and repository index that the security tests, the
//! fuzz seed corpus and the memory report (`bench/hostile.sh`) use is made
//! here, from code, so no test depends on a binary blob whose making is
//! unknown. Each [`Case`] says which class of attack it is and what EXOS
//! must do with it ([`Expect`]).
//!
//! The assembler ([`RawPackage`], [`raw_repository`]) writes sections as
//! given — including structures EXOS's own writer would never produce —
//! and compresses the heap chunk by chunk like a real package, so a few
//! kilobytes on disk can claim megabytes once decompressed.

#![forbid(unsafe_code)]

use std::io::Write;

use exos_hpkg::attr::{encode_section, id, ty, write_uleb128, EncodedSection, WAttr, WValue};
use exos_hpkg::header::{HeapInfo, PackageHeader, CHUNK_SIZE};
use exos_hpkg::{Compression, PackageInfo, Version};

/// What EXOS must do with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `Package::open` (or `Repository::open`) refuses it; the error
    /// contains this text.
    Refused(&'static str),
    /// It opens (it is a well-formed package), but reading its data fails
    /// with an error containing this text.
    DataError(&'static str),
    /// It opens and reads; the danger is in what is done with it (mounting,
    /// listing, extracting), which the tests of those commands check.
    Accepted,
}

/// One hostile input.
#[derive(Debug, Clone)]
pub struct Case {
    /// File name stem, e.g. `toc-4m-entries`.
    pub name: &'static str,
    /// The attack, in a few words (for the report).
    pub class: &'static str,
    /// `hpkg` or `hpkr`.
    pub extension: &'static str,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// What reading it must do.
    pub expect: Expect,
}

impl Case {
    /// `NAME.EXTENSION`, the case's file name.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.name, self.extension)
    }
}

/// Attribute tag as the stream encodes it (spec §1.4).
pub fn tag(attr_id: u8, value_type: u8, encoding: u8, has_children: bool) -> u64 {
    (((encoding as u64) << 11) | ((has_children as u64) << 10) | ((value_type as u64) << 7))
        + attr_id as u64
        + 1
}

/// A section written by hand: a string table, then raw attribute bytes.
#[derive(Default)]
pub struct SectionWriter {
    strings: Vec<Vec<u8>>,
    body: Vec<u8>,
}

impl SectionWriter {
    /// Adds a string to the table; returns its index.
    pub fn table_string(&mut self, s: &[u8]) -> u64 {
        self.strings.push(s.to_vec());
        self.strings.len() as u64 - 1
    }

    /// An attribute whose string value is table entry `index`.
    pub fn string_ref(&mut self, attr_id: u8, index: u64, has_children: bool) {
        write_uleb128(&mut self.body, tag(attr_id, ty::STRING, 1, has_children));
        write_uleb128(&mut self.body, index);
    }

    /// An attribute with an inline string value.
    pub fn string(&mut self, attr_id: u8, s: &[u8], has_children: bool) {
        write_uleb128(&mut self.body, tag(attr_id, ty::STRING, 0, has_children));
        self.body.extend_from_slice(s);
        self.body.push(0);
    }

    /// An unsigned attribute, 8-byte encoding.
    pub fn uint(&mut self, attr_id: u8, v: u64) {
        write_uleb128(&mut self.body, tag(attr_id, ty::UINT, 3, false));
        self.body.extend_from_slice(&v.to_be_bytes());
    }

    /// Heap data reference.
    pub fn heap_data(&mut self, offset: u64, size: u64) {
        write_uleb128(&mut self.body, tag(id::DATA, ty::RAW, 1, false));
        write_uleb128(&mut self.body, size);
        write_uleb128(&mut self.body, offset);
    }

    /// Ends a child list.
    pub fn end(&mut self) {
        self.body.push(0);
    }

    /// Appends raw bytes to the attribute stream.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
    }

    /// The section: table, its terminator, the attributes, the final 0.
    pub fn finish(self) -> EncodedSection {
        let mut bytes = Vec::new();
        for s in &self.strings {
            bytes.extend_from_slice(s);
            bytes.push(0);
        }
        bytes.push(0);
        let strings_length = bytes.len() as u64;
        bytes.extend_from_slice(&self.body);
        bytes.push(0);
        EncodedSection {
            bytes,
            strings_length,
            strings_count: self.strings.len() as u64,
        }
    }
}

/// A package assembled from raw sections.
pub struct RawPackage {
    /// File and attribute data at the start of the heap.
    pub data: Vec<u8>,
    /// The TOC, as encoded (possibly hostile).
    pub toc: EncodedSection,
    /// The package attributes, as encoded (possibly hostile).
    pub attrs: EncodedSection,
    /// How the heap is compressed.
    pub compression: Compression,
}

impl RawPackage {
    /// A zlib package of these sections and no file data.
    pub fn new(toc: EncodedSection, attrs: EncodedSection) -> RawPackage {
        RawPackage {
            data: Vec::new(),
            toc,
            attrs,
            compression: Compression::Zlib,
        }
    }

    /// The package file: header, then the heap compressed in 64 KiB chunks.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut heap = self.data.clone();
        heap.extend_from_slice(&self.toc.bytes);
        heap.extend_from_slice(&self.attrs.bytes);
        let size_uncompressed = heap.len() as u64;
        let stored = compress_heap(&heap, self.compression);
        let h = PackageHeader {
            header_size: 80,
            version: 2,
            total_size: 80 + stored.len() as u64,
            minor_version: 1,
            heap: HeapInfo {
                offset: 80,
                compression: self.compression,
                size_compressed: stored.len() as u64,
                size_uncompressed,
            },
            attributes_length: self.attrs.bytes.len() as u32,
            attributes_strings_length: self.attrs.strings_length as u32,
            attributes_strings_count: self.attrs.strings_count as u32,
            toc_length: self.toc.bytes.len() as u64,
            toc_strings_length: self.toc.strings_length,
            toc_strings_count: self.toc.strings_count,
        };
        let mut out = h.to_bytes().to_vec();
        out.extend_from_slice(&stored);
        out
    }
}

/// Cuts a heap into 64 KiB chunks, compresses each (stored raw when that
/// does not shrink it) and appends the chunk-size table.
pub fn compress_heap(heap: &[u8], compression: Compression) -> Vec<u8> {
    if compression == Compression::None {
        return heap.to_vec();
    }
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    for chunk in heap.chunks(CHUNK_SIZE as usize) {
        let packed = match compression {
            Compression::Zlib => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(chunk).expect("compressing to memory");
                e.finish().expect("compressing to memory")
            }
            _ => zstd::bulk::compress(chunk, 3).expect("compressing to memory"),
        };
        let stored: &[u8] = if packed.len() < chunk.len() {
            &packed
        } else {
            chunk
        };
        sizes.push(stored.len());
        out.extend_from_slice(stored);
    }
    sizes.pop();
    for s in sizes {
        out.extend_from_slice(&((s - 1) as u16).to_be_bytes());
    }
    out
}

/// Package attributes of a minimal valid package named `name`.
pub fn attrs_named(name: &str) -> EncodedSection {
    let info = PackageInfo {
        name: name.into(),
        summary: "hostile input".into(),
        description: "made by exos-hostile".into(),
        version: Version::parse("1").expect("valid version"),
        ..Default::default()
    };
    encode_section(&info.to_attrs())
}

/// A `dir:entry` with the given children.
pub fn entry(name: impl AsRef<[u8]>, children: Vec<WAttr>) -> WAttr {
    WAttr::string(id::DIRECTORY_ENTRY, name).with_children(children)
}

/// A regular file entry with inline content and a modification time.
pub fn file(name: impl AsRef<[u8]>, content: &[u8], mtime: u64) -> WAttr {
    let mut kids = vec![WAttr::uint(id::FILE_MTIME, mtime)];
    if !content.is_empty() {
        kids.push(WAttr::new(id::DATA, WValue::Inline(content.to_vec())));
    }
    entry(name, kids)
}

/// A directory entry.
pub fn dir(name: impl AsRef<[u8]>, mut children: Vec<WAttr>) -> WAttr {
    children.insert(0, WAttr::uint(id::FILE_TYPE, 1));
    entry(name, children)
}

/// A package made of these TOC entries (inline data only).
pub fn package_of(name: &str, toc: Vec<WAttr>) -> Vec<u8> {
    RawPackage::new(encode_section(&toc), attrs_named(name)).to_bytes()
}

/// A package whose single file `f` holds `content` in the heap, with
/// `mutate` applied to the stored heap bytes (before the chunk table).
fn package_with_heap_file(name: &str, content: &[u8], compression: Compression) -> RawPackage {
    // A readable file first, so a failing extraction has something to undo.
    let toc = encode_section(&[
        file("a-ok", b"fine", 1_700_000_000),
        entry(
            "f",
            vec![
                WAttr::uint(id::FILE_MTIME, 1_700_000_000),
                WAttr::new(
                    id::DATA,
                    WValue::Heap {
                        offset: 0,
                        size: content.len() as u64,
                    },
                ),
            ],
        ),
    ]);
    RawPackage {
        data: content.to_vec(),
        toc,
        attrs: attrs_named(name),
        compression,
    }
}

/// 4,000,000 entries (2,000 directories of 2,000 empty files, every name
/// a 2-byte string-table reference): a TOC of ~16 MiB that compresses to
/// well under 1 MiB. Valid, but it expands ~1000-fold.
fn toc_millions_of_entries() -> Vec<u8> {
    const FANOUT: u64 = 2000;
    let mut w = SectionWriter::default();
    for i in 0..FANOUT {
        w.table_string(format!("n{i:04}").as_bytes());
    }
    for d in 0..FANOUT {
        w.string_ref(id::DIRECTORY_ENTRY, d, true);
        w.uint(id::FILE_TYPE, 1);
        for f in 0..FANOUT {
            w.string_ref(id::DIRECTORY_ENTRY, f, false);
        }
        w.end();
    }
    RawPackage::new(w.finish(), attrs_named("bigtoc")).to_bytes()
}

/// One 60 KiB string in the TOC's table, referenced as the owner name of
/// 20,000 entries (3 bytes each): copying per use would cost ~1.2 GB.
fn toc_string_amplification() -> Vec<u8> {
    let mut w = SectionWriter::default();
    let long = w.table_string(&vec![b'u'; 60 << 10]);
    for i in 0..20_000u32 {
        w.string(id::DIRECTORY_ENTRY, format!("e{i}").as_bytes(), true);
        w.string_ref(id::FILE_USER, long, false);
        w.string_ref(id::FILE_GROUP, long, false);
        w.end();
    }
    RawPackage::new(w.finish(), attrs_named("strings")).to_bytes()
}

/// A 60 KiB symlink target: longer than any path the kernel accepts.
fn symlink_target_too_long() -> Vec<u8> {
    package_of(
        "longlink",
        vec![entry(
            "l",
            vec![
                WAttr::uint(id::FILE_TYPE, 2),
                WAttr::string(id::SYMLINK_PATH, "x".repeat(60 << 10)),
            ],
        )],
    )
}

/// Package attributes of ~1 MiB holding 349,000 identical `provides`
/// (3 bytes each): ~70 MB once decoded into owned structures.
fn duplicate_provides() -> Vec<u8> {
    let mut w = SectionWriter::default();
    let name = w.table_string(b"dup");
    w.string_ref(id::PACKAGE_NAME, name, false);
    w.string(id::PACKAGE_VERSION_MAJOR, b"1", false);
    for _ in 0..349_000 {
        w.string_ref(id::PACKAGE_PROVIDES, name, false);
    }
    let toc = encode_section(&[file("f", b"x", 1)]);
    RawPackage::new(toc, w.finish()).to_bytes()
}

/// A 200 KiB copyright string referenced 100,000 times: 20 GB if copied.
fn long_string_copies() -> Vec<u8> {
    let mut w = SectionWriter::default();
    let name = w.table_string(b"copies");
    let long = w.table_string(&vec![b'c'; 200 << 10]);
    w.string_ref(id::PACKAGE_NAME, name, false);
    w.string(id::PACKAGE_VERSION_MAJOR, b"1", false);
    for _ in 0..100_000 {
        w.string_ref(id::PACKAGE_COPYRIGHT, long, false);
    }
    let toc = encode_section(&[file("f", b"x", 1)]);
    RawPackage::new(toc, w.finish()).to_bytes()
}

/// A package whose name attribute is `name` (`..`, `a/b`, empty).
fn named(name: &str) -> Vec<u8> {
    let mut w = SectionWriter::default();
    w.string(id::PACKAGE_NAME, name.as_bytes(), false);
    w.string(id::PACKAGE_VERSION_MAJOR, b"1", false);
    RawPackage::new(encode_section(&[file("f", b"x", 1)]), w.finish()).to_bytes()
}

/// A flattened BMessage (`HMF1`) with the given fields: (name, type code,
/// flags, item bytes as stored).
pub fn bmessage(fields: &[(&str, u32, u16, u32, Vec<u8>)]) -> Vec<u8> {
    let mut headers = Vec::new();
    let mut data = Vec::new();
    for (name, type_code, flags, count, items) in fields {
        let offset = data.len() as u32;
        data.extend_from_slice(name.as_bytes());
        data.push(0);
        data.extend_from_slice(items);
        headers.extend_from_slice(&flags.to_le_bytes());
        headers.extend_from_slice(&((name.len() + 1) as u16).to_le_bytes());
        headers.extend_from_slice(&type_code.to_le_bytes());
        headers.extend_from_slice(&count.to_le_bytes());
        headers.extend_from_slice(&(items.len() as u32).to_le_bytes());
        headers.extend_from_slice(&offset.to_le_bytes());
        headers.extend_from_slice(&u32::MAX.to_le_bytes()); // next field in hash chain
    }
    let mut m = Vec::new();
    m.extend_from_slice(b"HMF1");
    m.extend_from_slice(&[0u8; 32]); // what, flags, specifier, area, reply fields
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes()); // hash table size
    m.extend_from_slice(&headers);
    m.extend_from_slice(&data);
    m
}

/// An HPKR file: 72-byte header, uncompressed heap of `info` + `packages`.
pub fn raw_repository(info: &[u8], packages: &EncodedSection) -> Vec<u8> {
    let heap_len = (info.len() + packages.bytes.len()) as u64;
    let mut h = Vec::with_capacity(72);
    h.extend_from_slice(b"hpkr");
    h.extend_from_slice(&72u16.to_be_bytes());
    h.extend_from_slice(&2u16.to_be_bytes());
    h.extend_from_slice(&(72 + heap_len).to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes()); // minor version
    h.extend_from_slice(&Compression::None.raw().to_be_bytes());
    h.extend_from_slice(&CHUNK_SIZE.to_be_bytes());
    h.extend_from_slice(&heap_len.to_be_bytes()); // compressed
    h.extend_from_slice(&heap_len.to_be_bytes()); // uncompressed
    h.extend_from_slice(&(info.len() as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // reserved
    h.extend_from_slice(&(packages.bytes.len() as u64).to_be_bytes());
    h.extend_from_slice(&packages.strings_length.to_be_bytes());
    h.extend_from_slice(&packages.strings_count.to_be_bytes());
    h.extend_from_slice(info);
    h.extend_from_slice(&packages.bytes);
    h
}

/// The 151-byte index that made `exos list` panic: a fixed-size BMessage
/// field of one item in zero bytes.
fn hpkr_zero_size_item() -> Vec<u8> {
    let info = bmessage(&[("name", u32::from_be_bytes(*b"CSTR"), 0x0002, 1, vec![])]);
    raw_repository(&info, &encode_section(&[]))
}

/// An index with no `baseUrl` whose identifier is a URL.
pub fn hpkr_without_base_url() -> Vec<u8> {
    let cstr = |s: &str| {
        let mut v = (s.len() as u32 + 1).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        v
    };
    let t = u32::from_be_bytes(*b"CSTR");
    let info = bmessage(&[
        ("name", t, 0, 1, cstr("hostile")),
        ("identifier", t, 0, 1, cstr("https://repo.example/hostile")),
    ]);
    raw_repository(&info, &encode_section(&[]))
}

/// A valid 2-chunk zlib package whose first (data) chunk is corrupted or a
/// bomb, with the TOC intact in the second chunk.
fn bad_data_chunk(bomb: bool) -> Vec<u8> {
    let content: Vec<u8> = (0..CHUNK_SIZE as usize)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let p = package_with_heap_file(
        if bomb { "bomb" } else { "flipped" },
        &content,
        Compression::Zlib,
    );
    let mut bytes = p.to_bytes();
    if bomb {
        // Replace chunk 0 with a stream that inflates to 64 MiB, keeping
        // the table consistent.
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 32 << 20])
            .expect("compressing to memory");
        let z = e.finish().expect("compressing to memory");
        return splice_chunk0(&bytes, &z);
    }
    // Flip bits in the middle of chunk 0's deflate stream.
    let first_chunk_len =
        u16::from_be_bytes([bytes[bytes.len() - 2], bytes[bytes.len() - 1]]) as usize + 1;
    let mid = 80 + first_chunk_len / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0xa5;
    }
    bytes
}

/// Rebuilds a package with chunk 0's stored bytes replaced by `z`.
fn splice_chunk0(bytes: &[u8], z: &[u8]) -> Vec<u8> {
    let h = PackageHeader::parse(&bytes[..80], bytes.len() as u64).expect("own package");
    let table_len = 2 * (h.heap.size_uncompressed.div_ceil(CHUNK_SIZE as u64) - 1) as usize;
    let heap = &bytes[80..];
    let table = &heap[heap.len() - table_len..];
    let old0 = u16::from_be_bytes([table[0], table[1]]) as usize + 1;
    let rest = &heap[old0..heap.len() - table_len];
    let mut new_heap = z.to_vec();
    new_heap.extend_from_slice(rest);
    new_heap.extend_from_slice(&((z.len() - 1) as u16).to_be_bytes());
    new_heap.extend_from_slice(&table[2..]);
    let h2 = PackageHeader {
        total_size: 80 + new_heap.len() as u64,
        heap: HeapInfo {
            size_compressed: new_heap.len() as u64,
            ..h.heap
        },
        ..h
    };
    let mut out = h2.to_bytes().to_vec();
    out.extend_from_slice(&new_heap);
    out
}

/// Every case, in a stable order.
pub fn cases() -> Vec<Case> {
    let mut v = vec![
        Case {
            name: "toc-4m-entries",
            class: "TOC expanding 1000-fold (4,000,000 entries)",
            extension: "hpkg",
            bytes: toc_millions_of_entries(),
            expect: Expect::Refused("memory"),
        },
        Case {
            name: "toc-string-copies",
            class: "one 60 KiB TOC string as owner and group of 20,000 entries",
            extension: "hpkg",
            bytes: toc_string_amplification(),
            expect: Expect::Accepted,
        },
        Case {
            name: "symlink-target-60k",
            class: "symlink target longer than PATH_MAX",
            extension: "hpkg",
            bytes: symlink_target_too_long(),
            expect: Expect::Refused("symlink target"),
        },
        Case {
            name: "attrs-349k-provides",
            class: "349,000 duplicate provides in 1 MiB of attributes",
            extension: "hpkg",
            bytes: duplicate_provides(),
            expect: Expect::Refused("memory"),
        },
        Case {
            name: "attrs-string-copies",
            class: "one 200 KiB attribute string referenced 100,000 times",
            extension: "hpkg",
            bytes: long_string_copies(),
            expect: Expect::Refused("memory"),
        },
        Case {
            name: "hpkr-zero-size-item",
            class: "repository info field of fixed-size items in 0 bytes",
            extension: "hpkr",
            bytes: hpkr_zero_size_item(),
            expect: Expect::Refused("fixed-size"),
        },
        Case {
            name: "data-chunk-flipped",
            class: "corrupted data chunk behind a valid TOC",
            extension: "hpkg",
            bytes: bad_data_chunk(false),
            expect: Expect::DataError("heap chunk 0"),
        },
        Case {
            name: "data-chunk-bomb",
            class: "data chunk inflating to 32 MiB behind a valid TOC",
            extension: "hpkg",
            bytes: bad_data_chunk(true),
            expect: Expect::DataError("heap chunk 0"),
        },
        Case {
            name: "mtime-max",
            class: "entry times at u64::MAX and 2^63 seconds",
            extension: "hpkg",
            bytes: package_of(
                "timestamps",
                vec![
                    file("max", b"a", u64::MAX),
                    file("two63", b"b", 1 << 63),
                    dir("d", vec![WAttr::uint(id::FILE_MTIME, u64::MAX)]),
                ],
            ),
            expect: Expect::Accepted,
        },
        Case {
            name: "control-char-names",
            class: "entry names with control characters",
            extension: "hpkg",
            bytes: package_of(
                "ctrl",
                vec![
                    file("new\nline", b"1", 1),
                    file("esc\x1b[31mred", b"2", 1),
                    file("tab\there", b"3", 1),
                ],
            ),
            expect: Expect::Accepted,
        },
        Case {
            name: "non-utf8-names",
            class: "entry names and a symlink target that are not UTF-8 (as Haiku stores them)",
            extension: "hpkg",
            bytes: package_of(
                "latin1",
                vec![
                    // Latin-1 "café": used twice, so it lands in the
                    // string table; the others are inline.
                    file(b"caf\xe9", b"latin-1", 1),
                    file(b"mixed-\xc3\xa9-\xe9", b"half", 1),
                    dir(b"r\xe9p", vec![file(b"caf\xe9", b"inner", 1)]),
                    entry(
                        "link",
                        vec![
                            WAttr::uint(id::FILE_TYPE, 2),
                            WAttr::string(id::SYMLINK_PATH, b"caf\xe9"),
                        ],
                    ),
                    file(b"\xff\xfe", b"bom", 1),
                ],
            ),
            expect: Expect::Accepted,
        },
        Case {
            name: "reserved-packages-dir",
            class: "package shipping .packages/<victim>/manifest.json",
            extension: "hpkg",
            bytes: package_of(
                "spoof",
                vec![dir(
                    ".packages",
                    vec![dir("victim", vec![file("manifest.json", b"{}", 1)])],
                )],
            ),
            expect: Expect::Accepted,
        },
        Case {
            name: "reserved-packages-file",
            class: "package shipping a plain file .packages",
            extension: "hpkg",
            bytes: package_of("hider", vec![file(".packages", b"x", 1)]),
            expect: Expect::Accepted,
        },
    ];
    v.push(Case {
        name: "hpkr-no-base-url",
        class: "repository whose info has no base URL (identifier is a URL)",
        extension: "hpkr",
        bytes: hpkr_without_base_url(),
        expect: Expect::Accepted,
    });
    for (stem, name) in [
        ("name-dotdot", ".."),
        ("name-slash", "a/b"),
        ("name-empty", ""),
    ] {
        v.push(Case {
            name: stem,
            class: "package name that is not a valid name",
            extension: "hpkg",
            bytes: named(name),
            expect: Expect::Refused("package name"),
        });
    }
    v
}

/// Two versions of a small package (zlib), for delta seeds and the
/// `apply_delta` fuzz target: returns (old, new) built into `dir`. The
/// heap layout is the same on every run (file timestamps live in the TOC).
pub fn delta_pair(
    dir: &std::path::Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), Box<dyn std::error::Error + Send + Sync>> {
    let text = |n: usize, seed: usize| -> Vec<u8> {
        (0..n)
            .map(|i| b"packages are mounted, never extracted\n"[(i * 7 + seed) % 38])
            .collect()
    };
    let mut out = Vec::new();
    for v in 1..=2usize {
        let src = dir.join(format!("delta-src-{v}"));
        std::fs::create_dir_all(src.join("lib"))?;
        let mut big = text(150_000, 3);
        if v == 2 {
            big.splice(4000..4000, text(500, 9));
        }
        std::fs::write(src.join("lib/big"), &big)?;
        std::fs::write(src.join("lib/small"), format!("version {v}\n"))?;
        // Unchanged: the delta copies it (a copy segment for the fuzzer).
        std::fs::write(src.join("lib/same"), text(20_000, 5))?;
        // Fixed times: the same bytes on every run (timestamps are in the TOC).
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
        for p in ["lib/big", "lib/small", "lib/same", "lib", ""] {
            std::fs::File::open(src.join(p))?.set_modified(t)?;
        }
        let pkg = dir.join(format!("delta-{v}.hpkg"));
        let info = PackageInfo {
            name: "delta".into(),
            version: Version::parse(&v.to_string())?,
            ..Default::default()
        };
        exos_hpkg::build_from_dir(
            &src,
            &pkg,
            &info,
            exos_hpkg::BuildOptions::default(),
            &mut |_| {},
            &mut |_| {},
        )?;
        out.push(pkg);
    }
    let new = out.pop().unwrap_or_default();
    let old = out.pop().unwrap_or_default();
    Ok((old, new))
}
