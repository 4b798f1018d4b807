//! Encrypted packages: an HPKG file sealed in 16 KiB blocks with
//! AES-256-GCM, so a mount still reads (and decrypts) only the blocks a
//! read touches.
//!
//! ```text
//! 0    magic "EXOSENC1"
//! 8    version u16 (1), cipher u16 (1 = AES-256-GCM), block size u32 (16384)
//! 16   key id [16]         which key (SHA-256 of it, truncated; reveals nothing)
//! 32   salt [32]           random per file
//! 64   plain size u64      the size of the package inside
//! 72   reserved [8]        zero
//! 80   block 0 sealed (its bytes + 16-byte tag), block 1 sealed, …
//! ```
//!
//! Everything of the package is inside — header, heap, TOC, attributes —
//! so without the key not even its name is known. Each file gets its own
//! subkey (HKDF-SHA256 of the key with the file's random salt), so the
//! nonce can be the block index: never reused under one subkey. Every
//! block's associated data is the whole 80-byte header and the block's
//! index, so a block moved to another place or file, a changed header or
//! a truncated file fail authentication. Integers little-endian.
//!
//! Keys are given to the process (`register_key`); [`crate::Package`]
//! opens an encrypted file like any other when its key is registered, and
//! says which key it needs when not. Haiku's tools refuse such a file as
//! they refuse any file that is not a package (bad magic).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use sha2::Digest;

use crate::error::{corrupt, Error, ErrorKind, Result, ResultExt};
use crate::source::Source;

pub const MAGIC: [u8; 8] = *b"EXOSENC1";
pub const HEADER_SIZE: usize = 80;
pub const BLOCK_SIZE: u64 = 16384;
pub const TAG_SIZE: u64 = 16;
const VERSION: u16 = 1;
const CIPHER_AES_256_GCM: u16 = 1;
const KEY_FILE_HEADER: &str = "exos-package-key-v1";
/// Decrypted blocks kept per open file.
const CACHE_BLOCKS: usize = 64;

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

    fn subkey(&self, salt: &[u8; 32]) -> Aes256Gcm {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &self.bytes);
        let mut okm = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(b"exos package encryption v1", &mut okm);
        Aes256Gcm::new((&okm).into())
    }
}

/// The keys this process may open encrypted packages with.
static KEYS: RwLock<Vec<PackageKey>> = RwLock::new(Vec::new());

/// Makes `key` available to every later open of an encrypted package.
pub fn register_key(key: PackageKey) {
    let mut keys = KEYS.write().unwrap_or_else(|e| e.into_inner());
    if !keys.iter().any(|k| k.bytes == key.bytes) {
        keys.push(key);
    }
}

fn registered(id: KeyId) -> Option<PackageKey> {
    KEYS.read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|k| k.id() == id)
        .cloned()
}

/// Whether a file starting with `head` is an encrypted package.
pub fn is_encrypted(head: &[u8]) -> bool {
    head.starts_with(&MAGIC)
}

/// The validated header of an encrypted package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeHeader {
    pub key_id: KeyId,
    pub salt: [u8; 32],
    pub plain_size: u64,
    bytes: [u8; HEADER_SIZE],
}

impl EnvelopeHeader {
    fn new(key: &PackageKey, salt: [u8; 32], plain_size: u64) -> EnvelopeHeader {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&CIPHER_AES_256_GCM.to_le_bytes());
        b[12..16].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        b[16..32].copy_from_slice(&key.id().0);
        b[32..64].copy_from_slice(&salt);
        b[64..72].copy_from_slice(&plain_size.to_le_bytes());
        EnvelopeHeader {
            key_id: key.id(),
            salt,
            plain_size,
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
                "encrypted package version {} (only {VERSION} is known)",
                u16_at(8)
            ));
        }
        if u16_at(10) != CIPHER_AES_256_GCM {
            return Err(corrupt!("unknown cipher {}", u16_at(10)));
        }
        let block = u32::from_le_bytes(b[12..16].try_into().unwrap_or_default()) as u64;
        if block != BLOCK_SIZE {
            return Err(corrupt!("block size {block}, not {BLOCK_SIZE}"));
        }
        if b[72..80] != [0; 8] {
            return Err(corrupt!("reserved header bytes are not zero"));
        }
        let plain_size = u64::from_le_bytes(b[64..72].try_into().unwrap_or_default());
        let expected = sealed_size(plain_size);
        if plain_size == 0 || expected != Some(file_size) {
            return Err(corrupt!(
                "a {plain_size}-byte package sealed takes {} bytes, but the file is {file_size} bytes (truncated or padded?)",
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
            bytes,
        })
    }

    fn blocks(&self) -> u64 {
        self.plain_size.div_ceil(BLOCK_SIZE)
    }

    fn block_len(&self, i: u64) -> usize {
        (self.plain_size - i * BLOCK_SIZE).min(BLOCK_SIZE) as usize
    }

    fn aad(&self, i: u64) -> [u8; HEADER_SIZE + 8] {
        let mut a = [0u8; HEADER_SIZE + 8];
        a[..HEADER_SIZE].copy_from_slice(&self.bytes);
        a[HEADER_SIZE..].copy_from_slice(&i.to_le_bytes());
        a
    }
}

fn sealed_size(plain: u64) -> Option<u64> {
    let blocks = plain.div_ceil(BLOCK_SIZE);
    (HEADER_SIZE as u64)
        .checked_add(plain)?
        .checked_add(blocks.checked_mul(TAG_SIZE)?)
}

fn nonce(i: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&i.to_le_bytes());
    n.into()
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
    crate::Package::open(input)?;
    let mut src = std::fs::File::open(input).at(input)?;
    let plain_size = src.metadata().at(input)?.len();
    let header = EnvelopeHeader::new(key, salt, plain_size);
    let cipher = key.subkey(&salt);
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
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        for i in 0..header.blocks() {
            let len = header.block_len(i);
            src.read_exact(&mut buf[..len]).at(input)?;
            let tag = cipher
                .encrypt_in_place_detached(&nonce(i), &header.aad(i), &mut buf[..len])
                .map_err(|_| corrupt!("encryption failed"))?;
            out.write_all(&buf[..len]).at(&tmp)?;
            out.write_all(tag.as_slice()).at(&tmp)?;
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
    result.map(|_| sealed_size(plain_size).unwrap_or(0))
}

/// Seals `plain` (any bytes) in memory with `key` and `salt`: the bytes
/// [`encrypt_file_with_salt`] writes for a file holding `plain`.
pub fn seal(plain: &[u8], key: &PackageKey, salt: [u8; 32]) -> Vec<u8> {
    let header = EnvelopeHeader::new(key, salt, plain.len() as u64);
    let cipher = key.subkey(&salt);
    let mut out = Vec::with_capacity(sealed_size(plain.len() as u64).unwrap_or(0) as usize);
    out.extend_from_slice(&header.bytes);
    for (i, block) in plain.chunks(BLOCK_SIZE as usize).enumerate() {
        let start = out.len();
        out.extend_from_slice(block);
        // Encryption of an in-memory buffer cannot fail for block-sized input.
        if let Ok(tag) = cipher.encrypt_in_place_detached(
            &nonce(i as u64),
            &header.aad(i as u64),
            &mut out[start..],
        ) {
            out.extend_from_slice(tag.as_slice());
        }
    }
    out
}

/// The package inside an encrypted file, decrypted block by block as it is
/// read. Blocks that do not authenticate are I/O errors saying so.
pub struct EncryptedSource {
    inner: Arc<dyn Source>,
    header: EnvelopeHeader,
    cipher: Aes256Gcm,
    /// Recently decrypted blocks, most recent last.
    cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl fmt::Debug for EncryptedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedSource")
            .field("key", &self.header.key_id)
            .field("plain_size", &self.header.plain_size)
            .finish()
    }
}

impl EncryptedSource {
    /// Opens the encrypted file `inner` with a registered key; without
    /// one, the error names the key it needs.
    pub fn open(inner: Arc<dyn Source>) -> Result<EncryptedSource> {
        let mut b = [0u8; HEADER_SIZE];
        let size = inner.len()?;
        if size < HEADER_SIZE as u64 {
            return Err(corrupt!("encrypted package shorter than its header"));
        }
        inner.read_exact_at(&mut b, 0)?;
        let header = EnvelopeHeader::parse(&b, size)?;
        let key = registered(header.key_id)
            .ok_or_else(|| Error::from(ErrorKind::Encrypted(header.key_id.to_string())))?;
        EncryptedSource::with_key(inner, header, &key)
    }

    /// Opens with `key` whatever key the header names (a wrong key then
    /// fails at the first block).
    pub fn with_key(
        inner: Arc<dyn Source>,
        header: EnvelopeHeader,
        key: &PackageKey,
    ) -> Result<EncryptedSource> {
        let s = EncryptedSource {
            cipher: key.subkey(&header.salt),
            inner,
            header,
            cache: Mutex::new(Vec::with_capacity(CACHE_BLOCKS)),
        };
        // Authenticate the first block now: a wrong key is told at open.
        s.block(0).map_err(Error::from)?;
        Ok(s)
    }

    /// The key this file is sealed with.
    pub fn key_id(&self) -> KeyId {
        self.header.key_id
    }

    fn block(&self, i: u64) -> io::Result<Arc<Vec<u8>>> {
        {
            let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = c.iter().position(|(j, _)| *j == i) {
                let hit = c.remove(at);
                let b = hit.1.clone();
                c.push(hit);
                return Ok(b);
            }
        }
        let len = self.header.block_len(i);
        let mut buf = vec![0u8; len + TAG_SIZE as usize];
        let at = HEADER_SIZE as u64 + i * (BLOCK_SIZE + TAG_SIZE);
        self.inner.read_exact_at(&mut buf, at)?;
        let tag = Tag::clone_from_slice(&buf[len..]);
        buf.truncate(len);
        self.cipher
            .decrypt_in_place_detached(&nonce(i), &self.header.aad(i), &mut buf, &tag)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("encrypted block {i} does not authenticate (a wrong key, or the block was changed or moved)"),
                )
            })?;
        let b = Arc::new(buf);
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_BLOCKS {
            c.remove(0);
        }
        c.push((i, b.clone()));
        Ok(b)
    }
}

impl Source for EncryptedSource {
    fn len(&self) -> io::Result<u64> {
        Ok(self.header.plain_size)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.header.plain_size)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut pos = offset;
        let mut filled = 0usize;
        while pos < end {
            let i = pos / BLOCK_SIZE;
            let block = self.block(i)?;
            let start = (pos - i * BLOCK_SIZE) as usize;
            let n = ((end - pos) as usize).min(block.len() - start);
            buf[filled..filled + n].copy_from_slice(&block[start..start + n]);
            pos += n as u64;
            filled += n;
        }
        Ok(())
    }

    fn will_need(&self, offset: u64, len: u64) {
        let first = offset / BLOCK_SIZE;
        let last = offset.saturating_add(len).div_ceil(BLOCK_SIZE);
        let at = HEADER_SIZE as u64 + first * (BLOCK_SIZE + TAG_SIZE);
        self.inner
            .will_need(at, (last - first) * (BLOCK_SIZE + TAG_SIZE));
    }
}
