//! How much memory opening a file may cost.
//!
//! A package's metadata sections are compressed inside its heap, so a few
//! kilobytes on disk can claim megabytes once decoded, and a decoded index
//! holds more than the bytes it came from. Header caps alone (64 MiB of TOC)
//! would let a 1 MB file cost a gigabyte. So every allocation made while
//! opening a file is charged to a [`Budget`] bounded by the file's *size on
//! disk* — what an attacker must actually pay for — with a floor so that
//! small legitimate packages are never refused: by default 16 × the file
//! size, at least 16 MiB. Real packages use a few percent of that (see
//! SECURITY.md); one that needs more is refused with a message saying so.

use std::cell::Cell;

use crate::error::{Error, ErrorKind, Result};

/// Memory limits for opening one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes always allowed, whatever the file size.
    pub floor: u64,
    /// Bytes allowed per byte of the file on disk.
    pub per_file_byte: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            floor: 16 << 20,
            per_file_byte: 16,
        }
    }
}

impl Limits {
    /// The budget for a file of `file_size` bytes.
    pub fn for_file(&self, file_size: u64) -> u64 {
        self.floor.max(file_size.saturating_mul(self.per_file_byte))
    }
}

/// Bytes charged so far against a limit. Interior mutability lets the
/// parsers share one budget through `&Budget`.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    file_size: u64,
    used: Cell<u64>,
}

impl Budget {
    /// The budget of opening a file of `file_size` bytes under `limits`.
    pub fn new(limits: Limits, file_size: u64) -> Budget {
        Budget {
            limit: limits.for_file(file_size),
            file_size,
            used: Cell::new(0),
        }
    }

    /// A budget that never refuses (for data already in memory, e.g. tests).
    pub fn unlimited() -> Budget {
        Budget {
            limit: u64::MAX,
            file_size: 0,
            used: Cell::new(0),
        }
    }

    /// Charges `bytes` for `what`; fails once the total passes the limit.
    pub fn charge(&self, bytes: u64, what: &'static str) -> Result<()> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limit {
            return Err(Error::from(ErrorKind::OverBudget {
                what,
                needed: used,
                limit: self.limit,
                file_size: self.file_size,
            }));
        }
        Ok(())
    }

    /// Gives back what a transient allocation (now freed) was charged, so
    /// that [`Budget::used`] tells what stays allocated.
    pub fn release(&self, bytes: u64) {
        self.used.set(self.used.get().saturating_sub(bytes));
    }

    /// Charges the growth of `vec` needed to push one more element.
    pub fn reserve_one<T>(&self, vec: &mut Vec<T>, what: &'static str) -> Result<()> {
        if vec.len() == vec.capacity() {
            let before = vec.capacity();
            // Grow by half (at least 16 elements): less slack than doubling.
            let extra = (before / 2).max(4);
            self.charge((extra * std::mem::size_of::<T>()) as u64, what)?;
            vec.reserve_exact(extra);
        }
        Ok(())
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.get()
    }

    /// Bytes that may be charged in all.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_follows_file_size_with_a_floor() {
        let l = Limits::default();
        assert_eq!(l.for_file(0), 16 << 20);
        assert_eq!(l.for_file(10 << 20), 160 << 20);
        assert_eq!(l.for_file(u64::MAX), u64::MAX);
    }

    #[test]
    fn charges_accumulate_and_refuse_past_the_limit() {
        let b = Budget::new(
            Limits {
                floor: 100,
                per_file_byte: 0,
            },
            7,
        );
        b.charge(60, "x").unwrap();
        b.charge(40, "x").unwrap();
        let e = b.charge(1, "TOC entries").unwrap_err().to_string();
        assert!(
            e.contains("TOC entries") && e.contains("101") && e.contains("100"),
            "{e}"
        );
        let mut v: Vec<u64> = Vec::new();
        let b = Budget::new(Limits::default(), 0);
        for i in 0..1000 {
            b.reserve_one(&mut v, "v").unwrap();
            v.push(i);
        }
        assert!(b.used() >= 8000 && b.used() as usize == v.capacity() * 8);
    }
}
