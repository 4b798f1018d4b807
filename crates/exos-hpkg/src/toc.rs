//! The table of contents: the package's file tree, parsed once into a
//! compact, index-based arena (spec §1.6).
//!
//! The decompressed TOC section is kept as it is, and every name, symlink
//! target, owner and inline datum is a byte range *into* it: a string the
//! section's table holds once and a thousand entries reference costs its
//! bytes once, never a thousand times. Entries are fixed-size records
//! linked by `u32` indices (parent, first child, next sibling); what few
//! entries carry beyond the common fields (times other than the
//! modification time, a symlink target, owner, file attributes) sits in a
//! side table. Every allocation is charged to the open's
//! [`Budget`](crate::budget::Budget). File contents are described by
//! [`DataRef`] and read through the heap on demand.

use crate::attr::{id, parse_string_table, string_table_cost, AttrParser, Value, MAX_DEPTH};
use crate::budget::Budget;
use crate::error::{corrupt, Result};

/// Index of an entry in a [`Toc`]; the package root is [`ROOT`].
pub type EntryId = u32;
/// The package root's id.
pub const ROOT: EntryId = 0;
const NONE: u32 = u32::MAX;

/// Upper bound on entries whatever the budget allows (a whole Haiku system
/// package has ~20,000).
pub const MAX_ENTRIES: usize = 4_000_000;

/// Longest symlink target: what the kernel accepts (`PATH_MAX` - 1).
pub const MAX_SYMLINK_TARGET: usize = 4095;

/// What a TOC entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
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
    /// No data.
    None,
    /// Up to 8 bytes kept in the TOC; `start` is their offset in the TOC
    /// section of the package the reference came from.
    Inline {
        /// Offset in the TOC section.
        start: u32,
        /// Length.
        len: u8,
    },
    /// A range of the uncompressed heap.
    Heap {
        /// Where it starts in the uncompressed heap.
        offset: u64,
        /// Its length.
        size: u64,
    },
}

impl DataRef {
    /// Bytes of data.
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
    /// Seconds since the epoch.
    pub secs: u64,
    /// Nanoseconds.
    pub nanos: u32,
}

/// A byte range of the TOC section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// "No string stored" (distinct from an empty one).
const NO_SPAN: Span = Span {
    start: 0,
    len: u32::MAX,
};

/// `Record::permissions` when none is stored.
const NO_PERMISSIONS: u16 = u16::MAX;

/// The fields every entry has. 56 bytes.
#[derive(Debug, Clone)]
struct Record {
    data: DataRef,
    mtime_secs: u64,
    name_start: u32,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
    mtime_nanos: u32,
    /// Index into `Toc::extras`, or `NONE`.
    extra: u32,
    permissions: u16,
    name_len: u8,
    kind: EntryKind,
}

/// What only some entries carry.
#[derive(Debug, Clone)]
struct Extra {
    atime: Timestamp,
    crtime: Timestamp,
    symlink: Span,
    user: Span,
    group: Span,
    attrs_start: u32,
    attrs_len: u32,
}

#[derive(Debug, Clone)]
struct AttrRecord {
    data: DataRef,
    name: Span,
    type_code: u32,
}

/// The parsed table of contents.
#[derive(Debug, Clone)]
pub struct Toc {
    section: Box<[u8]>,
    records: Vec<Record>,
    extras: Vec<Extra>,
    attrs: Vec<AttrRecord>,
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
    /// The attribute's name.
    pub name: &'a str,
    /// Haiku type code, e.g. `'MIMS'` = 0x4d494d53.
    pub type_code: u32,
    /// Where its data is.
    pub data: DataRef,
    toc: &'a Toc,
}

impl<'a> FileAttribute<'a> {
    /// The attribute's bytes when stored inline.
    pub fn inline_data(&self) -> Option<&'a [u8]> {
        self.toc.inline(self.data)
    }
}

/// An entry whose child list is being parsed.
struct Open {
    id: EntryId,
    last_child: u32,
    atime: Timestamp,
    crtime: Timestamp,
}

impl Toc {
    /// Parses a TOC section (string table + attribute list), keeping the
    /// section as the store of every string. Allocations are charged to
    /// `budget` (the section itself must already be).
    pub fn parse(
        section: Vec<u8>,
        strings_length: u64,
        strings_count: u64,
        minor_version: u16,
        heap_size: u64,
        budget: &Budget,
    ) -> Result<Toc> {
        if u32::try_from(section.len()).is_err() {
            return Err(corrupt!(
                "TOC section of {} bytes is too large",
                section.len()
            ));
        }
        let strings_len = usize::try_from(strings_length)
            .ok()
            .filter(|&l| l <= section.len())
            .ok_or_else(|| corrupt!("TOC strings length {strings_length} exceeds the section"))?;
        let mut toc = Toc {
            section: Box::default(),
            records: Vec::new(),
            extras: Vec::new(),
            attrs: Vec::new(),
        };
        {
            let strings = parse_string_table(
                "TOC strings",
                &section[..strings_len],
                strings_count,
                budget,
            )?;
            let mut p = AttrParser::new(
                "TOC",
                &section[strings_len..],
                &strings,
                minor_version,
                heap_size,
                budget,
            );
            let base = section.as_ptr() as usize;
            let span = |s: &[u8]| -> Span {
                // Every string the parser yields borrows from `section`.
                Span {
                    start: (s.as_ptr() as usize - base) as u32,
                    len: s.len() as u32,
                }
            };
            budget.reserve_one(&mut toc.records, "TOC entries")?;
            toc.records
                .push(Record::new(0, 0, NONE, EntryKind::Directory));
            let mut stack: Vec<Open> = vec![Open {
                id: ROOT,
                last_child: NONE,
                atime: Timestamp::default(),
                crtime: Timestamp::default(),
            }];
            while let Some(top) = stack.len().checked_sub(1) {
                let current = stack[top].id;
                let Some(a) = p.next_attr()? else {
                    let done = stack.pop().expect("stack is not empty");
                    toc.close(done, budget)?;
                    continue;
                };
                if a.id == id::DIRECTORY_ENTRY {
                    let name = a.value.as_string_bytes().unwrap_or_default();
                    check_entry_name(name)
                        .map_err(|e| corrupt!("TOC at byte {}: {e}", p.position()))?;
                    toc.add_entry(&mut stack, span(name), a.has_children, budget)?;
                    continue;
                }
                if current == ROOT {
                    // Only dir:entry means something at the top level; ignore the rest.
                    if a.has_children {
                        p.skip_children()?;
                    }
                    continue;
                }
                toc.apply_entry_attr(
                    &mut p,
                    &mut stack[top],
                    a.id,
                    a.value,
                    a.has_children,
                    &span,
                    budget,
                )?;
            }
            p.expect_end()?;
            budget.release(string_table_cost(strings_count));
            budget.release((stack.capacity() * std::mem::size_of::<Open>()) as u64);
        }
        toc.section = section.into_boxed_slice();
        toc.validate(budget)?;
        // Growth left spare capacity; a mount holds many TOCs for long.
        let before = toc.memory_usage();
        toc.records.shrink_to_fit();
        toc.extras.shrink_to_fit();
        toc.attrs.shrink_to_fit();
        budget.release((before - toc.memory_usage()) as u64);
        Ok(toc)
    }

    /// Appends a `dir:entry` as the last child of the innermost open
    /// directory; an entry with children becomes the innermost open one.
    fn add_entry(
        &mut self,
        stack: &mut Vec<Open>,
        name: Span,
        has_children: bool,
        budget: &Budget,
    ) -> Result<()> {
        if self.records.len() >= MAX_ENTRIES {
            return Err(corrupt!("TOC has more than {MAX_ENTRIES} entries"));
        }
        let parent = stack.last_mut().expect("an open directory");
        let new = self.records.len() as u32;
        budget.reserve_one(&mut self.records, "TOC entries")?;
        self.records.push(Record::new(
            name.start,
            name.len as u8,
            parent.id,
            EntryKind::File,
        ));
        if parent.last_child == NONE {
            self.records[parent.id as usize].first_child = new;
        } else {
            self.records[parent.last_child as usize].next_sibling = new;
        }
        parent.last_child = new;
        if has_children {
            if stack.len() > MAX_DEPTH {
                return Err(corrupt!("TOC directories nested deeper than {MAX_DEPTH}"));
            }
            budget.reserve_one(stack, "TOC nesting")?;
            stack.push(Open {
                id: new,
                last_child: NONE,
                atime: Timestamp::default(),
                crtime: Timestamp::default(),
            });
        }
        Ok(())
    }

    /// Finishes an entry at the end of its child list: times that differ
    /// from the modification time go to its side record.
    fn close(&mut self, done: Open, budget: &Budget) -> Result<()> {
        let rec = &self.records[done.id as usize];
        let mtime = Timestamp {
            secs: rec.mtime_secs,
            nanos: rec.mtime_nanos,
        };
        let differs = done.atime != mtime || done.crtime != mtime;
        if done.id != ROOT && (differs || rec.extra != NONE) {
            let x = self.extra_mut(done.id, budget)?;
            x.atime = done.atime;
            x.crtime = done.crtime;
        }
        Ok(())
    }

    /// The side record of entry `e`, created on first use (its times start
    /// equal to the entry's modification time, as for entries without one).
    fn extra_mut(&mut self, e: EntryId, budget: &Budget) -> Result<&mut Extra> {
        let mut i = self.records[e as usize].extra;
        if i == NONE {
            budget.reserve_one(&mut self.extras, "TOC entry details")?;
            i = u32::try_from(self.extras.len())
                .map_err(|_| corrupt!("TOC has too many entry details"))?;
            let r = &self.records[e as usize];
            let mtime = Timestamp {
                secs: r.mtime_secs,
                nanos: r.mtime_nanos,
            };
            self.extras.push(Extra {
                atime: mtime,
                crtime: mtime,
                symlink: NO_SPAN,
                user: NO_SPAN,
                group: NO_SPAN,
                attrs_start: 0,
                attrs_len: 0,
            });
            self.records[e as usize].extra = i;
        }
        Ok(&mut self.extras[i as usize])
    }

    fn data_ref(v: Value, span: &dyn Fn(&[u8]) -> Span) -> Result<DataRef> {
        Ok(match v {
            Value::Inline(b) => DataRef::Inline {
                start: span(b).start,
                len: b.len() as u8,
            },
            Value::Heap { offset, size } => DataRef::Heap { offset, size },
            _ => return Err(corrupt!("data attribute without raw data")),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_entry_attr(
        &mut self,
        p: &mut AttrParser,
        open: &mut Open,
        aid: u8,
        v: Value,
        has_children: bool,
        span: &dyn Fn(&[u8]) -> Span,
        budget: &Budget,
    ) -> Result<()> {
        let e = open.id;
        let pos = p.position();
        let uint = |v: Value| {
            v.as_uint().ok_or_else(|| {
                corrupt!("TOC at byte {pos}: attribute {aid} is not an unsigned integer")
            })
        };
        let nanos = |v: Value| -> Result<u32> {
            let n = uint(v)?;
            u32::try_from(n)
                .ok()
                .filter(|&n| n < 1_000_000_000)
                .ok_or_else(|| corrupt!("TOC at byte {pos}: nanoseconds {n} out of range"))
        };
        let string = |v: Value| -> Result<Span> {
            match v {
                Value::NonUtf8(_) => Err(corrupt!(
                    "TOC at byte {pos}: attribute {aid} is not valid UTF-8"
                )),
                v => Ok(span(v.as_str().unwrap_or_default().as_bytes())),
            }
        };
        match aid {
            id::FILE_TYPE => {
                let t = uint(v)?;
                self.records[e as usize].kind = EntryKind::from_raw(t)
                    .ok_or_else(|| corrupt!("TOC at byte {pos}: file type {t} out of range"))?;
            }
            id::FILE_PERMISSIONS => {
                self.records[e as usize].permissions = (uint(v)? & 0o7777) as u16;
            }
            id::FILE_USER => self.extra_mut(e, budget)?.user = string(v)?,
            id::FILE_GROUP => self.extra_mut(e, budget)?.group = string(v)?,
            id::FILE_ATIME => open.atime.secs = uint(v)?,
            id::FILE_MTIME => self.records[e as usize].mtime_secs = uint(v)?,
            id::FILE_CRTIME => open.crtime.secs = uint(v)?,
            id::FILE_ATIME_NANOS => open.atime.nanos = nanos(v)?,
            id::FILE_MTIME_NANOS => self.records[e as usize].mtime_nanos = nanos(v)?,
            id::FILE_CRTIME_NANOS => open.crtime.nanos = nanos(v)?,
            id::DATA => self.records[e as usize].data = Self::data_ref(v, span)?,
            id::SYMLINK_PATH => {
                // Bytes, like a name: a link may point at a non-UTF-8 name.
                let target = v.as_string_bytes().unwrap_or_default();
                if target.len() > MAX_SYMLINK_TARGET {
                    return Err(corrupt!(
                        "TOC at byte {pos}: symlink target of {} bytes is longer than {MAX_SYMLINK_TARGET}",
                        target.len()
                    ));
                }
                self.extra_mut(e, budget)?.symlink = span(target);
            }
            id::FILE_ATTRIBUTE => {
                // Haiku's attribute names are ASCII ("BEOS:TYPE"); they are
                // handed out as text (xattr names, listings).
                let name = v.as_str().ok_or_else(|| {
                    corrupt!("TOC at byte {pos}: a file attribute's name is not UTF-8 text")
                })?;
                if name.is_empty() {
                    return Err(corrupt!(
                        "TOC at byte {pos}: file attribute with an empty name"
                    ));
                }
                let mut attr = AttrRecord {
                    name: span(name.as_bytes()),
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
                            id::DATA => attr.data = Self::data_ref(c.value, span)?,
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
                let count = self.attrs.len();
                let index =
                    u32::try_from(count).map_err(|_| corrupt!("TOC has too many attributes"))?;
                let x = self.extra_mut(e, budget)?;
                if x.attrs_len == 0 {
                    x.attrs_start = index;
                } else if x.attrs_start as usize + x.attrs_len as usize != count {
                    // Attributes of one entry are contiguous because an
                    // entry's attributes precede its children's.
                    return Err(corrupt!(
                        "TOC at byte {pos}: file attributes interleaved with child entries"
                    ));
                }
                x.attrs_len += 1;
                budget.reserve_one(&mut self.attrs, "TOC file attributes")?;
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
    fn validate(&self, budget: &Budget) -> Result<()> {
        let cost = (self.records.len() * std::mem::size_of::<(u32, &[u8])>()) as u64;
        budget.charge(cost, "TOC name check")?;
        let result = self.check_structure();
        budget.release(cost);
        result
    }

    fn check_structure(&self) -> Result<()> {
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
            names.push((r.parent, self.name_bytes(r)));
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

    fn bytes(&self, start: u32, len: usize) -> &[u8] {
        self.section
            .get(start as usize..start as usize + len)
            .unwrap_or_default()
    }

    fn name_bytes(&self, r: &Record) -> &[u8] {
        self.bytes(r.name_start, r.name_len as usize)
    }

    fn str(&self, s: Span) -> Option<&str> {
        if s.len == u32::MAX {
            return None;
        }
        // Only validated UTF-8 is referenced as a string (names and symlink
        // targets are bytes, read with `bytes`).
        std::str::from_utf8(self.bytes(s.start, s.len as usize)).ok()
    }

    /// The bytes of an inline data reference of this TOC.
    pub(crate) fn inline(&self, d: DataRef) -> Option<&[u8]> {
        match d {
            DataRef::Inline { start, len } => self
                .section
                .get(start as usize..start as usize + len as usize),
            _ => None,
        }
    }

    fn extra(&self, r: &Record) -> Option<&Extra> {
        self.extras.get(r.extra as usize)
    }

    /// Number of entries, the root included.
    /// Whether any entry carries file attributes.
    pub fn has_attributes(&self) -> bool {
        !self.attrs.is_empty()
    }

    /// Entries in the TOC (the root included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.records.len() <= 1
    }

    /// The package root.
    pub fn root(&self) -> Entry<'_> {
        self.entry(ROOT)
    }

    /// The entry with this id. Ids come from this TOC; an id from
    /// elsewhere that is out of range yields the root.
    pub fn entry(&self, id: EntryId) -> Entry<'_> {
        match self.records.get(id as usize) {
            Some(rec) => Entry { toc: self, id, rec },
            None => Entry {
                toc: self,
                id: ROOT,
                rec: &self.records[0],
            },
        }
    }

    /// Finds `name` among the children of `dir` (linear in the directory size).
    pub fn lookup(&self, dir: EntryId, name: impl AsRef<[u8]>) -> Option<Entry<'_>> {
        let name = name.as_ref();
        self.entry(dir).children().find(|c| c.name_bytes() == name)
    }

    /// Finds a `/`-separated path relative to the package root.
    pub fn lookup_path(&self, path: impl AsRef<[u8]>) -> Option<Entry<'_>> {
        let mut cur = self.root();
        for comp in path
            .as_ref()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
        {
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

    /// Heap memory held by this index: the section and the records.
    pub fn memory_usage(&self) -> usize {
        self.section.len()
            + self.records.capacity() * std::mem::size_of::<Record>()
            + self.extras.capacity() * std::mem::size_of::<Extra>()
            + self.attrs.capacity() * std::mem::size_of::<AttrRecord>()
    }
}

impl Record {
    fn new(name_start: u32, name_len: u8, parent: u32, kind: EntryKind) -> Self {
        Record {
            data: DataRef::None,
            mtime_secs: 0,
            name_start,
            parent,
            first_child: NONE,
            next_sibling: NONE,
            mtime_nanos: 0,
            extra: NONE,
            permissions: NO_PERMISSIONS,
            name_len,
            kind,
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
            let Some(r) = self.toc.records.get(id as usize) else {
                continue;
            };
            self.stack.push((r.next_sibling, depth));
            self.stack.push((r.first_child, depth + 1));
            return Some((depth, self.toc.entry(id)));
        }
    }
}

impl<'a> Entry<'a> {
    /// Its id.
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// The name as text, for showing it (bytes that are not UTF-8 become
    /// U+FFFD); empty for the root. What the name *is* is
    /// [`Entry::name_bytes`].
    pub fn name(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.toc.name_bytes(self.rec))
    }

    /// The name as stored: any bytes but `/` and NUL (Haiku's writer keeps
    /// a file system's names as they are, UTF-8 or not); empty for the root.
    pub fn name_bytes(&self) -> &'a [u8] {
        self.toc.name_bytes(self.rec)
    }

    /// The name as a file name of this system (its bytes).
    pub fn file_name(&self) -> &'a std::ffi::OsStr {
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(self.name_bytes())
    }

    /// File, directory or symlink.
    pub fn kind(&self) -> EntryKind {
        self.rec.kind
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.rec.kind == EntryKind::Directory
    }

    /// Permission bits (`& 0o7777`), the kind's default when not stored.
    pub fn permissions(&self) -> u16 {
        if self.rec.permissions == NO_PERMISSIONS {
            self.rec.kind.default_permissions()
        } else {
            self.rec.permissions
        }
    }

    /// Whether the permissions were stored explicitly.
    pub fn has_explicit_permissions(&self) -> bool {
        self.rec.permissions != NO_PERMISSIONS
    }

    /// Full `st_mode`: type bits plus permissions.
    pub fn mode(&self) -> u32 {
        self.rec.kind.type_bits() | self.permissions() as u32
    }

    /// Access time: as stored (0 when the package stores none).
    pub fn atime(&self) -> Timestamp {
        self.toc
            .extra(self.rec)
            .map_or_else(|| self.mtime(), |x| x.atime)
    }

    /// Modification time.
    pub fn mtime(&self) -> Timestamp {
        Timestamp {
            secs: self.rec.mtime_secs,
            nanos: self.rec.mtime_nanos,
        }
    }

    /// Creation time (the modification time when absent).
    pub fn crtime(&self) -> Timestamp {
        self.toc
            .extra(self.rec)
            .map_or_else(|| self.mtime(), |x| x.crtime)
    }

    /// Owner and group names, when the package stores them (Haiku never does).
    pub fn user(&self) -> Option<&'a str> {
        self.toc.extra(self.rec).and_then(|x| self.toc.str(x.user))
    }

    /// Owning group name, if set.
    pub fn group(&self) -> Option<&'a str> {
        self.toc.extra(self.rec).and_then(|x| self.toc.str(x.group))
    }

    /// Where its data is.
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

    /// The symlink target as text, for showing it (see [`Entry::name`]).
    pub fn symlink_target(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.symlink_target_bytes().map(String::from_utf8_lossy)
    }

    /// The symlink target as a path of this system (its bytes).
    pub fn symlink_target_path(&self) -> Option<&'a std::path::Path> {
        self.symlink_target_bytes().map(|t| {
            std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(t))
        })
    }

    /// The symlink target as stored (empty if none was stored).
    pub fn symlink_target_bytes(&self) -> Option<&'a [u8]> {
        if self.rec.kind != EntryKind::Symlink {
            return None;
        }
        Some(self.toc.extra(self.rec).map_or(&[][..], |x| {
            self.toc.bytes(x.symlink.start, x.symlink.len as usize)
        }))
    }

    /// Its parent (`None` for the root).
    pub fn parent(&self) -> Option<Entry<'a>> {
        (self.id != ROOT).then(|| self.toc.entry(self.rec.parent))
    }

    /// Its children, in stored order.
    pub fn children(&self) -> Children<'a> {
        Children {
            toc: self.toc,
            next: self.rec.first_child,
        }
    }

    /// Its file attributes.
    pub fn attributes(&self) -> impl ExactSizeIterator<Item = FileAttribute<'a>> + 'a {
        let toc = self.toc;
        let (start, len) = toc
            .extra(self.rec)
            .map_or((0, 0), |x| (x.attrs_start as usize, x.attrs_len as usize));
        toc.attrs
            .get(start..start + len)
            .unwrap_or_default()
            .iter()
            .map(move |a| FileAttribute {
                name: toc.str(a.name).unwrap_or(""),
                type_code: a.type_code,
                data: a.data,
                toc,
            })
    }

    /// Path relative to the package root, `/`-separated, as text for
    /// showing it (see [`Entry::name`]).
    pub fn path(&self) -> String {
        match String::from_utf8(self.path_bytes()) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Path relative to the package root, `/`-separated, as stored.
    pub fn path_bytes(&self) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut cur = *self;
        while cur.id != ROOT {
            parts.push(cur.name_bytes());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        parts.reverse();
        parts.join(&b'/')
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
        let rec = self.toc.records.get(self.next as usize)?;
        let e = Entry {
            toc: self.toc,
            id: self.next,
            rec,
        };
        self.next = rec.next_sibling;
        Some(e)
    }
}

/// A name as `ls -b` shows it: control characters and backslashes as C
/// escapes, so no name can move the cursor or forge a line of output.
/// Names without them are unchanged (and match Haiku's output).
pub fn escape(name: &str) -> std::borrow::Cow<'_, str> {
    escape_bytes(name.as_bytes())
}

/// [`escape`] for a name that may not be UTF-8: each byte that is not part
/// of a UTF-8 character is written `\ooo` too, as `ls -b` does.
pub fn escape_bytes(name: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(name) {
        if !text.chars().any(|c| c.is_control() || c == '\\') {
            return std::borrow::Cow::Borrowed(text);
        }
    }
    let mut s = String::with_capacity(name.len() + 8);
    for chunk in name.utf8_chunks() {
        escape_chars(&mut s, chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\{b:03o}"));
        }
    }
    std::borrow::Cow::Owned(s)
}

fn escape_chars(s: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            '\u{7}' => s.push_str("\\a"),
            '\u{8}' => s.push_str("\\b"),
            '\u{b}' => s.push_str("\\v"),
            '\u{c}' => s.push_str("\\f"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    s.push_str(&format!("\\{b:03o}"));
                }
            }
            c => s.push(c),
        }
    }
}

/// One path component: non-empty, not `.`/`..`, no `/` or NUL; any other
/// bytes, UTF-8 or not.
pub fn check_entry_name(name: impl AsRef<[u8]>) -> std::result::Result<(), String> {
    let name = name.as_ref();
    let shown = || String::from_utf8_lossy(name);
    if name.is_empty() {
        return Err("empty entry name".into());
    }
    if name == b"." || name == b".." {
        return Err(format!("invalid entry name {:?}", shown()));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!("entry name {:?} contains '/' or NUL", shown()));
    }
    if name.len() > 255 {
        return Err(format!(
            "entry name of {} bytes is longer than 255",
            name.len()
        ));
    }
    Ok(())
}
