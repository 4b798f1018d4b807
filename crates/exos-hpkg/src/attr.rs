//! The attribute stream shared by the TOC, the package attributes and the
//! HPKR packages section: a string table followed by a tree of tagged,
//! typed attributes (spec §1.4, §1.5).
//!
//! [`AttrParser`] decodes one attribute at a time from a borrowed slice,
//! zero-copy; the callers (TOC, package info, repository) give the tree its
//! meaning. [`AttrWriter`] is the inverse, with Haiku's encoding choices.

use crate::budget::Budget;
use crate::error::{corrupt, Result};
use crate::header::MINOR_VERSION;

/// Attribute IDs (spec §1.5).
pub mod id {
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_DIRECTORY_ENTRY`.
    pub const DIRECTORY_ENTRY: u8 = 0;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_TYPE`.
    pub const FILE_TYPE: u8 = 1;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_PERMISSIONS`.
    pub const FILE_PERMISSIONS: u8 = 2;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_USER`.
    pub const FILE_USER: u8 = 3;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_GROUP`.
    pub const FILE_GROUP: u8 = 4;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_ATIME`.
    pub const FILE_ATIME: u8 = 5;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_MTIME`.
    pub const FILE_MTIME: u8 = 6;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_CRTIME`.
    pub const FILE_CRTIME: u8 = 7;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_ATIME_NANOS`.
    pub const FILE_ATIME_NANOS: u8 = 8;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_MTIME_NANOS`.
    pub const FILE_MTIME_NANOS: u8 = 9;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_CRTIME_NANOS`.
    pub const FILE_CRTIME_NANOS: u8 = 10;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_ATTRIBUTE`.
    pub const FILE_ATTRIBUTE: u8 = 11;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_FILE_ATTRIBUTE_TYPE`.
    pub const FILE_ATTRIBUTE_TYPE: u8 = 12;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_DATA`.
    pub const DATA: u8 = 13;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_SYMLINK_PATH`.
    pub const SYMLINK_PATH: u8 = 14;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_NAME`.
    pub const PACKAGE_NAME: u8 = 15;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_SUMMARY`.
    pub const PACKAGE_SUMMARY: u8 = 16;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_DESCRIPTION`.
    pub const PACKAGE_DESCRIPTION: u8 = 17;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_VENDOR`.
    pub const PACKAGE_VENDOR: u8 = 18;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_PACKAGER`.
    pub const PACKAGE_PACKAGER: u8 = 19;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_FLAGS`.
    pub const PACKAGE_FLAGS: u8 = 20;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_ARCHITECTURE`.
    pub const PACKAGE_ARCHITECTURE: u8 = 21;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_VERSION_MAJOR`.
    pub const PACKAGE_VERSION_MAJOR: u8 = 22;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_VERSION_MINOR`.
    pub const PACKAGE_VERSION_MINOR: u8 = 23;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_VERSION_MICRO`.
    pub const PACKAGE_VERSION_MICRO: u8 = 24;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_VERSION_REVISION`.
    pub const PACKAGE_VERSION_REVISION: u8 = 25;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_COPYRIGHT`.
    pub const PACKAGE_COPYRIGHT: u8 = 26;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_LICENSE`.
    pub const PACKAGE_LICENSE: u8 = 27;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_PROVIDES`.
    pub const PACKAGE_PROVIDES: u8 = 28;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_REQUIRES`.
    pub const PACKAGE_REQUIRES: u8 = 29;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_SUPPLEMENTS`.
    pub const PACKAGE_SUPPLEMENTS: u8 = 30;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_CONFLICTS`.
    pub const PACKAGE_CONFLICTS: u8 = 31;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_FRESHENS`.
    pub const PACKAGE_FRESHENS: u8 = 32;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_REPLACES`.
    pub const PACKAGE_REPLACES: u8 = 33;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_RESOLVABLE_OPERATOR`.
    pub const PACKAGE_RESOLVABLE_OPERATOR: u8 = 34;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_CHECKSUM`.
    pub const PACKAGE_CHECKSUM: u8 = 35;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_VERSION_PRE_RELEASE`.
    pub const PACKAGE_VERSION_PRE_RELEASE: u8 = 36;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_PROVIDES_COMPATIBLE`.
    pub const PACKAGE_PROVIDES_COMPATIBLE: u8 = 37;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_URL`.
    pub const PACKAGE_URL: u8 = 38;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_SOURCE_URL`.
    pub const PACKAGE_SOURCE_URL: u8 = 39;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_INSTALL_PATH`.
    pub const PACKAGE_INSTALL_PATH: u8 = 40;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_BASE_PACKAGE`.
    pub const PACKAGE_BASE_PACKAGE: u8 = 41;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_GLOBAL_WRITABLE_FILE`.
    pub const PACKAGE_GLOBAL_WRITABLE_FILE: u8 = 42;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_USER_SETTINGS_FILE`.
    pub const PACKAGE_USER_SETTINGS_FILE: u8 = 43;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_WRITABLE_FILE_UPDATE_TYPE`.
    pub const PACKAGE_WRITABLE_FILE_UPDATE_TYPE: u8 = 44;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_SETTINGS_FILE_TEMPLATE`.
    pub const PACKAGE_SETTINGS_FILE_TEMPLATE: u8 = 45;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_USER`.
    pub const PACKAGE_USER: u8 = 46;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_USER_REAL_NAME`.
    pub const PACKAGE_USER_REAL_NAME: u8 = 47;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_USER_HOME`.
    pub const PACKAGE_USER_HOME: u8 = 48;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_USER_SHELL`.
    pub const PACKAGE_USER_SHELL: u8 = 49;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_USER_GROUP`.
    pub const PACKAGE_USER_GROUP: u8 = 50;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_GROUP`.
    pub const PACKAGE_GROUP: u8 = 51;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_POST_INSTALL_SCRIPT`.
    pub const PACKAGE_POST_INSTALL_SCRIPT: u8 = 52;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_IS_WRITABLE_DIRECTORY`.
    pub const PACKAGE_IS_WRITABLE_DIRECTORY: u8 = 53;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE`.
    pub const PACKAGE: u8 = 54;
    /// Haiku's `B_HPKG_ATTRIBUTE_ID_PACKAGE_PRE_UNINSTALL_SCRIPT`.
    pub const PACKAGE_PRE_UNINSTALL_SCRIPT: u8 = 55;
}

/// Value types of the attribute stream.
pub mod ty {
    /// A signed integer.
    pub const INT: u8 = 1;
    /// An unsigned integer.
    pub const UINT: u8 = 2;
    /// A string (inline or from the string table).
    pub const STRING: u8 = 3;
    /// Raw data (inline or in the heap).
    pub const RAW: u8 = 4;
}

/// Declared type of each known attribute ID, indexed by ID.
const KNOWN_TYPES: [u8; 56] = {
    use ty::*;
    [
        STRING, UINT, UINT, STRING, STRING, UINT, UINT, UINT, UINT, UINT, // 0-9
        UINT, STRING, UINT, RAW, STRING, STRING, STRING, STRING, STRING, STRING, // 10-19
        UINT, UINT, STRING, STRING, STRING, UINT, STRING, STRING, STRING, STRING, // 20-29
        STRING, STRING, STRING, STRING, UINT, STRING, STRING, STRING, STRING, STRING, // 30-39
        STRING, STRING, STRING, STRING, UINT, STRING, STRING, STRING, STRING, STRING, // 40-49
        STRING, STRING, STRING, UINT, STRING, STRING, // 50-55
    ]
};

/// Raw data larger than this goes to the heap instead of inline.
pub const MAX_INLINE_DATA: usize = 8;

/// A decoded attribute value, borrowing from the section bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A string.
    String(&'a str),
    /// A string that is not valid UTF-8, as its bytes: file names and
    /// symlink targets on systems that do not enforce an encoding (Haiku's
    /// writer stores whatever bytes a name has).
    NonUtf8(&'a [u8]),
    /// Raw data stored inline in the section (at most 8 bytes).
    Inline(&'a [u8]),
    /// Raw data stored in the heap.
    Heap {
        /// Where it starts in the uncompressed heap.
        offset: u64,
        /// Its length.
        size: u64,
    },
}

impl<'a> Value<'a> {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_uint(&self) -> Option<u64> {
        match *self {
            Value::UInt(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string, if it is one and valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a string value, valid UTF-8 or not.
    pub fn as_string_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::String(s) => Some(s.as_bytes()),
            Value::NonUtf8(b) => Some(b),
            _ => None,
        }
    }

    /// The string value for `bytes` (a C string without its NUL).
    fn string(bytes: &'a [u8]) -> Value<'a> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Value::String(s),
            Err(_) => Value::NonUtf8(bytes),
        }
    }
}

/// One attribute: its ID, value and whether a child list follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The attribute id (see [`id`]).
    pub id: u8,
    /// Its value.
    pub value: Value<'a>,
    /// Whether a list of child attributes follows.
    pub has_children: bool,
}

/// Reads an unsigned LEB128 integer of at most 64 bits.
pub fn read_uleb128(data: &[u8], pos: &mut usize) -> Result<u64> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *data
            .get(*pos)
            .ok_or_else(|| corrupt!("truncated variable-length integer"))?;
        *pos += 1;
        if shift == 63 && b > 1 || shift > 63 {
            return Err(corrupt!("variable-length integer overflows 64 bits"));
        }
        result |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(result);
        }
        shift += 7;
    }
}

/// Appends `v` as unsigned LEB128.
pub fn write_uleb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// What [`parse_string_table`] charges for a table of `count` strings.
pub fn string_table_cost(count: u64) -> u64 {
    count.saturating_mul(std::mem::size_of::<&[u8]>() as u64)
}

/// Parses a strings subsection: `count` NUL-terminated strings (bytes, UTF-8
/// or not: see [`Value::NonUtf8`]), then
/// one more NUL, filling exactly `data`. The strings borrow from `data`;
/// the table of them is charged to `budget`.
pub fn parse_string_table<'a>(
    what: &str,
    data: &'a [u8],
    count: u64,
    budget: &Budget,
) -> Result<Vec<&'a [u8]>> {
    // Each string needs at least its NUL, so count <= len bounds the allocation.
    if count > data.len() as u64 {
        return Err(corrupt!(
            "{what}: {count} strings cannot fit in {} bytes",
            data.len()
        ));
    }
    budget.charge(string_table_cost(count), "string table")?;
    let mut strings = Vec::with_capacity(count as usize);
    let mut pos = 0usize;
    loop {
        let nul = data[pos..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| corrupt!("{what}: string table is not terminated"))?;
        if nul == 0 {
            pos += 1;
            break;
        }
        if strings.len() as u64 == count {
            return Err(corrupt!(
                "{what}: string table holds more than the declared {count} strings"
            ));
        }
        strings.push(&data[pos..pos + nul]);
        pos += nul + 1;
    }
    if (strings.len() as u64) != count {
        return Err(corrupt!(
            "{what}: string table holds {} strings, header declares {count}",
            strings.len()
        ));
    }
    if pos != data.len() {
        return Err(corrupt!(
            "{what}: {} stray bytes after the string table",
            data.len() - pos
        ));
    }
    Ok(strings)
}

/// Decodes an attribute list. The caller drives the nesting: after an
/// attribute with `has_children`, the following attributes up to the next
/// `None` are its children.
pub struct AttrParser<'a> {
    what: &'static str,
    data: &'a [u8],
    pos: usize,
    strings: &'a [&'a [u8]],
    /// Unknown IDs are allowed (and skipped by callers) only in files newer
    /// than what we know.
    allow_unknown: bool,
    heap_size: u64,
    /// What callers decode into owned values is charged here.
    budget: &'a Budget,
}

impl<'a> AttrParser<'a> {
    /// A parser of section `what` (`data`, with its string table `strings`), charging what it decodes to `budget`.
    pub fn new(
        what: &'static str,
        data: &'a [u8],
        strings: &'a [&'a [u8]],
        minor_version: u16,
        heap_size: u64,
        budget: &'a Budget,
    ) -> Self {
        AttrParser {
            what,
            data,
            pos: 0,
            strings,
            allow_unknown: minor_version > MINOR_VERSION,
            heap_size,
            budget,
        }
    }

    /// Charges memory a caller is about to allocate for decoded values.
    pub fn charge(&self, bytes: usize) -> Result<()> {
        self.budget.charge(bytes as u64, self.what)
    }

    /// Pushes onto a vector of decoded values, charging its growth.
    pub fn push<T>(&self, vec: &mut Vec<T>, item: T) -> Result<()> {
        self.budget.reserve_one(vec, self.what)?;
        vec.push(item);
        Ok(())
    }

    /// Whether unknown attribute IDs are tolerated (file minor version newer than ours).
    pub fn allows_unknown(&self) -> bool {
        self.allow_unknown
    }

    /// Bytes of the section read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Continues decoding at byte `pos` of the list (a position this
    /// parser, or one over the same bytes, reported).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.data.len());
    }

    /// True once every byte has been consumed.
    pub fn at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    /// Fails unless the whole section was consumed.
    pub fn expect_end(&self) -> Result<()> {
        if !self.at_end() {
            return Err(corrupt!(
                "{}: {} stray bytes after the attribute list",
                self.what,
                self.data.len() - self.pos
            ));
        }
        Ok(())
    }

    fn err(&self, msg: impl std::fmt::Display) -> crate::Error {
        corrupt!("{} at byte {}: {msg}", self.what, self.pos)
    }

    /// Returns the next attribute, or `None` at a list terminator.
    pub fn next_attr(&mut self) -> Result<Option<Attr<'a>>> {
        let tag = read_uleb128(self.data, &mut self.pos).map_err(|e| self.err(e))?;
        if tag == 0 {
            return Ok(None);
        }
        let t = tag - 1;
        if t >= 1 << 13 {
            return Err(self.err(format!("attribute tag {tag} out of range")));
        }
        let id = (t & 0x7f) as u8;
        let ty = ((t >> 7) & 7) as u8;
        let has_children = (t >> 10) & 1 == 1;
        let encoding = ((t >> 11) & 3) as u8;
        match KNOWN_TYPES.get(id as usize) {
            Some(&known) if known != ty => {
                return Err(self.err(format!(
                    "attribute id {id} has type {ty}, expected type {known}"
                )))
            }
            None if !self.allow_unknown => {
                return Err(self.err(format!("unknown attribute id {id}")));
            }
            _ => {}
        }
        let value = self.read_value(ty, encoding)?;
        Ok(Some(Attr {
            id,
            value,
            has_children,
        }))
    }

    fn read_value(&mut self, ty: u8, encoding: u8) -> Result<Value<'a>> {
        match ty {
            ty::INT | ty::UINT => {
                let n = 1usize << encoding;
                let bytes = self
                    .data
                    .get(self.pos..self.pos + n)
                    .ok_or_else(|| self.err("truncated integer"))?;
                let mut v: u64 = 0;
                for &b in bytes {
                    v = (v << 8) | b as u64;
                }
                self.pos += n;
                Ok(if ty == ty::INT {
                    // Sign-extend from the encoded width.
                    let shift = 64 - 8 * n as u32;
                    Value::Int(((v << shift) as i64) >> shift)
                } else {
                    Value::UInt(v)
                })
            }
            ty::STRING => match encoding {
                0 => {
                    let rest = &self.data[self.pos..];
                    let nul = rest
                        .iter()
                        .position(|&b| b == 0)
                        .ok_or_else(|| self.err("unterminated inline string"))?;
                    self.pos += nul + 1;
                    Ok(Value::string(&rest[..nul]))
                }
                1 => {
                    let idx = read_uleb128(self.data, &mut self.pos).map_err(|e| self.err(e))?;
                    let s = self.strings.get(idx as usize).ok_or_else(|| {
                        self.err(format!(
                            "string index {idx} out of range ({} strings)",
                            self.strings.len()
                        ))
                    })?;
                    Ok(Value::string(s))
                }
                e => Err(self.err(format!("invalid string encoding {e}"))),
            },
            ty::RAW => match encoding {
                0 => {
                    let size = read_uleb128(self.data, &mut self.pos).map_err(|e| self.err(e))?;
                    if size > MAX_INLINE_DATA as u64 {
                        return Err(self.err(format!("inline data of {size} bytes (max 8)")));
                    }
                    let bytes = self
                        .data
                        .get(self.pos..self.pos + size as usize)
                        .ok_or_else(|| self.err("truncated inline data"))?;
                    self.pos += size as usize;
                    Ok(Value::Inline(bytes))
                }
                1 => {
                    let size = read_uleb128(self.data, &mut self.pos).map_err(|e| self.err(e))?;
                    let offset = read_uleb128(self.data, &mut self.pos).map_err(|e| self.err(e))?;
                    if offset.checked_add(size).is_none_or(|e| e > self.heap_size) {
                        return Err(self.err(format!(
                            "data {offset}+{size} lies outside the {}-byte heap",
                            self.heap_size
                        )));
                    }
                    Ok(Value::Heap { offset, size })
                }
                e => Err(self.err(format!("invalid raw data encoding {e}"))),
            },
            t => Err(self.err(format!("invalid attribute type {t}"))),
        }
    }

    /// Skips the children of an attribute (and their children), used for
    /// unknown attributes of newer files. Depth is bounded.
    pub fn skip_children(&mut self) -> Result<()> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next_attr()? {
                None => depth -= 1,
                Some(a) if a.has_children => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(self.err("attributes nested too deeply"));
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Deepest attribute nesting we accept (directory depth in a TOC).
pub const MAX_DEPTH: usize = 1024;

/// A value to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WValue {
    /// An unsigned integer.
    UInt(u64),
    /// A string (put in the string table when used twice or more): its
    /// bytes, UTF-8 or not.
    String(Vec<u8>),
    /// Raw data kept in the section (at most [`MAX_INLINE_DATA`] bytes).
    Inline(Vec<u8>),
    /// Raw data in the heap.
    Heap {
        /// Where it starts in the uncompressed heap.
        offset: u64,
        /// Its length.
        size: u64,
    },
}

/// One attribute of a tree being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WAttr {
    /// The attribute id (see [`id`]).
    pub id: u8,
    /// Its value.
    pub value: WValue,
    /// Its child attributes.
    pub children: Vec<WAttr>,
}

impl WAttr {
    /// An attribute without children.
    pub fn new(id: u8, value: WValue) -> Self {
        WAttr {
            id,
            value,
            children: Vec::new(),
        }
    }

    /// A string attribute.
    pub fn string(id: u8, s: impl AsRef<[u8]>) -> Self {
        WAttr::new(id, WValue::String(s.as_ref().to_vec()))
    }

    /// An unsigned integer attribute.
    pub fn uint(id: u8, v: u64) -> Self {
        WAttr::new(id, WValue::UInt(v))
    }

    /// The attribute with these children.
    pub fn with_children(mut self, children: Vec<WAttr>) -> Self {
        self.children = children;
        self
    }
}

/// A serialised section: the bytes plus the string-table figures the header needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSection {
    /// The section: string table, then attributes.
    pub bytes: Vec<u8>,
    /// Bytes of the string table.
    pub strings_length: u64,
    /// Strings in the string table.
    pub strings_count: u64,
}

/// Serialises an attribute tree the way Haiku's writer does: strings used at
/// least twice (and non-empty) go to the table, most used first (ties by
/// first use, which makes output deterministic); integers take the smallest
/// encoding; the list ends with a 0 tag.
pub fn encode_section(attrs: &[WAttr]) -> EncodedSection {
    use std::collections::HashMap;
    // Count string uses in visit order; remember first use for tie-breaking.
    let mut uses: HashMap<&[u8], (u64, usize)> = HashMap::new();
    fn count<'a>(attrs: &'a [WAttr], uses: &mut HashMap<&'a [u8], (u64, usize)>) {
        for a in attrs {
            if let WValue::String(s) = &a.value {
                if !s.is_empty() {
                    let n = uses.len();
                    uses.entry(s.as_slice()).or_insert((0, n)).0 += 1;
                }
            }
            count(&a.children, uses);
        }
    }
    count(attrs, &mut uses);
    let mut table: Vec<(&[u8], u64, usize)> = uses
        .iter()
        .filter(|(_, &(n, _))| n >= 2)
        .map(|(&s, &(n, first))| (s, n, first))
        .collect();
    table.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    let index: HashMap<&[u8], u64> = table
        .iter()
        .enumerate()
        .map(|(i, &(s, _, _))| (s, i as u64))
        .collect();

    let mut out = Vec::new();
    for &(s, _, _) in &table {
        out.extend_from_slice(s);
        out.push(0);
    }
    out.push(0);
    let strings_length = out.len() as u64;

    fn emit(out: &mut Vec<u8>, attrs: &[WAttr], index: &HashMap<&[u8], u64>) {
        for a in attrs {
            let (ty, enc) = match &a.value {
                WValue::UInt(v) => (
                    ty::UINT,
                    match *v {
                        0..=0xff => 0,
                        0x100..=0xffff => 1,
                        0x1_0000..=0xffff_ffff => 2,
                        _ => 3,
                    },
                ),
                WValue::String(s) => (
                    ty::STRING,
                    if index.contains_key(s.as_slice()) {
                        1
                    } else {
                        0
                    },
                ),
                WValue::Inline(_) => (ty::RAW, 0),
                WValue::Heap { .. } => (ty::RAW, 1),
            };
            let has_children = !a.children.is_empty() as u64;
            let tag =
                ((enc as u64) << 11 | has_children << 10 | (ty as u64) << 7 | a.id as u64) + 1;
            write_uleb128(out, tag);
            match &a.value {
                WValue::UInt(v) => {
                    let n = 1usize << enc;
                    out.extend_from_slice(&v.to_be_bytes()[8 - n..]);
                }
                WValue::String(s) => match index.get(s.as_slice()) {
                    Some(&i) => write_uleb128(out, i),
                    None => {
                        out.extend_from_slice(s);
                        out.push(0);
                    }
                },
                WValue::Inline(d) => {
                    write_uleb128(out, d.len() as u64);
                    out.extend_from_slice(d);
                }
                WValue::Heap { offset, size } => {
                    write_uleb128(out, *size);
                    write_uleb128(out, *offset);
                }
            }
            if !a.children.is_empty() {
                emit(out, &a.children, index);
                out.push(0);
            }
        }
    }
    emit(&mut out, attrs, &index);
    out.push(0);
    EncodedSection {
        bytes: out,
        strings_length,
        strings_count: table.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_string_table_<'a>(what: &str, data: &'a [u8], count: u64) -> Result<Vec<&'a [u8]>> {
        parse_string_table(what, data, count, &Budget::unlimited())
    }

    #[test]
    fn leb128_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            write_uleb128(&mut b, v);
            let mut p = 0;
            assert_eq!(read_uleb128(&b, &mut p).unwrap(), v);
            assert_eq!(p, b.len());
        }
    }

    #[test]
    fn leb128_rejects_overflow_and_truncation() {
        let mut p = 0;
        assert!(read_uleb128(&[0xff; 11], &mut p).is_err());
        p = 0;
        assert!(read_uleb128(&[0x80, 0x80], &mut p).is_err());
    }

    #[test]
    fn string_table_rules() {
        assert_eq!(parse_string_table_("t", b"\0", 0).unwrap().len(), 0);
        assert_eq!(
            parse_string_table_("t", b"a\0bc\0\0", 2).unwrap(),
            vec![&b"a"[..], b"bc"]
        );
        // Strings are bytes: not UTF-8 is not an error (file names).
        assert_eq!(
            parse_string_table_("t", b"\xff\xfe\0\0", 1).unwrap(),
            vec![&b"\xff\xfe"[..]]
        );
        assert!(parse_string_table_("t", b"a\0bc\0\0", 1).is_err());
        assert!(parse_string_table_("t", b"a\0bc\0\0", 3).is_err());
        assert!(parse_string_table_("t", b"a\0\0x", 1).is_err());
        assert!(parse_string_table_("t", b"a\0", 1).is_err());
        assert!(parse_string_table_("t", b"", 0).is_err());
    }

    #[test]
    fn encoded_section_parses_back() {
        let attrs = vec![
            WAttr::string(id::PACKAGE_NAME, "x")
                .with_children(vec![WAttr::uint(id::PACKAGE_VERSION_REVISION, 70000)]),
            WAttr::string(id::PACKAGE_SUMMARY, "x"),
            WAttr::string(id::PACKAGE_VENDOR, ""),
        ];
        let enc = encode_section(&attrs);
        assert_eq!(enc.strings_count, 1);
        let strings =
            parse_string_table_("t", &enc.bytes[..enc.strings_length as usize], 1).unwrap();
        let budget = Budget::unlimited();
        let mut p = AttrParser::new(
            "t",
            &enc.bytes[enc.strings_length as usize..],
            &strings,
            1,
            0,
            &budget,
        );
        let a = p.next_attr().unwrap().unwrap();
        assert_eq!(
            (a.id, a.value, a.has_children),
            (id::PACKAGE_NAME, Value::String("x"), true)
        );
        assert_eq!(p.next_attr().unwrap().unwrap().value, Value::UInt(70000));
        assert!(p.next_attr().unwrap().is_none());
        assert_eq!(p.next_attr().unwrap().unwrap().value, Value::String("x"));
        assert_eq!(p.next_attr().unwrap().unwrap().value, Value::String(""));
        assert!(p.next_attr().unwrap().is_none());
        p.expect_end().unwrap();
    }

    #[test]
    fn strings_that_are_not_utf8_are_kept_as_bytes() {
        let name = &b"caf\xe9"[..];
        let attrs = vec![
            WAttr::string(id::DIRECTORY_ENTRY, name),
            WAttr::string(id::DIRECTORY_ENTRY, name),
            WAttr::string(id::DIRECTORY_ENTRY, b"\xff"),
        ];
        let enc = encode_section(&attrs);
        // Used twice: in the table; used once: inline.
        assert_eq!(enc.strings_count, 1);
        let strings =
            parse_string_table_("t", &enc.bytes[..enc.strings_length as usize], 1).unwrap();
        let budget = Budget::unlimited();
        let body = &enc.bytes[enc.strings_length as usize..];
        let mut p = AttrParser::new("t", body, &strings, 1, 0, &budget);
        for expected in [name, name, b"\xff"] {
            let v = p.next_attr().unwrap().unwrap().value;
            assert_eq!(v, Value::NonUtf8(expected));
            assert_eq!(v.as_str(), None);
            assert_eq!(v.as_string_bytes(), Some(expected));
        }
    }

    #[test]
    fn type_mismatch_and_unknown_ids_rejected() {
        // id 15 (string) encoded as uint.
        let tag = ((ty::UINT as u64) << 7 | 15) + 1;
        let mut b = Vec::new();
        write_uleb128(&mut b, tag);
        b.push(1);
        let budget = Budget::unlimited();
        let mut p = AttrParser::new("t", &b, &[], 1, 0, &budget);
        assert!(p.next_attr().is_err());
        // Unknown id 100 in a current-minor file is rejected, tolerated in a newer one.
        let mut b = Vec::new();
        write_uleb128(&mut b, ((ty::UINT as u64) << 7 | 100) + 1);
        b.push(1);
        assert!(AttrParser::new("t", &b, &[], 1, 0, &budget)
            .next_attr()
            .is_err());
        assert!(AttrParser::new("t", &b, &[], 2, 0, &budget)
            .next_attr()
            .is_ok());
    }
}
