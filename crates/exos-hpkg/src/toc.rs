//! The table of contents: the package's file tree, parsed once into a
//! compact, index-based arena (spec §1.6).
//!
//! Entries are plain records linked by `u32` indices (parent, first child,
//! next sibling); names, symlink targets and inline data live in one shared
//! byte pool. Nothing points into the file; file contents are described by
//! [`DataRef`] and read through the heap on demand.

use crate::attr::{id, parse_string_table, AttrParser, Value, MAX_DEPTH};
use crate::error::{corrupt, Result};

/// Index of an entry in a [`Toc`]; the package root is [`ROOT`].
pub type EntryId = u32;
pub const ROOT: EntryId = 0;
const NONE: u32 = u32::MAX;

/// Upper bound on entries, so a hostile TOC cannot make us allocate
/// gigabytes of records (a whole Haiku system package has ~20,000).
pub const MAX_ENTRIES: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
}

impl EntryKind {
    fn from_raw(v: u64) -> Option<Self> {
        match v {
            0 => Some(EntryKind::File),
            1 => Some(EntryKind::Directory),
            2 => Some(EntryKind::Symlink),
            _ => None,
        }
    }

    /// Haiku's default permissions, used when none is stored.
    pub fn default_permissions(self) -> u16 {
        match self {
            EntryKind::File => 0o644,
            EntryKind::Directory => 0o755,
            EntryKind::Symlink => 0o777,
        }
    }

    /// The `S_IF*` bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            EntryKind::File => 0o100000,
            EntryKind::Directory => 0o040000,
            EntryKind::Symlink => 0o120000,
        }
    }
}

/// Where an entry's (or attribute's) data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataRef {
    None,
    /// Up to 8 bytes kept in the TOC; `start` indexes the TOC's byte pool.
    Inline {
        start: u32,
        len: u8,
    },
    /// A range of the uncompressed heap.
    Heap {
        offset: u64,
        size: u64,
    },
}

impl DataRef {
    pub fn size(&self) -> u64 {
        match *self {
            DataRef::None => 0,
            DataRef::Inline { len, .. } => len as u64,
            DataRef::Heap { size, .. } => size,
        }
    }
}

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: u64,
    pub nanos: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StrRef {
    start: u32,
    len: u32,
}

const NO_STR: StrRef = StrRef {
    start: 0,
    len: u32::MAX,
};

#[derive(Debug, Clone)]
struct Record {
    name: StrRef,
    parent: u32,
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
    kind: EntryKind,
    permissions: Option<u16>,
    atime: Timestamp,
    mtime: Timestamp,
    crtime: Timestamp,
    data: DataRef,
    symlink: StrRef,
    user: StrRef,
    group: StrRef,
    attrs_start: u32,
    attrs_len: u32,
}

#[derive(Debug, Clone)]
struct AttrRecord {
    name: StrRef,
    type_code: u32,
    data: DataRef,
}

/// The parsed table of contents.
#[derive(Debug, Clone)]
pub struct Toc {
    records: Vec<Record>,
    attrs: Vec<AttrRecord>,
    pool: Vec<u8>,
}

/// A borrowed view of one entry.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    toc: &'a Toc,
    id: EntryId,
    rec: &'a Record,
}

/// A BeOS/Haiku file attribute of an entry.
#[derive(Debug, Clone, Copy)]
pub struct FileAttribute<'a> {
    pub name: &'a str,
    /// Haiku type code, e.g. `'MIMS'` = 0x4d494d53.
    pub type_code: u32,
    pub data: DataRef,
    toc: &'a Toc,
}

impl<'a> FileAttribute<'a> {
    /// The attribute's bytes when stored inline.
    pub fn inline_data(&self) -> Option<&'a [u8]> {
        self.toc.inline(self.data)
    }
}

impl Toc {
    /// Parses a TOC section (string table + attribute list).
    pub fn parse(
        section: &[u8],
        strings_length: u64,
        strings_count: u64,
        minor_version: u16,
        heap_size: u64,
    ) -> Result<Toc> {
        let strings_len = usize::try_from(strings_length)
            .ok()
            .filter(|&l| l <= section.len())
            .ok_or_else(|| corrupt!("TOC strings length {strings_length} exceeds the section"))?;
        let strings = parse_string_table("TOC strings", &section[..strings_len], strings_count)?;
        let mut p = AttrParser::new(
            "TOC",
            &section[strings_len..],
            &strings,
            minor_version,
            heap_size,
        );
        let mut toc = Toc {
            records: Vec::new(),
            attrs: Vec::new(),
            pool: Vec::new(),
        };
        toc.records
            .push(Record::new(NO_STR, NONE, EntryKind::Directory));
        // Stack of entries whose child lists are open; ROOT is the top level.
        let mut stack: Vec<EntryId> = vec![ROOT];
        while let Some(&current) = stack.last() {
            let Some(a) = p.next_attr()? else {
                stack.pop();
                continue;
            };
            if a.id == id::DIRECTORY_ENTRY {
                let name = a.value.as_str().unwrap_or_default();
                check_entry_name(name)
                    .map_err(|e| corrupt!("TOC at byte {}: {e}", p.position()))?;
                if toc.records.len() >= MAX_ENTRIES {
                    return Err(corrupt!("TOC has more than {MAX_ENTRIES} entries"));
                }
                let name = toc.push_str(name);
                let new = toc.records.len() as u32;
                toc.records
                    .push(Record::new(name, current, EntryKind::File));
                let parent = &mut toc.records[current as usize];
                if parent.last_child == NONE {
                    parent.first_child = new;
                } else {
                    let prev = parent.last_child;
                    toc.records[prev as usize].next_sibling = new;
                }
                toc.records[current as usize].last_child = new;
                if a.has_children {
                    if stack.len() > MAX_DEPTH {
                        return Err(corrupt!("TOC directories nested deeper than {MAX_DEPTH}"));
                    }
                    stack.push(new);
                }
                continue;
            }
            if current == ROOT {
                // Only dir:entry means something at the top level; ignore the rest.
                if a.has_children {
                    p.skip_children()?;
                }
                continue;
            }
            toc.apply_entry_attr(&mut p, current, a.id, a.value, a.has_children)?;
        }
        p.expect_end()?;
        toc.validate()?;
        // The parse keeps `last_child` only for appending; it is not needed after.
        Ok(toc)
    }

    fn push_str(&mut self, s: &str) -> StrRef {
        let r = StrRef {
            start: self.pool.len() as u32,
            len: s.len() as u32,
        };
        self.pool.extend_from_slice(s.as_bytes());
        r
    }

    fn data_ref(&mut self, v: Value) -> Result<DataRef> {
        Ok(match v {
            Value::Inline(b) => {
                let start = self.pool.len() as u32;
                self.pool.extend_from_slice(b);
                DataRef::Inline {
                    start,
                    len: b.len() as u8,
                }
            }
            Value::Heap { offset, size } => DataRef::Heap { offset, size },
            _ => return Err(corrupt!("data attribute without raw data")),
        })
    }

    fn apply_entry_attr(
        &mut self,
        p: &mut AttrParser,
        e: EntryId,
        aid: u8,
        v: Value,
        has_children: bool,
    ) -> Result<()> {
        let pos = p.position();
        let uint = |v: Value| {
            v.as_uint().ok_or_else(|| {
                corrupt!("TOC at byte {pos}: attribute {aid} is not an unsigned integer")
            })
        };
        let secs = |v: Value| uint(v);
        let nanos = |v: Value| -> Result<u32> {
            let n = uint(v)?;
            u32::try_from(n)
                .ok()
                .filter(|&n| n < 1_000_000_000)
                .ok_or_else(|| corrupt!("TOC at byte {pos}: nanoseconds {n} out of range"))
        };
        match aid {
            id::FILE_TYPE => {
                let t = uint(v)?;
                self.records[e as usize].kind = EntryKind::from_raw(t)
                    .ok_or_else(|| corrupt!("TOC at byte {pos}: file type {t} out of range"))?;
            }
            id::FILE_PERMISSIONS => {
                self.records[e as usize].permissions = Some((uint(v)? & 0o7777) as u16);
            }
            id::FILE_USER => {
                let s = self.push_str(v.as_str().unwrap_or_default());
                self.records[e as usize].user = s;
            }
            id::FILE_GROUP => {
                let s = self.push_str(v.as_str().unwrap_or_default());
                self.records[e as usize].group = s;
            }
            id::FILE_ATIME => self.records[e as usize].atime.secs = secs(v)?,
            id::FILE_MTIME => self.records[e as usize].mtime.secs = secs(v)?,
            id::FILE_CRTIME => self.records[e as usize].crtime.secs = secs(v)?,
            id::FILE_ATIME_NANOS => self.records[e as usize].atime.nanos = nanos(v)?,
            id::FILE_MTIME_NANOS => self.records[e as usize].mtime.nanos = nanos(v)?,
            id::FILE_CRTIME_NANOS => self.records[e as usize].crtime.nanos = nanos(v)?,
            id::DATA => {
                let d = self.data_ref(v)?;
                self.records[e as usize].data = d;
            }
            id::SYMLINK_PATH => {
                let s = self.push_str(v.as_str().unwrap_or_default());
                self.records[e as usize].symlink = s;
            }
            id::FILE_ATTRIBUTE => {
                let name = v.as_str().unwrap_or_default();
                if name.is_empty() {
                    return Err(corrupt!(
                        "TOC at byte {pos}: file attribute with an empty name"
                    ));
                }
                let name = self.push_str(name);
                let mut attr = AttrRecord {
                    name,
                    type_code: 0,
                    data: DataRef::None,
                };
                if has_children {
                    while let Some(c) = p.next_attr()? {
                        match c.id {
                            id::FILE_ATTRIBUTE_TYPE => {
                                let t = uint(c.value)?;
                                attr.type_code = u32::try_from(t).map_err(|_| {
                                    corrupt!("TOC at byte {pos}: attribute type {t:#x} does not fit 32 bits")
                                })?;
                            }
                            id::DATA => attr.data = self.data_ref(c.value)?,
                            other if p.allows_unknown() || other > id::PACKAGE_PRE_UNINSTALL_SCRIPT => {}
                            other => {
                                return Err(corrupt!(
                                    "TOC at byte {}: unexpected attribute id {other} in a file attribute",
                                    p.position()
                                ))
                            }
                        }
                        if c.has_children {
                            p.skip_children()?;
                        }
                    }
                }
                let rec = &mut self.records[e as usize];
                if rec.attrs_len == 0 {
                    rec.attrs_start = self.attrs.len() as u32;
                } else if rec.attrs_start as usize + rec.attrs_len as usize != self.attrs.len() {
                    // Attributes of one entry are contiguous because an
                    // entry's attributes precede its children's.
                    return Err(corrupt!(
                        "TOC at byte {pos}: file attributes interleaved with child entries"
                    ));
                }
                rec.attrs_len += 1;
                self.attrs.push(attr);
                return Ok(());
            }
            other if p.allows_unknown() || other > id::PACKAGE_PRE_UNINSTALL_SCRIPT => {}
            other => {
                return Err(corrupt!(
                    "TOC at byte {pos}: unexpected attribute id {other} in an entry"
                ))
            }
        }
        if has_children {
            p.skip_children()?;
        }
        Ok(())
    }

    /// Structural checks that need the whole tree: only directories have
    /// children, symlinks carry no data, no duplicate names in a directory.
    fn validate(&self) -> Result<()> {
        let mut names: Vec<(u32, &[u8])> = Vec::with_capacity(self.records.len());
        for (i, r) in self.records.iter().enumerate().skip(1) {
            if r.first_child != NONE && r.kind != EntryKind::Directory {
                return Err(corrupt!(
                    "TOC: {:?} is not a directory but has children",
                    self.entry(i as u32).path()
                ));
            }
            if r.kind != EntryKind::File && r.data != DataRef::None {
                return Err(corrupt!(
                    "TOC: {:?} is not a regular file but has data",
                    self.entry(i as u32).path()
                ));
            }
            names.push((r.parent, self.bytes(r.name)));
        }
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt!(
                "TOC: duplicate entry {:?} in directory {:?}",
                String::from_utf8_lossy(w[0].1),
                self.entry(w[0].0).path()
            ));
        }
        Ok(())
    }

    fn bytes(&self, s: StrRef) -> &[u8] {
        &self.pool[s.start as usize..(s.start + s.len) as usize]
    }

    fn str(&self, s: StrRef) -> Option<&str> {
        if s.len == u32::MAX {
            return None;
        }
        // Only validated UTF-8 is ever pushed as a string.
        Some(std::str::from_utf8(self.bytes(s)).unwrap_or_default())
    }

    fn inline(&self, d: DataRef) -> Option<&[u8]> {
        match d {
            DataRef::Inline { start, len } => {
                Some(&self.pool[start as usize..start as usize + len as usize])
            }
            _ => None,
        }
    }

    /// Number of entries, the root included.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.len() <= 1
    }

    pub fn root(&self) -> Entry<'_> {
        self.entry(ROOT)
    }

    /// Panics if `id` is out of range; ids come from this TOC.
    pub fn entry(&self, id: EntryId) -> Entry<'_> {
        Entry {
            toc: self,
            id,
            rec: &self.records[id as usize],
        }
    }

    /// Finds `name` among the children of `dir` (linear in the directory size).
    pub fn lookup(&self, dir: EntryId, name: &str) -> Option<Entry<'_>> {
        self.entry(dir).children().find(|c| c.name() == name)
    }

    /// Finds a `/`-separated path relative to the package root.
    pub fn lookup_path(&self, path: &str) -> Option<Entry<'_>> {
        let mut cur = self.root();
        for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            cur = self.lookup(cur.id, comp)?;
        }
        Some(cur)
    }

    /// All entries but the root in pre-order (the TOC's own order), with depth (0 = top level).
    pub fn walk(&self) -> Walk<'_> {
        Walk {
            toc: self,
            stack: vec![(self.records[0].first_child, 0)],
        }
    }

    /// Approximate heap memory used by this index, for reporting.
    pub fn memory_usage(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.attrs.capacity() * std::mem::size_of::<AttrRecord>()
            + self.pool.capacity()
    }
}

impl Record {
    fn new(name: StrRef, parent: u32, kind: EntryKind) -> Self {
        Record {
            name,
            parent,
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            kind,
            permissions: None,
            atime: Timestamp::default(),
            mtime: Timestamp::default(),
            crtime: Timestamp::default(),
            data: DataRef::None,
            symlink: NO_STR,
            user: NO_STR,
            group: NO_STR,
            attrs_start: 0,
            attrs_len: 0,
        }
    }
}

/// Pre-order iterator over a TOC.
pub struct Walk<'a> {
    toc: &'a Toc,
    stack: Vec<(u32, usize)>,
}

impl<'a> Iterator for Walk<'a> {
    type Item = (usize, Entry<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (id, depth) = self.stack.pop()?;
            if id == NONE {
                continue;
            }
            let r = &self.toc.records[id as usize];
            self.stack.push((r.next_sibling, depth));
            self.stack.push((r.first_child, depth + 1));
            return Some((depth, self.toc.entry(id)));
        }
    }
}

impl<'a> Entry<'a> {
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// The name; empty for the root.
    pub fn name(&self) -> &'a str {
        self.toc.str(self.rec.name).unwrap_or("")
    }

    pub fn kind(&self) -> EntryKind {
        self.rec.kind
    }

    pub fn is_dir(&self) -> bool {
        self.rec.kind == EntryKind::Directory
    }

    /// Permission bits (`& 0o7777`), the kind's default when not stored.
    pub fn permissions(&self) -> u16 {
        self.rec
            .permissions
            .unwrap_or_else(|| self.rec.kind.default_permissions())
    }

    /// Whether the permissions were stored explicitly.
    pub fn has_explicit_permissions(&self) -> bool {
        self.rec.permissions.is_some()
    }

    /// Full `st_mode`: type bits plus permissions.
    pub fn mode(&self) -> u32 {
        self.rec.kind.type_bits() | self.permissions() as u32
    }

    pub fn atime(&self) -> Timestamp {
        self.rec.atime
    }

    pub fn mtime(&self) -> Timestamp {
        self.rec.mtime
    }

    pub fn crtime(&self) -> Timestamp {
        self.rec.crtime
    }

    /// Owner and group names, when the package stores them (Haiku never does).
    pub fn user(&self) -> Option<&'a str> {
        self.toc.str(self.rec.user)
    }

    pub fn group(&self) -> Option<&'a str> {
        self.toc.str(self.rec.group)
    }

    pub fn data(&self) -> DataRef {
        self.rec.data
    }

    /// File size in bytes (0 for directories and symlinks).
    pub fn size(&self) -> u64 {
        self.rec.data.size()
    }

    /// Data kept inline in the TOC, if so.
    pub fn inline_data(&self) -> Option<&'a [u8]> {
        self.toc.inline(self.rec.data)
    }

    /// The symlink target (empty if none was stored).
    pub fn symlink_target(&self) -> Option<&'a str> {
        if self.rec.kind != EntryKind::Symlink {
            return None;
        }
        Some(self.toc.str(self.rec.symlink).unwrap_or(""))
    }

    pub fn parent(&self) -> Option<Entry<'a>> {
        (self.rec.parent != NONE).then(|| self.toc.entry(self.rec.parent))
    }

    pub fn children(&self) -> Children<'a> {
        Children {
            toc: self.toc,
            next: self.rec.first_child,
        }
    }

    pub fn attributes(&self) -> impl ExactSizeIterator<Item = FileAttribute<'a>> + 'a {
        let toc = self.toc;
        let start = self.rec.attrs_start as usize;
        toc.attrs[start..start + self.rec.attrs_len as usize]
            .iter()
            .map(move |a| FileAttribute {
                name: toc.str(a.name).unwrap_or(""),
                type_code: a.type_code,
                data: a.data,
                toc,
            })
    }

    /// Path relative to the package root, `/`-separated.
    pub fn path(&self) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(*self);
        while let Some(e) = cur {
            if e.id == ROOT {
                break;
            }
            parts.push(e.name());
            cur = e.parent();
        }
        parts.reverse();
        parts.join("/")
    }
}

impl std::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("path", &self.path())
            .field("kind", &self.kind())
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("size", &self.size())
            .finish()
    }
}

/// Iterator over a directory's children, in TOC order.
pub struct Children<'a> {
    toc: &'a Toc,
    next: u32,
}

impl<'a> Iterator for Children<'a> {
    type Item = Entry<'a>;
    fn next(&mut self) -> Option<Entry<'a>> {
        if self.next == NONE {
            return None;
        }
        let e = self.toc.entry(self.next);
        self.next = e.rec.next_sibling;
        Some(e)
    }
}

/// One path component: non-empty, not `.`/`..`, no `/` or NUL.
pub fn check_entry_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty entry name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("invalid entry name {name:?}"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(format!("entry name {name:?} contains '/' or NUL"));
    }
    if name.len() > 255 {
        return Err(format!(
            "entry name of {} bytes is longer than 255",
            name.len()
        ));
    }
    Ok(())
}
