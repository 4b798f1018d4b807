//! Text renderings that match Haiku's `package list` byte for byte
//! (times in UTC), plus the repository listing.

use std::fmt::Write;
use std::io;

use exos_hpkg::info::{FLAG_APPROVE_LICENSE, FLAG_SYSTEM_PACKAGE};
use exos_hpkg::{EntryKind, Package, PackageInfo, Repository, Resolvable};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Options of `exos list`, mirroring `package list -a -i -p`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOptions {
    /// Also list each entry's file attributes.
    pub attributes: bool,
    /// Only the package attributes.
    pub info_only: bool,
    /// Only entry paths, one per line.
    pub paths_only: bool,
    /// Escape control characters and backslashes in names (`ls -b`): on a
    /// terminal, where a name could move the cursor or forge a line.
    /// Otherwise names are written as they are, byte for byte as Haiku's
    /// `package list` writes them.
    pub escape_names: bool,
}

/// Streams a listing to standard output; a closed pipe is success.
pub fn stream(f: impl FnOnce(&mut dyn io::Write) -> io::Result<()>) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut out = io::BufWriter::new(io::stdout().lock());
    match f(&mut out).and_then(|_| io::Write::flush(&mut out)) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// `exos list --json` of a package: its attributes and every entry,
/// serialized as the TOC is walked (never built in memory).
#[derive(serde::Serialize)]
pub struct PackageListing<'a> {
    pub info: &'a PackageInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Entries<'a>>,
}

impl<'a> PackageListing<'a> {
    pub fn new(pkg: &'a Package, opts: ListOptions) -> Self {
        PackageListing {
            info: pkg.info(),
            entries: (!opts.info_only).then_some(Entries {
                pkg,
                attributes: opts.attributes,
            }),
        }
    }
}

pub struct Entries<'a> {
    pkg: &'a Package,
    attributes: bool,
}

/// One entry of a listing.
#[derive(serde::Serialize)]
struct EntryView<'a> {
    /// The path; `ls -b` style (see [`escape_bytes`]) when `escaped`.
    path: String,
    /// Set when the path or the symlink target is not UTF-8: both are then
    /// written escaped, `\ooo` for each byte that is not UTF-8 (JSON
    /// strings cannot hold them) and `\\` for a backslash.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    escaped: bool,
    kind: &'static str,
    size: u64,
    /// Seconds since the epoch.
    mtime: u64,
    mtime_nanos: u32,
    /// Permission bits, e.g. 493 (0o755).
    permissions: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    symlink_target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Vec<AttributeView<'a>>>,
}

#[derive(serde::Serialize)]
struct AttributeView<'a> {
    name: &'a str,
    /// Haiku type code, e.g. 1296649555 ('MIMS').
    type_code: u32,
    size: u64,
}

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for (_, e) in self.pkg.toc().walk() {
            let path = e.path_bytes();
            let target = e.symlink_target_bytes();
            let escaped = std::str::from_utf8(&path).is_err()
                || target.is_some_and(|t| std::str::from_utf8(t).is_err());
            let text = |b: &[u8]| match escaped {
                true => escape_bytes(b).into_owned(),
                false => String::from_utf8_lossy(b).into_owned(),
            };
            seq.serialize_element(&EntryView {
                path: text(&path),
                escaped,
                kind: match e.kind() {
                    EntryKind::File => "file",
                    EntryKind::Directory => "directory",
                    EntryKind::Symlink => "symlink",
                },
                size: e.size(),
                mtime: e.mtime().secs,
                mtime_nanos: e.mtime().nanos,
                permissions: e.permissions(),
                symlink_target: target.map(text),
                attributes: self.attributes.then(|| {
                    e.attributes()
                        .map(|a| AttributeView {
                            name: a.name,
                            type_code: a.type_code,
                            size: a.data.size(),
                        })
                        .collect()
                }),
            })?;
        }
        seq.end()
    }
}

/// `exos list --json` of a repository: its info and every package,
/// decoded one at a time as they are written.
#[derive(serde::Serialize)]
pub struct RepositoryListing<'a> {
    pub info: &'a exos_hpkg::RepositoryInfo,
    pub packages: RepositoryPackages<'a>,
}

impl<'a> RepositoryListing<'a> {
    pub fn new(repo: &'a Repository) -> Self {
        RepositoryListing {
            info: &repo.info,
            packages: RepositoryPackages(repo),
        }
    }
}

pub struct RepositoryPackages<'a>(&'a Repository);

impl Serialize for RepositoryPackages<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for p in self.0.packages() {
            seq.serialize_element(&p)?;
        }
        seq.end()
    }
}

/// Writes the listing of a package to `out` as it goes (a package may list
/// hundreds of thousands of entries).
pub fn render_package(pkg: &Package, opts: ListOptions, out: &mut dyn io::Write) -> io::Result<()> {
    if opts.paths_only {
        for (_, e) in pkg.toc().walk() {
            out.write_all(&opts.shown(&e.path_bytes()))?;
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    let mut info = String::new();
    render_info(&mut info, pkg.info());
    out.write_all(info.as_bytes())?;
    if opts.info_only {
        return Ok(());
    }
    for (depth, e) in pkg.toc().walk() {
        let indent = depth * 2;
        // Haiku pads with printf("%-*s"): by bytes, not characters.
        let name = opts.shown(e.name_bytes());
        let pad = 32usize.saturating_sub(indent).saturating_sub(name.len());
        write!(out, "{:indent$}", "")?;
        out.write_all(&name)?;
        write!(out, "{:pad$}  {:>8}", "", e.size())?;
        write!(out, "  {}", format_utc(e.mtime().secs))?;
        let mode = e.mode();
        let mut line = Vec::from(match e.kind() {
            EntryKind::File => "  -",
            EntryKind::Directory => "  d",
            EntryKind::Symlink => "  l",
        });
        line.extend_from_slice(permission_triplet(mode >> 6, mode & 0o4000 != 0).as_bytes());
        line.extend_from_slice(permission_triplet(mode >> 3, mode & 0o2000 != 0).as_bytes());
        // Haiku never shows the sticky bit.
        line.extend_from_slice(permission_triplet(mode, false).as_bytes());
        if let Some(t) = e.symlink_target_bytes() {
            line.extend_from_slice(b"  -> ");
            line.extend_from_slice(&opts.shown(t));
        }
        line.push(b'\n');
        out.write_all(&line)?;
        if opts.attributes {
            for a in e.attributes() {
                let indent = (depth + 1) * 2;
                let name = opts.shown(a.name.as_bytes());
                let pad = 31usize.saturating_sub(indent).saturating_sub(name.len());
                write!(out, "{:indent$}<", "")?;
                out.write_all(&name)?;
                write!(out, "{:pad$}  {:>8}", "", a.data.size())?;
                let t = a.type_code.to_be_bytes();
                if t.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
                    writeln!(out, "  '{}'>", String::from_utf8_lossy(&t))?;
                } else if a.type_code == 0 {
                    // C's %#x prints 0 without a prefix.
                    writeln!(out, "  0>")?;
                } else {
                    writeln!(out, "  {:#x}>", a.type_code)?;
                }
            }
        }
    }
    Ok(())
}

impl ListOptions {
    /// `name` as this listing writes it: its bytes as stored (as Haiku
    /// writes them), or escaped when asked.
    fn shown<'n>(&self, name: &'n [u8]) -> std::borrow::Cow<'n, [u8]> {
        use std::borrow::Cow;
        if self.escape_names {
            match escape_bytes(name) {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            }
        } else {
            Cow::Borrowed(name)
        }
    }
}

pub use exos_hpkg::toc::{escape, escape_bytes};

fn permission_triplet(bits: u32, special: bool) -> String {
    let mut s = String::with_capacity(3);
    s.push(if bits & 4 != 0 { 'r' } else { '-' });
    s.push(if bits & 2 != 0 { 'w' } else { '-' });
    s.push(match (bits & 1 != 0, special) {
        (true, true) => 's',
        (true, false) => 'x',
        _ => '-',
    });
    s
}

fn resolvable_line(out: &mut String, key: &str, r: &Resolvable) {
    let _ = writeln!(out, "\t{key}: {r}");
}

/// The `package-attributes:` block of `package list`.
pub fn render_info(out: &mut String, i: &PackageInfo) {
    out.push_str("package-attributes:\n");
    let _ = writeln!(out, "\tname: {}", i.name);
    let _ = writeln!(out, "\tsummary: {}", i.summary);
    let _ = writeln!(out, "\tdescription: {}", i.description);
    let _ = writeln!(out, "\tvendor: {}", i.vendor);
    let _ = writeln!(out, "\tpackager: {}", i.packager);
    if !i.base_package.is_empty() {
        let _ = writeln!(out, "\tbase package: {}", i.base_package);
    }
    if i.flags != 0 {
        out.push_str("\tflags:\n");
        if i.flags & FLAG_APPROVE_LICENSE != 0 {
            out.push_str("\t\tapprove_license\n");
        }
        if i.flags & FLAG_SYSTEM_PACKAGE != 0 {
            out.push_str("\t\tsystem_package\n");
        }
    }
    let _ = writeln!(out, "\tarchitecture: {}", i.architecture);
    let _ = writeln!(out, "\tversion: {}", i.version);
    for c in &i.copyrights {
        let _ = writeln!(out, "\tcopyright: {c}");
    }
    for c in &i.licenses {
        let _ = writeln!(out, "\tlicense: {c}");
    }
    for c in &i.urls {
        let _ = writeln!(out, "\tURL: {c}");
    }
    for c in &i.source_urls {
        let _ = writeln!(out, "\tsource URL: {c}");
    }
    for p in &i.provides {
        let _ = write!(out, "\tprovides: {}", p.name);
        if let Some(v) = &p.version {
            let _ = write!(out, " = {v}");
        }
        if let Some(c) = &p.compatible {
            let _ = write!(out, " (compatible >= {c})");
        }
        out.push('\n');
    }
    for r in &i.requires {
        resolvable_line(out, "requires", r);
    }
    for r in &i.supplements {
        resolvable_line(out, "supplements", r);
    }
    for r in &i.conflicts {
        resolvable_line(out, "conflicts", r);
    }
    for r in &i.freshens {
        resolvable_line(out, "freshens", r);
    }
    for r in &i.replaces {
        let _ = writeln!(out, "\treplaces: {r}");
    }
    for f in &i.global_writable_files {
        let _ = write!(out, "\tglobal writable file: {}", f.path);
        if f.is_directory {
            out.push_str(" directory");
        }
        if let Some(t) = f.update_type {
            let _ = write!(out, " {}", t.name());
        }
        out.push('\n');
    }
    for f in &i.user_settings_files {
        let _ = write!(out, "\tuser settings file: {}", f.path);
        if let Some(t) = &f.template {
            let _ = write!(out, " template {t}");
        } else if f.is_directory {
            out.push_str(" directory");
        }
        out.push('\n');
    }
    for u in &i.users {
        let _ = writeln!(out, "\tuser: {}", u.name);
        if !u.real_name.is_empty() {
            let _ = writeln!(out, "\t\treal name: {}", u.real_name);
        }
        if !u.home.is_empty() {
            let _ = writeln!(out, "\t\thome:      {}", u.home);
        }
        if !u.shell.is_empty() {
            let _ = writeln!(out, "\t\tshell:     {}", u.shell);
        }
        for g in &u.groups {
            let _ = writeln!(out, "\t\tgroup:     {g}");
        }
    }
    for g in &i.groups {
        let _ = writeln!(out, "\tgroup: {g}");
    }
    for s in &i.post_install_scripts {
        let _ = writeln!(out, "\tpost-install script: {s}");
    }
    for s in &i.pre_uninstall_scripts {
        let _ = writeln!(out, "\tpre-uninstall script: {s}");
    }
    if !i.install_path.is_empty() {
        let _ = writeln!(out, "\tinstall path: {}", i.install_path);
    }
    if !i.checksum.is_empty() {
        let _ = writeln!(out, "\tchecksum: {}", i.checksum);
    }
}

/// One line per package: name, version, architecture, SHA-256.
pub fn render_repository(repo: &Repository, out: &mut dyn io::Write) -> io::Result<()> {
    for p in repo.packages() {
        writeln!(
            out,
            "{:<32} {:<24} {:<9} {}",
            escape(&p.name),
            p.version.to_string(),
            p.architecture.name(),
            if p.checksum.is_empty() {
                "-"
            } else {
                &p.checksum
            }
        )?;
    }
    Ok(())
}

/// `YYYY-MM-DD hh:mm:ss` in UTC.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_like_ls_b() {
        assert_eq!(escape("plain name é"), "plain name é");
        assert_eq!(escape("new\nline"), "new\\nline");
        assert_eq!(escape("esc\u{1b}[31m"), "esc\\033[31m");
        assert_eq!(escape("tab\there"), "tab\\there");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("del\u{7f}"), "del\\177");
        assert_eq!(escape("c1\u{85}"), "c1\\302\\205");
        // Bytes that are not UTF-8, alone and amid characters.
        assert_eq!(escape_bytes(b"caf\xe9"), "caf\\351");
        assert_eq!(escape_bytes(b"\xff\xfe\xc3\xa9\\"), "\\377\\376\u{e9}\\\\");
        assert_eq!(escape_bytes(b"plain"), "plain");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_704_067_200), "2024-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400 + 3661), "2000-02-29 01:01:01");
    }
}
