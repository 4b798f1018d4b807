//! The one way EXOS hashes a package file: SHA-256 (what states and
//! indexes record) and, when a signature must be checked, BLAKE2b-512
//! (what a minisign signature covers), in one pass over the bytes —
//! whether they come from a file ([`FileDigest::of_reader`]) or arrive from
//! the network ([`Hasher`], fed as they are written).

use std::io::Read;
use std::path::Path;

use crate::Sha256;

/// The BLAKE2b-512 digest a minisign signature covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Blake2b512Digest(pub [u8; 64]);

impl std::fmt::Debug for Blake2b512Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blake2b512Digest({})", crate::hex::encode(&self.0))
    }
}

impl Blake2b512Digest {
    /// The digest of bytes in memory.
    pub fn of_bytes(bytes: &[u8]) -> Blake2b512Digest {
        use blake2::Digest;
        Blake2b512Digest(blake2::Blake2b512::digest(bytes).into())
    }
}

/// A file's SHA-256 and BLAKE2b-512, computed in one pass.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileDigest {
    /// SHA-256 of the contents (what states name packages by).
    pub sha256: Sha256,
    /// BLAKE2b-512 of the contents (what a minisign signature covers).
    pub blake2b: Blake2b512Digest,
    /// Bytes hashed.
    pub size: u64,
}

/// Both digests of a stream, fed piece by piece.
#[derive(Clone, Default)]
pub struct Hasher {
    sha: sha2::Sha256,
    b2: blake2::Blake2b512,
    size: u64,
}

impl Hasher {
    /// A hasher of nothing yet.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// Hashes more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.sha.update(bytes);
        blake2::Digest::update(&mut self.b2, bytes);
        self.size += bytes.len() as u64;
    }

    /// The digests of everything hashed.
    pub fn finish(self) -> FileDigest {
        use sha2::Digest;
        FileDigest {
            sha256: Sha256(self.sha.finalize().into()),
            blake2b: Blake2b512Digest(blake2::Digest::finalize(self.b2).into()),
            size: self.size,
        }
    }
}

/// Reads `f` to its end in pieces of up to 1 MiB, handing each to `each`.
/// The buffer starts at 8 KiB and grows eightfold each time a read fills
/// it: a small package costs no 1 MiB buffer to zero (at activation of
/// 10,000 small packages that zeroing was 15 % of the daemon's time).
pub(crate) fn read_through(mut f: impl Read, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
    const FIRST: usize = 8 << 10;
    const LARGEST: usize = 1 << 20;
    let mut buf = vec![0u8; FIRST];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n]);
        if n == buf.len() && buf.len() < LARGEST {
            buf.resize((buf.len() * 8).min(LARGEST), 0);
        }
    }
}

impl FileDigest {
    /// The digests of a file, read once.
    pub fn of_file(path: &Path) -> std::io::Result<FileDigest> {
        FileDigest::of_reader(std::fs::File::open(path)?)
    }

    /// The digests of everything `f` reads.
    pub fn of_reader(f: impl Read) -> std::io::Result<FileDigest> {
        let mut h = Hasher::new();
        read_through(f, |b| h.update(b))?;
        Ok(h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_gives_what_each_hash_gives_alone() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7) as u8).collect();
        let d = FileDigest::of_reader(&data[..]).unwrap();
        assert_eq!(d.sha256, Sha256::of_bytes(&data));
        assert_eq!(d.blake2b, Blake2b512Digest::of_bytes(&data));
        assert_eq!(d.size, data.len() as u64);
        let mut h = Hasher::new();
        for piece in data.chunks(12_345) {
            h.update(piece);
        }
        assert!(h.finish() == d);
        assert_eq!(Sha256::of_reader(&data[..]).unwrap(), d.sha256);
    }

    /// A reader that is interrupted every third call and otherwise gives
    /// at most `most` bytes.
    struct Halting<'a> {
        data: &'a [u8],
        most: usize,
        calls: usize,
    }

    impl Read for Halting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.most).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_through_hands_over_every_byte_in_pieces_of_at_most_a_mebibyte() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 13) as u8).collect();
        for most in [1, 4096, 8 << 10, 100_000, usize::MAX] {
            let len = if most == 1 { 20_000 } else { data.len() };
            let reader = Halting {
                data: &data[..len],
                most,
                calls: 0,
            };
            let (mut got, mut largest) = (Vec::new(), 0);
            read_through(reader, |piece| {
                largest = largest.max(piece.len());
                got.extend_from_slice(piece);
            })
            .unwrap();
            assert!(got == data[..len], "reads of at most {most}");
            assert!(largest <= 1 << 20);
        }
        // A reader that always fills the buffer grows it to 1 MiB pieces.
        let mut pieces = Vec::new();
        read_through(&data[..], |piece| pieces.push(piece.len())).unwrap();
        assert_eq!(&pieces[..4], &[8 << 10, 64 << 10, 512 << 10, 1 << 20]);
    }
}
