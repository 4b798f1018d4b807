//! What a program needs the kernel to load first: an ELF file's
//! interpreter (`PT_INTERP`, the dynamic loader such as
//! `/lib64/ld-linux-x86-64.so.2`) or a script's `#!` interpreter.
//! Imported Debian packages name such paths under `/bin`, `/lib*` and
//! `/sbin`, which a merged-/usr tree reaches only through top-level links;
//! `exos import-deb` makes those packages depend on the links, and `exos
//! run` says which loader is missing when a program cannot start.
//!
//! One bounded reader ([`interpreter`]): 64 header bytes, at most 64 KiB
//! of program headers, at most 4 KiB of interpreter path; never panics.

use std::io;

/// Longest interpreter path read.
pub const MAX_PATH: usize = 4096;
/// Most program-header bytes read.
const MAX_HEADERS: usize = 64 << 10;
/// `PT_INTERP`.
const PT_INTERP: u32 = 3;

/// The interpreter the file read by `read_at` (offset, buffer: fill it
/// whole or fail) asks for: the ELF loader of a dynamically linked
/// program, or a script's `#!` program. `None` for anything else, and for
/// a file that ends or lies where the answer should be.
pub fn interpreter(read_at: &dyn Fn(u64, &mut [u8]) -> io::Result<()>) -> Option<String> {
    let mut head = [0u8; 64];
    // A short file may still be a short script.
    let mut got = 0;
    for n in [64usize, 16, 2] {
        if read_at(0, &mut head[..n]).is_ok() {
            got = n;
            break;
        }
    }
    if got >= 2 && head.starts_with(b"#!") {
        return shebang(read_at);
    }
    if got < 64 || !head.starts_with(b"\x7fELF") {
        return None;
    }
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |b: &[u8], o: usize| -> Option<u64> {
        let x: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(x)
        } else {
            u16::from_be_bytes(x)
        } as u64)
    };
    let u32_at = |b: &[u8], o: usize| -> Option<u64> {
        let x: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        } as u64)
    };
    let u64_at = |b: &[u8], o: usize| -> Option<u64> {
        let x: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(x)
        } else {
            u64::from_be_bytes(x)
        })
    };
    // (phoff, phentsize, phnum), and where a header's offset and size are.
    let (phoff, phentsize, phnum, wide) = match head[4] {
        1 => (
            u32_at(&head, 28)?,
            u16_at(&head, 42)?,
            u16_at(&head, 44)?,
            false,
        ),
        2 => (
            u64_at(&head, 32)?,
            u16_at(&head, 54)?,
            u16_at(&head, 56)?,
            true,
        ),
        _ => return None,
    };
    let min_entry = if wide { 56 } else { 32 };
    let table = phentsize.checked_mul(phnum)? as usize;
    if phentsize < min_entry || table == 0 || table > MAX_HEADERS {
        return None;
    }
    let mut headers = vec![0u8; table];
    read_at(phoff, &mut headers).ok()?;
    for entry in headers.chunks_exact(phentsize as usize) {
        if u32_at(entry, 0)? != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) = if wide {
            (u64_at(entry, 8)?, u64_at(entry, 32)?)
        } else {
            (u32_at(entry, 4)?, u32_at(entry, 16)?)
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s > 0 && s <= MAX_PATH)?;
        let mut path = vec![0u8; size];
        read_at(offset, &mut path).ok()?;
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        return String::from_utf8(path[..end].to_vec())
            .ok()
            .filter(|p| !p.is_empty());
    }
    None
}

/// The program of a `#!` line (its first word).
fn shebang(read_at: &dyn Fn(u64, &mut [u8]) -> io::Result<()>) -> Option<String> {
    // The kernel reads at most 256 bytes of it.
    let mut line = Vec::new();
    for n in [256usize, 128, 64, 32, 16, 8, 4] {
        let mut buf = vec![0u8; n];
        if read_at(0, &mut buf).is_ok() {
            line = buf;
            break;
        }
    }
    let line = line.get(2..)?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let text = std::str::from_utf8(&line[..end]).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// The interpreter of the file at `path` (see [`interpreter`]).
pub fn interpreter_of(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).ok()?;
    interpreter(&|offset, buf| f.read_exact_at(buf, offset))
}

/// Whether `path` (absolute) lies under a top-level directory a
/// merged-/usr system links into `/usr` (`/bin`, `/sbin`, `/lib`,
/// `/lib32`, `/lib64`, `/libx32`).
pub fn under_merged_usr(path: &str) -> bool {
    let top = path
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    matches!(top, "bin" | "sbin" | "lib" | "lib32" | "lib64" | "libx32")
        && path.len() > top.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(bytes: &[u8]) -> Option<String> {
        interpreter(&|offset, buf| {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let end = start
                .checked_add(buf.len())
                .ok_or_else(|| io::Error::other("overflow"))?;
            let src = bytes
                .get(start..end)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        })
    }

    /// A 64-bit little-endian ELF with one PT_INTERP naming `interp`.
    fn elf64(interp: &str) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let at = f.len() as u64;
        f[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
        f[64 + 8..64 + 16].copy_from_slice(&at.to_le_bytes());
        f[64 + 32..64 + 40].copy_from_slice(&(interp.len() as u64 + 1).to_le_bytes());
        f.extend_from_slice(interp.as_bytes());
        f.push(0);
        f
    }

    #[test]
    fn programs_and_scripts_name_their_interpreter() {
        let elf = elf64("/lib64/ld-linux-x86-64.so.2");
        assert_eq!(of(&elf).as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(of(b"#!/bin/sh -e\necho hi\n").as_deref(), Some("/bin/sh"));
        assert_eq!(
            of(b"#!/usr/bin/env python3\n").as_deref(),
            Some("/usr/bin/env")
        );
        assert_eq!(of(b"plain text"), None);
        assert_eq!(of(b""), None);
        // Hostile: the table past the end, a huge count, a huge path.
        let mut bad = elf.clone();
        bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(of(&bad), None);
        let mut bad = elf.clone();
        bad[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(of(&bad), None);
        let mut bad = elf;
        bad[64 + 32..64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(of(&bad), None);
    }

    #[test]
    fn this_test_program_names_its_loader() {
        let loader = interpreter_of(std::path::Path::new("/proc/self/exe")).unwrap();
        assert!(under_merged_usr(&loader), "{loader}");
    }

    #[test]
    fn merged_usr_paths() {
        assert!(under_merged_usr("/lib64/ld-linux-x86-64.so.2"));
        assert!(under_merged_usr("/bin/sh"));
        assert!(!under_merged_usr("/usr/bin/env"));
        assert!(!under_merged_usr("/lib"));
        assert!(!under_merged_usr("/library/x"));
    }
}
