//! Encrypted packages: an HPKG file sealed with AES-256-GCM (ring) in units that
//! follow its compressed chunks, so a mount reads and decrypts exactly the
//! stored chunk it loads, in one read, and nothing else.
//!
//! ```text
//! 0    magic "EXOSENC1"
//! 8    version u16 (2), cipher u16 (1 = AES-256-GCM), unit count u32 (N)
//! 16   key id [16]         which key (SHA-256 of it, truncated; reveals nothing)
//! 32   salt [32]           random per file
//! 64   plain size u64      the size of the package inside
//! 72   reserved [8]        zero
//! 80   unit table sealed: N × u32 plain length, then its 16-byte tag
//! …    unit 0 sealed (its bytes + 16-byte tag), unit 1 sealed, …
//! ```
//!
//! Units are cut at the package's heap chunk boundaries (each stored chunk
//! is one unit); the bytes outside chunks (the package header, the chunk
//! size table) in units of at most 16 KiB. A unit holds 1 byte to 1 MiB.
//! Everything of the package is inside — header, heap, TOC, attributes —
//! so without the key not even its name is known; the table is sealed
//! too, so not even the chunk sizes are. Each file gets its own subkey
//! (HKDF-SHA256 of the key with the file's random salt), so the nonce can
//! be the unit's index (the table's is 2^64 − 1): never reused under one
//! subkey. Every unit's associated data is the whole 80-byte header and
//! the unit's index, so a unit moved to another place or file, a changed
//! header or a truncated file fail authentication. Integers little-endian.
//!
//! Keys are given to each open explicitly, as a [`KeyRing`] in
//! [`crate::OpenOptions`] — never to the whole process — so the caller
//! decides which files a key may decrypt (a mount binds its keys to the
//! layers only root can write). [`crate::Package`] opens an encrypted file
//! like any other when its key is in the ring, and says which key it needs
//! when not. Haiku's tools refuse such a file as
//! they refuse any file that is not a package (bad magic).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use sha2::Digest;

use crate::error::{corrupt, Error, ErrorKind, Result, ResultExt};
use crate::source::Source;

/// The first bytes of an encrypted package.
pub const MAGIC: [u8; 8] = *b"EXOSENC1";
/// Bytes of the envelope header.
pub const HEADER_SIZE: usize = 80;
/// Bytes of the GCM tag after each sealed unit.
pub const TAG_SIZE: u64 = 16;
/// The largest unit a reader accepts (what one read may decrypt at once).
pub const MAX_UNIT: u32 = 1 << 20;
/// Bytes outside heap chunks are sealed in units of at most this size.
pub const FILL_UNIT: u64 = 16384;
const VERSION: u16 = 2;
const CIPHER_AES_256_GCM: u16 = 1;
const KEY_FILE_HEADER: &str = "exos-package-key-v1";
/// The unit table's nonce and associated-data index (no unit has it).
const TABLE_INDEX: u64 = u64::MAX;
/// Decrypted units kept per open file for reads that cover part of one.
const CACHE_UNITS: usize = 16;

/// Which key a file needs: the first 16 bytes of SHA-256 over a label and
/// the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 16]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A package encryption key (256 bits).
#[derive(Clone)]
pub struct PackageKey {
    bytes: [u8; 32],
}

impl fmt::Debug for PackageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageKey({})", self.id())
    }
}

impl PackageKey {
    /// A new random key.
    pub fn generate() -> io::Result<PackageKey> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(PackageKey { bytes })
    }

    /// The key's id: a hash of it, never the key.
    pub fn id(&self) -> KeyId {
        let mut h = sha2::Sha256::new();
        h.update(b"exos package key id\0");
        h.update(self.bytes);
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        KeyId(id)
    }

    /// The key file's text: a header line and 64 hex digits.
    pub fn render(&self) -> String {
        let hex: String = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{KEY_FILE_HEADER}\n{hex}\n")
    }

    /// Parses a key file's bytes (`path` names it in errors).
    pub fn parse(text: &[u8], path: &Path) -> Result<PackageKey> {
        let bad = |why: &str| {
            Error::from(ErrorKind::Corrupt(format!(
                "not an exos package key: {why}"
            )))
            .with_path(path)
        };
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(bad(&format!("the first line must be {KEY_FILE_HEADER:?}")));
        }
        let hex = lines.next().ok_or_else(|| bad("no key line"))?;
        if lines.next().is_some() {
            return Err(bad("more than one key line"));
        }
        if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("the key line must be 64 hex digits"));
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("bad hex"))?;
        }
        Ok(PackageKey { bytes })
    }

    /// Reads a key file (at most 4 KiB are read).
    pub fn read(path: &Path) -> Result<PackageKey> {
        use std::io::Read;
        let f = std::fs::File::open(path).at(path)?;
        let mut text = Vec::new();
        f.take(4096).read_to_end(&mut text).at(path)?;
        PackageKey::parse(&text, path)
    }

    /// The file's AES-256-GCM key. ring's (BoringSSL's assembly) rather
    /// than RustCrypto's aes-gcm: 10.8 against 1.7 GB/s here, which is
    /// what kept sealed cold reads within 1.1× of plain ones (BENCHMARKS.md).
    fn subkey(&self, salt: &[u8; 32]) -> Result<LessSafeKey> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &self.bytes);
        let mut okm = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(b"exos package encryption v1", &mut okm);
        let key = UnboundKey::new(&AES_256_GCM, &okm)
            .map_err(|_| Error::from(io::Error::other("AES-256-GCM key setup failed")))?;
        Ok(LessSafeKey::new(key))
    }
}

/// The keys an open may decrypt sealed packages with. Cheap to clone
/// (shared); empty by default, so nothing is decrypted unless a caller
/// hands keys over for that open.
#[derive(Clone, Default)]
pub struct KeyRing(Arc<[PackageKey]>);

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|k| k.id()))
            .finish()
    }
}

impl KeyRing {
    /// A ring of `keys` (the same key given twice is kept once).
    pub fn new(keys: impl IntoIterator<Item = PackageKey>) -> KeyRing {
        let mut v: Vec<PackageKey> = Vec::new();
        for k in keys {
            if !v.iter().any(|o| o.bytes == k.bytes) {
                v.push(k);
            }
        }
        KeyRing(v.into())
    }

    /// The key with this id, if the ring holds it.
    pub fn get(&self, id: KeyId) -> Option<&PackageKey> {
        self.0.iter().find(|k| k.id() == id)
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Its keys.
    pub fn iter(&self) -> impl Iterator<Item = &PackageKey> {
        self.0.iter()
    }
}

/// Whether a file starting with `head` is an encrypted package.
pub fn is_encrypted(head: &[u8]) -> bool {
    head.starts_with(&MAGIC)
}

/// The validated header of an encrypted package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The id of the key that sealed it.
    pub key_id: KeyId,
    /// Salt of the per-package key derivation.
    pub salt: [u8; 32],
    /// Size of the package decrypted.
    pub plain_size: u64,
    /// How many sealed units follow the unit table.
    pub units: u32,
    bytes: [u8; HEADER_SIZE],
}

impl EnvelopeHeader {
    fn new(key: &PackageKey, salt: [u8; 32], plain_size: u64, units: u32) -> EnvelopeHeader {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&CIPHER_AES_256_GCM.to_le_bytes());
        b[12..16].copy_from_slice(&units.to_le_bytes());
        b[16..32].copy_from_slice(&key.id().0);
        b[32..64].copy_from_slice(&salt);
        b[64..72].copy_from_slice(&plain_size.to_le_bytes());
        EnvelopeHeader {
            key_id: key.id(),
            salt,
            plain_size,
            units,
            bytes: b,
        }
    }

    /// Parses the first 80 bytes of a file of `file_size` bytes.
    pub fn parse(b: &[u8], file_size: u64) -> Result<EnvelopeHeader> {
        if b.len() < HEADER_SIZE || !is_encrypted(b) {
            return Err(corrupt!("not an encrypted exos package"));
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        if u16_at(8) != VERSION {
            return Err(corrupt!(
                "encrypted package version {} (only {VERSION} is known{})",
                u16_at(8),
                if u16_at(8) == 1 {
                    "; version 1 was sealed by an earlier exos: encrypt the plain package again"
                } else {
                    ""
                }
            ));
        }
        if u16_at(10) != CIPHER_AES_256_GCM {
            return Err(corrupt!("unknown cipher {}", u16_at(10)));
        }
        if b[72..80] != [0; 8] {
            return Err(corrupt!("reserved header bytes are not zero"));
        }
        let units = u32::from_le_bytes(b[12..16].try_into().unwrap_or_default());
        let plain_size = u64::from_le_bytes(b[64..72].try_into().unwrap_or_default());
        if units == 0 || u64::from(units) > plain_size {
            return Err(corrupt!(
                "{units} units cannot hold a {plain_size}-byte package (each holds at least one byte)"
            ));
        }
        if plain_size.div_ceil(u64::from(MAX_UNIT)) > u64::from(units) {
            return Err(corrupt!(
                "{units} units of at most {MAX_UNIT} bytes cannot hold a {plain_size}-byte package"
            ));
        }
        let expected = sealed_size(plain_size, units);
        if expected != Some(file_size) {
            return Err(corrupt!(
                "a {plain_size}-byte package sealed in {units} units takes {} bytes, but the file is {file_size} bytes (truncated or padded?)",
                expected.map_or("more than 2^64".into(), |e| e.to_string())
            ));
        }
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&b[16..32]);
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&b[32..64]);
        let mut bytes = [0u8; HEADER_SIZE];
        bytes.copy_from_slice(&b[..HEADER_SIZE]);
        Ok(EnvelopeHeader {
            key_id: KeyId(key_id),
            salt,
            plain_size,
            units,
            bytes,
        })
    }

    /// Size of the sealed unit table (lengths and tag).
    fn table_size(&self) -> u64 {
        4 * u64::from(self.units) + TAG_SIZE
    }

    /// Where unit 0's sealed bytes begin.
    fn units_offset(&self) -> u64 {
        HEADER_SIZE as u64 + self.table_size()
    }

    fn aad(&self, i: u64) -> [u8; HEADER_SIZE + 8] {
        let mut a = [0u8; HEADER_SIZE + 8];
        a[..HEADER_SIZE].copy_from_slice(&self.bytes);
        a[HEADER_SIZE..].copy_from_slice(&i.to_le_bytes());
        a
    }
}

fn sealed_size(plain: u64, units: u32) -> Option<u64> {
    let tags = (u64::from(units) + 1).checked_mul(TAG_SIZE)?;
    (HEADER_SIZE as u64)
        .checked_add(4 * u64::from(units))?
        .checked_add(tags)?
        .checked_add(plain)
}

fn nonce(i: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&i.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The plain lengths of the units a `size`-byte file is sealed in: cut at
/// every boundary in `boundaries` (stored chunk starts, sorted or not),
/// gaps between them cut into [`FILL_UNIT`] pieces, nothing over
/// [`MAX_UNIT`].
fn unit_lengths(boundaries: &[u64], size: u64) -> Vec<u32> {
    let mut chunk_starts = boundaries.to_vec();
    chunk_starts.sort_unstable();
    chunk_starts.dedup();
    let mut cuts: Vec<u64> = chunk_starts
        .iter()
        .copied()
        .filter(|&b| b > 0 && b < size)
        .collect();
    cuts.push(size);
    let mut lengths = Vec::with_capacity(cuts.len());
    let mut at = 0u64;
    for cut in cuts {
        let gap = cut - at;
        // A chunk is one unit; bytes between chunks are filler.
        let piece = if chunk_starts.binary_search(&at).is_ok() && gap <= u64::from(MAX_UNIT) {
            gap
        } else {
            FILL_UNIT
        };
        while at < cut {
            let n = (cut - at).min(piece);
            lengths.push(n as u32);
            at += n;
        }
    }
    lengths
}

/// Where a package's stored chunks begin (and the last ends): the cuts its
/// units follow. Anything that does not open as a package has none.
fn chunk_boundaries(plain: Arc<dyn Source>) -> Vec<u64> {
    match crate::Package::from_source(plain, "", &crate::OpenOptions::default()) {
        Ok(p) => p.heap().chunk_file_boundaries(),
        Err(_) => Vec::new(),
    }
}

/// The sealed unit table for `lengths`.
fn seal_table(cipher: &LessSafeKey, header: &EnvelopeHeader, lengths: &[u32]) -> Vec<u8> {
    let mut table: Vec<u8> = lengths.iter().flat_map(|n| n.to_le_bytes()).collect();
    // Encryption of an in-memory buffer cannot fail for these sizes.
    if let Ok(tag) = cipher.seal_in_place_separate_tag(
        nonce(TABLE_INDEX),
        Aad::from(header.aad(TABLE_INDEX)),
        &mut table,
    ) {
        table.extend_from_slice(tag.as_ref());
    }
    table
}

/// Seals the package `input` with `key` into `output` (a temporary file
/// beside it, renamed at the end). `input` must be a package (opened and
/// checked first, not decrypted: an encrypted one is refused).
pub fn encrypt_file(input: &Path, key: &PackageKey, output: &Path) -> Result<u64> {
    let mut salt = [0u8; 32];
    getrandom::getrandom(&mut salt)
        .map_err(|e| Error::from(io::Error::other(e.to_string())).with_path(output))?;
    encrypt_file_with_salt(input, key, output, salt)
}

/// [`encrypt_file`] with a given salt: the same bytes every time (for
/// test inputs only — a salt must never be used twice with one key).
pub fn encrypt_file_with_salt(
    input: &Path,
    key: &PackageKey,
    output: &Path,
    salt: [u8; 32],
) -> Result<u64> {
    use std::io::{Read, Write};
    let mut head = [0u8; 8];
    {
        let mut f = std::fs::File::open(input).at(input)?;
        let n = f.read(&mut head).at(input)?;
        if is_encrypted(&head[..n]) {
            return Err(
                Error::from(ErrorKind::Unsupported("already encrypted".into())).with_path(input),
            );
        }
    }
    let package = crate::Package::open(input)?;
    let mut src = std::fs::File::open(input).at(input)?;
    let plain_size = src.metadata().at(input)?.len();
    let lengths = unit_lengths(&package.heap().chunk_file_boundaries(), plain_size);
    drop(package);
    let units = u32::try_from(lengths.len())
        .map_err(|_| corrupt!("package too large to seal").with_path(input))?;
    let header = EnvelopeHeader::new(key, salt, plain_size, units);
    let cipher = key.subkey(&salt).map_err(|e| e.with_path(output))?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = std::ffi::OsString::from(".");
    name.push(output.file_name().unwrap_or_default());
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(name);
    let result = (|| -> Result<()> {
        let mut out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).at(&tmp)?);
        out.write_all(&header.bytes).at(&tmp)?;
        out.write_all(&seal_table(&cipher, &header, &lengths))
            .at(&tmp)?;
        let mut buf = vec![0u8; MAX_UNIT as usize];
        for (i, &len) in lengths.iter().enumerate() {
            let unit = &mut buf[..len as usize];
            src.read_exact(unit).at(input)?;
            let tag = cipher
                .seal_in_place_separate_tag(nonce(i as u64), Aad::from(header.aad(i as u64)), unit)
                .map_err(|_| corrupt!("encryption failed"))?;
            out.write_all(unit).at(&tmp)?;
            out.write_all(tag.as_ref()).at(&tmp)?;
        }
        let f = out
            .into_inner()
            .map_err(|e| Error::from(e.into_error()).with_path(&tmp))?;
        f.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, output).at(output)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|_| sealed_size(plain_size, units).unwrap_or(0))
}

/// Seals `plain` (any non-empty bytes) in memory with `key` and `salt`:
/// the bytes [`encrypt_file_with_salt`] writes for a file holding `plain`
/// (units follow its chunks when it is a package, else 16 KiB pieces).
pub fn seal(plain: &[u8], key: &PackageKey, salt: [u8; 32]) -> Result<Vec<u8>> {
    let boundaries = chunk_boundaries(Arc::new(plain.to_vec()));
    let lengths = unit_lengths(&boundaries, plain.len() as u64);
    let header = EnvelopeHeader::new(key, salt, plain.len() as u64, lengths.len() as u32);
    let cipher = key.subkey(&salt)?;
    let mut out =
        Vec::with_capacity(sealed_size(plain.len() as u64, header.units).unwrap_or(0) as usize);
    out.extend_from_slice(&header.bytes);
    out.extend_from_slice(&seal_table(&cipher, &header, &lengths));
    let mut at = 0usize;
    for (i, &len) in lengths.iter().enumerate() {
        let start = out.len();
        out.extend_from_slice(&plain[at..at + len as usize]);
        at += len as usize;
        // Encryption of an in-memory buffer cannot fail for unit-sized input.
        if let Ok(tag) = cipher.seal_in_place_separate_tag(
            nonce(i as u64),
            Aad::from(header.aad(i as u64)),
            &mut out[start..],
        ) {
            out.extend_from_slice(tag.as_ref());
        }
    }
    Ok(out)
}

/// One unit of an encrypted file (see [`EncryptedSource::units`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedUnit {
    /// Its number (part of its nonce).
    pub index: u32,
    /// Its bytes' place in the package.
    pub plain: std::ops::Range<u64>,
    /// Its sealed bytes and tag's place in the encrypted file.
    pub sealed: std::ops::Range<u64>,
}

/// The package inside an encrypted file, decrypted unit by unit as it is
/// read. Units that do not authenticate are I/O errors saying so.
pub struct EncryptedSource {
    inner: Arc<dyn Source>,
    header: EnvelopeHeader,
    cipher: LessSafeKey,
    /// Plain offset where unit `i` begins; the last element is the size.
    starts: Vec<u64>,
    /// Units recently decrypted for reads that covered only part of them,
    /// most recent last.
    cache: Mutex<Vec<(usize, Arc<Vec<u8>>)>>,
}

impl fmt::Debug for EncryptedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedSource")
            .field("key", &self.header.key_id)
            .field("plain_size", &self.header.plain_size)
            .field("units", &self.header.units)
            .finish()
    }
}

/// The tag in `b` (16 bytes, as the callers slice it).
fn tag_of(b: &[u8]) -> Tag {
    let mut t = [0u8; TAG_SIZE as usize];
    t.copy_from_slice(b);
    Tag::from(t)
}

fn unauthentic(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("encrypted {what} does not authenticate (a wrong key, or the file was changed, or units were moved)"),
    )
}

impl EncryptedSource {
    /// Opens the encrypted file `inner` with its key from `keys`; without
    /// it, the error names the key it needs.
    pub fn open(inner: Arc<dyn Source>, keys: &KeyRing) -> Result<EncryptedSource> {
        let mut b = [0u8; HEADER_SIZE];
        let size = inner.len()?;
        if size < HEADER_SIZE as u64 {
            return Err(corrupt!("encrypted package shorter than its header"));
        }
        inner.read_exact_at(&mut b, 0)?;
        let header = EnvelopeHeader::parse(&b, size)?;
        let key = keys
            .get(header.key_id)
            .ok_or_else(|| Error::from(ErrorKind::Encrypted(header.key_id.to_string())))?;
        EncryptedSource::with_key(inner, header, key)
    }

    /// Opens with `key` whatever key the header names (a wrong key then
    /// fails on the unit table, at once).
    pub fn with_key(
        inner: Arc<dyn Source>,
        header: EnvelopeHeader,
        key: &PackageKey,
    ) -> Result<EncryptedSource> {
        let cipher = key.subkey(&header.salt)?;
        // The header checked that the table (4 bytes a unit) fits the file.
        let mut table = vec![0u8; header.table_size() as usize];
        inner.read_exact_at(&mut table, HEADER_SIZE as u64)?;
        let tag_at = table.len() - TAG_SIZE as usize;
        let tag = tag_of(&table[tag_at..]);
        table.truncate(tag_at);
        cipher
            .open_in_place_separate_tag(
                nonce(TABLE_INDEX),
                Aad::from(header.aad(TABLE_INDEX)),
                tag,
                &mut table,
                0..,
            )
            .map_err(|_| Error::from(unauthentic("unit table")))?;
        let mut starts = Vec::with_capacity(header.units as usize + 1);
        let mut at = 0u64;
        for (i, n) in table.chunks_exact(4).enumerate() {
            let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]);
            if n == 0 || n > MAX_UNIT {
                return Err(corrupt!(
                    "unit {i} holds {n} bytes (a unit holds 1 to {MAX_UNIT})"
                ));
            }
            starts.push(at);
            at += u64::from(n);
        }
        if at != header.plain_size {
            return Err(corrupt!(
                "the units hold {at} bytes, the header says {}",
                header.plain_size
            ));
        }
        starts.push(at);
        Ok(EncryptedSource {
            inner,
            header,
            cipher,
            starts,
            cache: Mutex::new(Vec::with_capacity(CACHE_UNITS)),
        })
    }

    /// The key this file is sealed with.
    pub fn key_id(&self) -> KeyId {
        self.header.key_id
    }

    /// Every sealed unit: where its plain bytes sit in the package and
    /// where its sealed bytes (with the tag) sit in the file.
    pub fn units(&self) -> impl Iterator<Item = SealedUnit> + '_ {
        (0..self.header.units as usize).map(|i| SealedUnit {
            index: i as u32,
            plain: self.starts[i]..self.starts[i + 1],
            sealed: self.sealed_offset(i)
                ..self.sealed_offset(i) + self.unit_len(i) as u64 + TAG_SIZE,
        })
    }

    /// The unit holding plain offset `pos` (< plain size).
    fn unit_of(&self, pos: u64) -> usize {
        self.starts.partition_point(|&s| s <= pos) - 1
    }

    /// Where unit `i`'s sealed bytes begin in the file.
    fn sealed_offset(&self, i: usize) -> u64 {
        self.header.units_offset() + self.starts[i] + i as u64 * TAG_SIZE
    }

    fn unit_len(&self, i: usize) -> usize {
        (self.starts[i + 1] - self.starts[i]) as usize
    }

    /// Decrypts unit `i` in place: `sealed` is its bytes and tag; on
    /// success the first [`Self::unit_len`] bytes are plain.
    fn open_unit(&self, i: usize, sealed: &mut [u8]) -> io::Result<()> {
        let len = self.unit_len(i);
        let tag = tag_of(&sealed[len..len + TAG_SIZE as usize]);
        self.cipher
            .open_in_place_separate_tag(
                nonce(i as u64),
                Aad::from(self.header.aad(i as u64)),
                tag,
                &mut sealed[..len],
                0..,
            )
            .map(|_| ())
            .map_err(|_| unauthentic(&format!("unit {i}")))
    }

    fn cached(&self, i: usize) -> Option<Arc<Vec<u8>>> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let at = c.iter().position(|(j, _)| *j == i)?;
        let hit = c.remove(at);
        let unit = hit.1.clone();
        c.push(hit);
        Some(unit)
    }

    fn remember(&self, i: usize, unit: Arc<Vec<u8>>) {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_UNITS {
            c.remove(0);
        }
        c.push((i, unit));
    }

    /// Reads the sealed units `first..=last` into `sealed` (one read),
    /// opens each and copies what `buf` (at plain `offset`) wants of it;
    /// a unit only partly wanted is kept for the next read of it.
    fn open_units(
        &self,
        buf: &mut [u8],
        offset: u64,
        first: usize,
        last: usize,
        sealed: &mut [u8],
    ) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let base = self.sealed_offset(first);
        self.inner.read_exact_at(sealed, base)?;
        for i in first..=last {
            let at = (self.sealed_offset(i) - base) as usize;
            let len = self.unit_len(i);
            let unit = &mut sealed[at..at + len + TAG_SIZE as usize];
            self.open_unit(i, unit)?;
            // The part of unit i the caller asked for, and where it goes.
            let from = offset.max(self.starts[i]);
            let to = end.min(self.starts[i + 1]);
            let src = (from - self.starts[i]) as usize..(to - self.starts[i]) as usize;
            let dst = (from - offset) as usize..(to - offset) as usize;
            buf[dst].copy_from_slice(&unit[src]);
            if from != self.starts[i] || to != self.starts[i + 1] {
                self.remember(i, Arc::new(unit[..len].to_vec()));
            }
        }
        Ok(())
    }
}

impl Source for EncryptedSource {
    /// As the sealed file's source (a sealed package installed lazily is
    /// fetched like any other).
    fn fetched_on_demand(&self) -> bool {
        self.inner.fetched_on_demand()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.header.plain_size)
    }

    /// One read of the sealed units the range touches (a stored chunk is
    /// exactly one), each decrypted once. A unit only partly wanted is
    /// kept for the next read of it.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.header.plain_size)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if buf.is_empty() {
            return Ok(());
        }
        let first = self.unit_of(offset);
        let last = self.unit_of(end - 1);
        let whole = |i: usize| offset <= self.starts[i] && self.starts[i + 1] <= end;
        if first == last && !whole(first) {
            if let Some(unit) = self.cached(first) {
                let at = (offset - self.starts[first]) as usize;
                buf.copy_from_slice(&unit[at..at + buf.len()]);
                return Ok(());
            }
        }
        let base = self.sealed_offset(first);
        let span =
            (self.sealed_offset(last) + (self.unit_len(last) as u64 + TAG_SIZE) - base) as usize;
        // A buffer kept per thread: a mount's readers load chunk after chunk.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut kept) => {
                if kept.len() < span {
                    kept.resize(span, 0);
                }
                let result = self.open_units(buf, offset, first, last, &mut kept[..span]);
                if kept.len() > 4 * MAX_UNIT as usize {
                    *kept = Vec::new();
                }
                result
            }
            Err(_) => self.open_units(buf, offset, first, last, &mut vec![0u8; span]),
        })
    }

    fn will_need(&self, offset: u64, len: u64) {
        if offset >= self.header.plain_size || len == 0 {
            return;
        }
        let end = offset.saturating_add(len).min(self.header.plain_size);
        let first = self.unit_of(offset);
        let last = self.unit_of(end - 1);
        let at = self.sealed_offset(first);
        let to = self.sealed_offset(last) + self.unit_len(last) as u64 + TAG_SIZE;
        self.inner.will_need(at, to - at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_chunks_and_fill_the_gaps() {
        // Header 80 bytes, chunks at 80, 1000, 70000; chunk table to 70100.
        let lengths = unit_lengths(&[80, 1000, 70000, 70050], 70100);
        assert_eq!(lengths, vec![80, 920, 69000, 50, 50]);
        // No chunks: 16 KiB pieces.
        assert_eq!(unit_lengths(&[], 40000), vec![16384, 16384, 7232]);
        // A gap between chunks longer than a unit may be is cut.
        let big = u64::from(MAX_UNIT) + 5;
        assert_eq!(
            unit_lengths(&[0, big], big)
                .iter()
                .map(|&n| u64::from(n))
                .sum::<u64>(),
            big
        );
        assert!(unit_lengths(&[0, big], big).iter().all(|&n| n <= MAX_UNIT));
    }
}
