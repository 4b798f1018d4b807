//! `system/state/digests/<sha>.digests`: the content digests EXOS computed
//! for one package's files (see `exos_hpkg::Package::content_digests`),
//! remembered so the next mount need not read the package again. Binary:
//! `EXOSDIG1`, a little-endian u32 count, then per file a u32 entry id
//! (strictly ascending) and a 16-byte digest.

use std::path::Path;

use crate::StateError;

const MAGIC: &[u8; 8] = b"EXOSDIG1";
const RECORD: usize = 4 + 16;

/// One package's file digests, by entry id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContentDigests(pub Vec<(u32, [u8; 16])>);

impl ContentDigests {
    /// Parses a digests file; the length must be exactly what the count
    /// says, so nothing is allocated beyond what was read.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<ContentDigests, StateError> {
        let err = |message: String| StateError {
            path: path.to_path_buf(),
            line: None,
            message,
        };
        let header = MAGIC.len() + 4;
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
            return Err(err("not a digests file (no EXOSDIG1 header)".into()));
        }
        let count = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default()) as usize;
        let body = &bytes[header..];
        if body.len() / RECORD != count || body.len() % RECORD != 0 {
            return Err(err(format!(
                "{count} records announced, {} bytes follow ({} expected)",
                body.len(),
                count.saturating_mul(RECORD)
            )));
        }
        let mut out = Vec::with_capacity(count);
        for record in body.chunks_exact(RECORD) {
            let id = u32::from_le_bytes(record[..4].try_into().unwrap_or_default());
            if out.last().is_some_and(|&(last, _)| last >= id) {
                return Err(err(format!("entry ids not strictly ascending at {id}")));
            }
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&record[4..]);
            out.push((id, digest));
        }
        Ok(ContentDigests(out))
    }

    /// The file's bytes, as written.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.0.len() * RECORD);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for (id, digest) in &self.0 {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(digest);
        }
        out
    }

    /// The digest of entry `id`.
    pub fn get(&self, id: u32) -> Option<&[u8; 16]> {
        self.0
            .binary_search_by_key(&id, |&(i, _)| i)
            .ok()
            .map(|i| &self.0[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = ContentDigests(vec![(1, [7; 16]), (5, [9; 16])]);
        let p = Path::new("x.digests");
        assert_eq!(ContentDigests::parse(&d.render(), p).unwrap(), d);
        assert_eq!(d.get(5), Some(&[9; 16]));
        assert_eq!(d.get(2), None);
        let mut bad = d.render();
        bad.pop();
        assert!(ContentDigests::parse(&bad, p).is_err());
        let mut huge = d.render();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ContentDigests::parse(&huge, p).is_err());
        let unsorted = ContentDigests(vec![(5, [0; 16]), (1, [0; 16])]).render();
        assert!(ContentDigests::parse(&unsorted, p).is_err());
        assert!(ContentDigests::parse(b"EXOSDIG", p).is_err());
    }
}
