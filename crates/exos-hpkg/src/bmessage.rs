//! A reader for flattened Haiku `BMessage`s (format `HMF1`, little-endian),
//! just enough for the HPKR repository-info section: named fields holding
//! strings or small integers.

use crate::budget::Budget;
use crate::error::{corrupt, Result};

const FORMAT: u32 = u32::from_le_bytes(*b"HMF1");
/// Fixed part of the header; the hash table (`hash_table_size` int32s) follows.
const HEADER_FIXED: usize = 48;
const FIELD_HEADER_SIZE: usize = 24;
const FIELD_FLAG_FIXED_SIZE: u16 = 0x0002;

/// One field: its name, type code and items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    pub name: &'a str,
    pub type_code: u32,
    pub items: Vec<&'a [u8]>,
}

impl<'a> Field<'a> {
    /// The items as strings (NUL terminators stripped).
    pub(crate) fn strings(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|i| {
                let i = i.strip_suffix(&[0]).unwrap_or(i);
                String::from_utf8_lossy(i).into_owned()
            })
            .collect()
    }
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}

/// Parses a flattened message into its fields; the field and item lists
/// are charged to `budget`.
pub(crate) fn parse<'a>(b: &'a [u8], budget: &Budget) -> Result<Vec<Field<'a>>> {
    if b.len() < HEADER_FIXED {
        return Err(corrupt!(
            "repository info: message of {} bytes is too short",
            b.len()
        ));
    }
    if le32(b, 0) != FORMAT {
        return Err(corrupt!(
            "repository info: not a flattened BMessage (format {:#x})",
            le32(b, 0)
        ));
    }
    // what, flags, specifier, area, reply port/target/team, and one more
    // int32 precede the body sizes (verified against real HPKR files).
    let data_size = le32(b, 36) as usize;
    let field_count = le32(b, 40) as usize;
    let hash_table_size = le32(b, 44) as usize;
    if hash_table_size > 4096 {
        return Err(corrupt!(
            "repository info: implausible hash table size {hash_table_size}"
        ));
    }
    let header_size = HEADER_FIXED + 4 * hash_table_size;
    let fields_end = field_count
        .checked_mul(FIELD_HEADER_SIZE)
        .and_then(|n| n.checked_add(header_size))
        .filter(|&n| n <= b.len())
        .ok_or_else(|| {
            corrupt!("repository info: {field_count} fields do not fit in the message")
        })?;
    let data = b
        .get(fields_end..fields_end.saturating_add(data_size))
        .ok_or_else(|| {
            corrupt!("repository info: data of {data_size} bytes runs past the message")
        })?;
    budget.charge(
        (field_count * std::mem::size_of::<Field>()) as u64,
        "repository info fields",
    )?;
    let mut fields = Vec::with_capacity(field_count);
    for i in 0..field_count {
        let h = &b[header_size + i * FIELD_HEADER_SIZE..];
        let flags = le16(h, 0);
        let name_len = le16(h, 2) as usize;
        let type_code = le32(h, 4);
        let count = le32(h, 8) as usize;
        let size = le32(h, 12) as usize;
        let offset = le32(h, 16) as usize;
        let bad = || corrupt!("repository info: field {i} lies outside the message data");
        let start = offset.checked_add(name_len).ok_or_else(bad)?;
        let name_bytes = data.get(offset..start).ok_or_else(bad)?;
        let name = std::str::from_utf8(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .map_err(|_| corrupt!("repository info: field {i} has a non-UTF-8 name"))?;
        let values = data
            .get(start..start.checked_add(size).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if count > values.len().max(1) {
            return Err(corrupt!(
                "repository info: field {name:?} claims {count} items in {size} bytes"
            ));
        }
        budget.charge(
            (count * std::mem::size_of::<&[u8]>()) as u64,
            "repository info items",
        )?;
        let mut items = Vec::with_capacity(count);
        if flags & FIELD_FLAG_FIXED_SIZE != 0 {
            if count == 0 || values.is_empty() || values.len() % count != 0 {
                return Err(corrupt!(
                    "repository info: field {name:?} has {count} fixed-size items in {} bytes",
                    values.len()
                ));
            }
            items.extend(values.chunks_exact(values.len() / count));
        } else {
            let mut pos = 0usize;
            for _ in 0..count {
                let len = values
                    .get(pos..pos + 4)
                    .map(|s| u32::from_le_bytes(s.try_into().unwrap()) as usize)
                    .ok_or_else(|| corrupt!("repository info: field {name:?} is truncated"))?;
                pos += 4;
                let item = values
                    .get(pos..pos.saturating_add(len))
                    .ok_or_else(|| corrupt!("repository info: field {name:?} is truncated"))?;
                items.push(item);
                pos += len;
            }
        }
        fields.push(Field {
            name,
            type_code,
            items,
        });
    }
    Ok(fields)
}

/// A field to flatten: variable-size items (strings, with their NUL) or
/// fixed-size ones (integers).
pub(crate) struct OutField<'a> {
    pub name: &'a str,
    pub type_code: u32,
    pub fixed_size: bool,
    pub items: Vec<Vec<u8>>,
}

/// `B_STRING_TYPE` ('CSTR') and `B_UINT8_TYPE` ('UBYT').
pub(crate) const STRING_TYPE: u32 = u32::from_be_bytes(*b"CSTR");
pub(crate) const UINT8_TYPE: u32 = u32::from_be_bytes(*b"UBYT");

/// Haiku's `BMessage::_HashName`.
fn hash_name(name: &str) -> u32 {
    let mut r: u32 = 0;
    for &c in name.as_bytes() {
        r = (r << 7) ^ (r >> 24);
        r ^= c as u32;
    }
    r ^ (r << 12)
}

/// Flattens fields the way Haiku's `BMessage::Flatten` does (format
/// `HMF1`, `what` 0, a 5-bucket name hash table chained in field order):
/// byte-identical to the repository info Haiku's `package_repo` writes.
pub(crate) fn flatten(fields: &[OutField<'_>]) -> Vec<u8> {
    const HASH_TABLE_SIZE: usize = 5;
    const FIELD_FLAG_VALID: u16 = 0x0001;
    let mut table = [-1i32; HASH_TABLE_SIZE];
    let mut next = vec![-1i32; fields.len()];
    let mut data = Vec::new();
    let mut headers = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        // Chain at the tail of the name's bucket.
        let bucket = hash_name(f.name) as usize % HASH_TABLE_SIZE;
        if table[bucket] < 0 {
            table[bucket] = i as i32;
        } else {
            let mut at = table[bucket] as usize;
            while next[at] >= 0 {
                at = next[at] as usize;
            }
            next[at] = i as i32;
        }
        let offset = data.len() as u32;
        data.extend_from_slice(f.name.as_bytes());
        data.push(0);
        let start = data.len();
        for item in &f.items {
            if !f.fixed_size {
                data.extend_from_slice(&(item.len() as u32).to_le_bytes());
            }
            data.extend_from_slice(item);
        }
        let flags = FIELD_FLAG_VALID
            | if f.fixed_size {
                FIELD_FLAG_FIXED_SIZE
            } else {
                0
            };
        headers.push((
            flags,
            (f.name.len() + 1) as u16,
            f.type_code,
            f.items.len() as u32,
            (data.len() - start) as u32,
            offset,
        ));
    }
    let mut out =
        Vec::with_capacity(HEADER_FIXED + 4 * HASH_TABLE_SIZE + 24 * fields.len() + data.len());
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // what
    out.extend_from_slice(&1u32.to_le_bytes()); // flags: valid
    for _ in 0..6 {
        out.extend_from_slice(&(-1i32).to_le_bytes());
    }
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    out.extend_from_slice(&(HASH_TABLE_SIZE as u32).to_le_bytes());
    for t in table {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for (i, (flags, name_len, type_code, count, size, offset)) in headers.into_iter().enumerate() {
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&type_code.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&next[i].to_le_bytes());
    }
    out.extend_from_slice(&data);
    out
}
