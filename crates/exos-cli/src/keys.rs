//! Package keys given with `--key`: plain key files, or key files wrapped
//! with [age](https://age-encryption.org) — unwrapped by running `age
//! --decrypt`, so the key is never written to disk in clear — and handed
//! to the mount daemon through an inherited pipe, not a path it reads
//! again.
//!
//! Used by `exos` and `exos-mountd`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use exos_hpkg::crypt::{KeyRing, PackageKey};

/// `--key` and `--age-identity`, for the commands that open packages.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KeyArgs {
    /// A package encryption key (`exos key generate NAME --encryption`) for
    /// encrypted packages; repeatable. A key file wrapped with age is
    /// unwrapped with `age --decrypt`.
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// An age identity file for unwrapping age-wrapped --key files;
    /// repeatable. Without one, age asks for the file's passphrase.
    #[arg(long = "age-identity", value_name = "FILE", requires = "keys")]
    pub age_identities: Vec<PathBuf>,
}

impl KeyArgs {
    /// The keys, read (and unwrapped) once.
    pub fn load(&self) -> Result<Vec<PackageKey>> {
        self.keys
            .iter()
            .map(|k| load(k, &self.age_identities))
            .collect()
    }

    /// The keys as a ring for opening packages.
    pub fn ring(&self) -> Result<KeyRing> {
        Ok(KeyRing::new(self.load()?))
    }
}

/// How much of a key file, age's output or the daemon's pipe is read: a
/// key is 85 bytes; an age-wrapped one a few hundred.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// At most this many keys go to a daemon (its pipe holds them all before
/// it starts).
const MAX_KEYS: usize = 256;

/// Whether a file starting with `head` is age-encrypted (binary or armored).
pub fn is_age(head: &[u8]) -> bool {
    head.starts_with(b"age-encryption.org/v1\n")
        || head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

/// Reads the package key in `path`; an age-wrapped one is unwrapped with
/// `age --decrypt` and the `identities` (none: age asks for the file's
/// passphrase on the terminal).
pub fn load(path: &Path, identities: &[PathBuf]) -> Result<PackageKey> {
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE)
        .read_to_end(&mut bytes)
        .with_context(|| path.display().to_string())?;
    if !is_age(&bytes) {
        return Ok(PackageKey::parse(&bytes, path)?);
    }
    // What age writes is no longer than the file; a key file is small.
    if bytes.len() as u64 >= MAX_KEY_FILE {
        bail!(
            "{}: larger than a wrapped key can be ({MAX_KEY_FILE} bytes)",
            path.display()
        );
    }
    let mut age = Command::new("age");
    age.arg("--decrypt");
    for id in identities {
        age.arg("--identity").arg(id);
    }
    let child = age
        .arg("--")
        .arg(path)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "{}: wrapped with age, and `age` is not installed (apt install age)",
                    path.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("{}: running age", path.display()))
            }
        })?;
    let output = child.wait_with_output()?;
    let (status, plain, said) = (output.status, output.stdout, output.stderr);
    if !status.success() {
        let said = String::from_utf8_lossy(&said);
        bail!(
            "{}: age could not unwrap the key ({}){}",
            path.display(),
            said.trim(),
            if identities.is_empty() {
                "; give the identity it is wrapped for with --age-identity FILE"
            } else {
                ""
            }
        );
    }
    Ok(PackageKey::parse(&plain, path)?)
}

/// A pipe holding `keys` (as key files, one after another), its read end
/// inheritable: `exos-mountd --keys-fd N` reads them from it.
pub fn to_daemon(keys: &[PackageKey]) -> Result<OwnedFd> {
    if keys.len() > MAX_KEYS {
        bail!("more than {MAX_KEYS} --key files");
    }
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut w = std::fs::File::from(write);
    for k in keys {
        w.write_all(k.render().as_bytes())?;
    }
    drop(w);
    rustix::io::fcntl_setfd(&read, rustix::io::FdFlags::empty())?;
    Ok(read)
}

/// The argument that tells the daemon where its keys are.
pub fn daemon_arg(fd: &OwnedFd) -> [String; 2] {
    ["--keys-fd".into(), fd.as_raw_fd().to_string()]
}

/// The keys `exos mount` left in inherited descriptor `fd`: key files one
/// after another, each a header line and a key line.
pub fn from_parent(fd: i32) -> Result<Vec<PackageKey>> {
    let what = PathBuf::from(format!("--keys-fd {fd}"));
    let pipe = std::fs::File::open(format!("/proc/self/fd/{fd}"))
        .with_context(|| what.display().to_string())?;
    let mut text = Vec::new();
    pipe.take(MAX_KEY_FILE)
        .read_to_end(&mut text)
        .with_context(|| what.display().to_string())?;
    let text = String::from_utf8(text).context("--keys-fd: not UTF-8")?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() % 2 != 0 || lines.len() / 2 > MAX_KEYS {
        bail!("--keys-fd {fd}: not a list of key files");
    }
    lines
        .chunks(2)
        .map(|pair| {
            Ok(PackageKey::parse(
                format!("{}\n{}\n", pair[0], pair[1]).as_bytes(),
                &what,
            )?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe holding `bytes`, read end returned (inheritable, like the
    /// one `exos mount` makes).
    fn pipe_with(bytes: &[u8]) -> OwnedFd {
        let (read, write) = rustix::pipe::pipe().unwrap();
        let mut w = std::fs::File::from(write);
        w.write_all(bytes).unwrap();
        read
    }

    #[test]
    fn keys_cross_the_pipe_and_crafted_pipes_are_refused() {
        let keys = [
            PackageKey::generate().unwrap(),
            PackageKey::generate().unwrap(),
        ];
        let fd = to_daemon(&keys).unwrap();
        let back = from_parent(fd.as_raw_fd()).unwrap();
        assert_eq!(
            back.iter().map(PackageKey::id).collect::<Vec<_>>(),
            keys.iter().map(PackageKey::id).collect::<Vec<_>>()
        );
        let one = keys[0].render();
        for (bytes, rule) in [
            (
                format!("{one}exos-package-key-v1\n"),
                "not a list of key files",
            ),
            ("exos-package-key-v1\nzz\n".to_string(), "64 hex digits"),
            ("\u{ff}".to_string(), "not a list"),
            (one.repeat(MAX_KEYS + 1), "not a list of key files"),
        ] {
            let fd = pipe_with(bytes.as_bytes());
            let e = format!("{:#}", from_parent(fd.as_raw_fd()).unwrap_err());
            assert!(
                e.contains(rule) && e.contains("--keys-fd"),
                "{bytes:?}: {e}"
            );
        }
        let e = format!("{:#}", from_parent(9999).unwrap_err());
        assert!(e.contains("--keys-fd 9999"), "{e}");
        assert!(is_age(b"age-encryption.org/v1\n-> X25519"));
        assert!(is_age(b"-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(!is_age(keys[0].render().as_bytes()));
    }
}
