//! One `.deb` → one EXOS package.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use exos_hpkg::{build_from_dir, BuildOptions, Compression};
use exos_manifest::Manifest;

use crate::control::{alternatives, exos_name, relations, Paragraph, Relation, MAX_CONTROL};
use crate::version::DebVersion;
use crate::DebError;

/// Top-level directories merged into `/usr` (Debian 12 is merged-/usr: the
/// top-level names are links into `usr`).
pub const MERGED_INTO_USR: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// What importing one package did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// The `.deb` read.
    pub source: PathBuf,
    /// The `.hpkg` written.
    pub output: PathBuf,
    /// The EXOS package name (Debian's, `-` written `_`: Haiku names have no `-`).
    pub name: String,
    /// The package name as Debian gives it.
    pub debian_name: String,
    /// The EXOS version (the order-preserving mapping of Debian's).
    pub version: String,
    /// The version as Debian gives it.
    pub debian_version: String,
    /// `Essential: yes` in the control file.
    pub essential: bool,
    /// Regular files unpacked (hard links included).
    pub files: u64,
    /// Links made from literal `update-alternatives --install` calls.
    pub alternatives: Vec<String>,
    /// Entries dropped: device files, FIFOs (a package cannot serve them).
    pub skipped: Vec<String>,
    /// Top-level directories moved into `usr`.
    pub moved_to_usr: Vec<String>,
}

/// Imports `deb` into `out_dir` (as `NAME_VERSION_ARCH.hpkg`, Debian's
/// file name with `:` as `%3a`), staging its files under `out_dir`.
pub fn import(deb: &Path, out_dir: &Path) -> Result<Imported, DebError> {
    import_with(deb, out_dir, &default_build_options())
}

/// How imported packages are compressed unless told otherwise: zstd, which
/// decompresses several times faster than zlib (programs start faster from
/// a mount); their contents are Linux files Haiku never runs, so zlib's
/// wider compatibility with Haiku's older tools buys nothing.
pub fn default_build_options() -> BuildOptions {
    BuildOptions {
        level: DEFAULT_ZSTD_LEVEL,
        ..BuildOptions::with_compression(Compression::Zstd)
    }
}

/// zstd's level for imports: on the demo's 62 Debian packages it is faster
/// to make and smaller than zlib 9 (3.0 s and 50.8 MB against 3.7 s and
/// 52.0 MB); 19, `exos build`'s zstd default, takes 15.8 s for 47.8 MB.
/// Decompression speed hardly depends on the level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 9;

/// How much a `.deb` may unpack to: a small archive can hold a file of
/// gigabytes of zeros, which would cost minutes of CPU and the disk. Real
/// packages stay far below the defaults; `exos import-deb --max-file-mib`
/// and `--max-package-mib` raise them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one file of the package may hold.
    pub max_file: u64,
    /// Bytes all of the data tarball may unpack to.
    pub max_package: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file: 1 << 30,
            max_package: 4 << 30,
        }
    }
}

/// A reader that fails, naming the limit, once more than `left` bytes
/// came through it.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => Err(io::Error::other(crate::OverLimit::Package {
                mib: self.limit >> 20,
            })),
        }
    }
}

/// [`import`], building the package with `options` (compression, level).
pub fn import_with(
    deb: &Path,
    out_dir: &Path,
    options: &BuildOptions,
) -> Result<Imported, DebError> {
    import_limited(deb, out_dir, options, Limits::default())
}

/// [`import_with`], within `limits`.
pub fn import_limited(
    deb: &Path,
    out_dir: &Path,
    options: &BuildOptions,
    limits: Limits,
) -> Result<Imported, DebError> {
    let file = deb.display().to_string();
    let err = |e: io::Error| DebError::Io(file.clone(), e);
    let mut archive = ar::Archive::new(fs::File::open(deb).map_err(err)?);
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(out_dir)
        .map_err(err)?;
    let tree = staging.path().join("tree");
    fs::create_dir(&tree).map_err(err)?;
    let mut control: Option<(String, Option<String>)> = None;
    let mut extracted: Option<Extracted> = None;
    let mut seen_binary = false;
    while let Some(entry) = archive.next_entry() {
        let entry =
            entry.map_err(|e| DebError::Format(file.clone(), format!("ar archive: {e}")))?;
        let id = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let id = id.trim_end_matches('/').to_string();
        if id == "debian-binary" {
            let mut v = String::new();
            entry.take(64).read_to_string(&mut v).map_err(err)?;
            if !v.starts_with("2.") {
                return Err(DebError::Format(
                    file,
                    format!("debian-binary says {:?}, not 2.x", v.trim()),
                ));
            }
            seen_binary = true;
        } else if let Some(kind) = id.strip_prefix("control.tar") {
            let reader =
                decompressor(kind, entry).map_err(|e| DebError::Format(file.clone(), e))?;
            control = Some(read_control(reader, &file)?);
        } else if let Some(kind) = id.strip_prefix("data.tar") {
            let reader =
                decompressor(kind, entry).map_err(|e| DebError::Format(file.clone(), e))?;
            // Headers and padding count too: the whole stream is bounded.
            let slack = 64 << 20;
            let reader = Capped {
                inner: reader,
                left: limits.max_package.saturating_add(slack),
                limit: limits.max_package,
            };
            extracted = Some(extract(reader, &tree, &file, limits)?);
        }
    }
    let (Some((control_text, postinst)), Some(mut extracted), true) =
        (control, extracted, seen_binary)
    else {
        return Err(DebError::Format(
            file,
            "not a binary package (needs debian-binary, control.tar.* and data.tar.*)".into(),
        ));
    };
    let control_file = format!("{file}: control");
    let p = Paragraph::parse(&control_text, &control_file)
        .map_err(|e| DebError::Format(file.clone(), e))?;
    let fmt = |e: String| DebError::Format(file.clone(), e);
    let debian_name = p
        .require("package", &control_file)
        .map_err(fmt)?
        .to_string();
    let debian_version =
        DebVersion::parse(p.require("version", &control_file).map_err(fmt)?).map_err(fmt)?;
    let architecture = match p.get("architecture").unwrap_or("all") {
        "all" => "any",
        "amd64" => "x86_64",
        "arm64" => "arm64",
        "riscv64" => "riscv64",
        "i386" => "x86",
        other => {
            return Err(fmt(format!(
                "architecture {other:?} has no EXOS equivalent"
            )))
        }
    };
    let name = exos_name(&debian_name);
    // Alternatives: links into the package itself, where nothing is.
    let mut made_links = Vec::new();
    for alt in postinst.as_deref().map(alternatives).unwrap_or_default() {
        for (link, target) in &alt.links {
            let inside = usr_merged(Path::new(link.trim_start_matches('/')));
            let Some(inside) = inside else { continue };
            let at = tree.join(&inside);
            if at.symlink_metadata().is_ok() || !extracted.dirs.contains(&parent_of(&inside)) {
                continue;
            }
            std::os::unix::fs::symlink(target, &at).map_err(err)?;
            // Inside a layer the newer entry wins: a link's time is its
            // priority, so the highest-priority alternative is the one served.
            let when = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: alt.priority.max(0),
                    tv_nsec: 0,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: alt.priority.max(0),
                    tv_nsec: 0,
                },
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &at,
                &when,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err(e.into()))?;
            made_links.push(format!(
                "/{} -> {target} ({}, priority {})",
                inside.display(),
                alt.name,
                alt.priority
            ));
        }
    }
    let manifest = manifest_json(
        &p,
        &name,
        &debian_version,
        architecture,
        &control_file,
        !extracted.loaders.is_empty(),
    )?;
    let manifest = Manifest::parse(manifest.as_bytes(), &control_file)
        .map_err(|e| DebError::Format(file.clone(), e.to_string()))?;
    let mut json = serde_json::to_vec_pretty(&manifest.to_json()).unwrap_or_default();
    json.push(b'\n');
    fs::write(tree.join(exos_manifest::MANIFEST_FILE), json).map_err(err)?;
    let file_name = format!(
        "{}_{}_{}.hpkg",
        debian_name,
        debian_version.to_string().replace(':', "%3a"),
        p.get("architecture").unwrap_or("all")
    );
    let output = out_dir.join(file_name);
    build_from_dir(
        &tree,
        &output,
        &manifest.to_package_info(),
        *options,
        &mut |_| {},
        &mut |_| {},
    )
    .map_err(|e| DebError::Format(file.clone(), e.to_string()))?;
    extracted.moved.sort();
    extracted.moved.dedup();
    Ok(Imported {
        source: deb.to_path_buf(),
        output,
        version: manifest.version.to_string(),
        name,
        debian_name,
        debian_version: debian_version.to_string(),
        essential: manifest.essential,
        files: extracted.files,
        alternatives: made_links,
        skipped: extracted.skipped,
        moved_to_usr: extracted.moved,
    })
}

/// The name of the package holding the merged-/usr links; imported
/// packages whose programs need loaders under `/lib*`, `/bin` or `/sbin`
/// require it.
pub const USR_LINKS: &str = "usr_links";

/// The package with the top-level links of a merged-/usr system
/// (`bin -> usr/bin`, …): every imported userland needs exactly one.
pub fn usr_links_package(out_dir: &Path) -> Result<PathBuf, DebError> {
    let err = |e: io::Error| DebError::Io(out_dir.display().to_string(), e);
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(out_dir)
        .map_err(err)?;
    let tree = staging.path();
    for name in ["bin", "sbin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{name}"), tree.join(name)).map_err(err)?;
    }
    let json = r#"{"name": "usr_links", "version": "1", "summary": "The top-level links of a merged-/usr system (bin, sbin, lib, lib64 into usr)", "license": "MIT", "copyright": "2026 The EXOS authors", "essential": true, "provides": ["usrmerge = 1"]}"#;
    let manifest = Manifest::parse(json.as_bytes(), "usr_links")
        .map_err(|e| DebError::Format("usr_links".into(), e.to_string()))?;
    fs::write(tree.join(exos_manifest::MANIFEST_FILE), json).map_err(err)?;
    let output = out_dir.join("usr_links_1_all.hpkg");
    build_from_dir(
        tree,
        &output,
        &manifest.to_package_info(),
        BuildOptions::default(),
        &mut |_| {},
        &mut |_| {},
    )
    .map_err(|e| DebError::Format("usr_links".into(), e.to_string()))?;
    Ok(output)
}

fn manifest_json(
    p: &Paragraph,
    name: &str,
    version: &DebVersion,
    architecture: &str,
    file: &str,
    needs_links: bool,
) -> Result<String, DebError> {
    let fmt = |e: String| DebError::Format(file.to_string(), e);
    let dep = |r: &Relation| -> serde_json::Value {
        match &r.version {
            None => serde_json::json!({"api": exos_name(&r.package)}),
            Some((op, v)) => serde_json::json!({
                "api": exos_name(&r.package),
                "version": format!("{}{}", op.exos(), v.to_haiku()),
            }),
        }
    };
    let mut requires = Vec::new();
    for field in ["pre-depends", "depends"] {
        for group in relations(field, p.get(field).unwrap_or("")).map_err(fmt)? {
            requires.push(if group.len() == 1 {
                dep(&group[0])
            } else {
                serde_json::json!({"any": group.iter().map(dep).collect::<Vec<_>>()})
            });
        }
    }
    // Its programs name loaders under /lib64, /bin, …: the merged-/usr
    // links make those paths (and nothing else provides them).
    if needs_links {
        requires.push(serde_json::json!({"api": USR_LINKS}));
    }
    let mut conflicts = Vec::new();
    for field in ["conflicts", "breaks"] {
        for group in relations(field, p.get(field).unwrap_or("")).map_err(fmt)? {
            // A package never conflicts with itself (Debian's Conflicts +
            // Provides + Replaces idiom names the package's own name).
            conflicts.extend(
                group
                    .iter()
                    .filter(|r| exos_name(&r.package) != name)
                    .map(dep),
            );
        }
    }
    let mut provides = Vec::new();
    for group in relations("provides", p.get("provides").unwrap_or("")).map_err(fmt)? {
        for r in group {
            match &r.version {
                Some((crate::control::Op::Eq, v)) => {
                    provides.push(format!("{} = {}", exos_name(&r.package), v.to_haiku()))
                }
                _ => provides.push(exos_name(&r.package)),
            }
        }
    }
    let description = p.get("description").unwrap_or("");
    let (summary, long) = description.split_once('\n').unwrap_or((description, ""));
    let maintainer = p.get("maintainer").unwrap_or("Debian");
    let value = serde_json::json!({
        "name": name,
        "version": version.to_haiku().to_string(),
        "original_version": version.to_string(),
        "summary": if summary.is_empty() { name } else { summary },
        "description": if long.is_empty() { summary.to_string() } else { long.replace("\n.\n", "\n\n").replace("\n.", "\n") },
        "license": format!("see /usr/share/doc/{}/copyright", p.get("package").unwrap_or(name)),
        "copyright": format!("Debian maintainers: {maintainer}"),
        "packager": "exos import-deb",
        "vendor": "Debian",
        "homepage": p.get("homepage"),
        "architecture": architecture,
        "provides": provides,
        "requires": requires,
        "conflicts": conflicts,
        "essential": p.get("essential") == Some("yes"),
    });
    let mut value = value;
    if value["homepage"].is_null() {
        value.as_object_mut().map(|m| m.remove("homepage"));
    }
    // Debian names may hold '-', Haiku's may not: the name people type
    // and read is kept beside the mapped one.
    if let Some(debian) = p.get("package").filter(|d| *d != name) {
        value["original_name"] = serde_json::Value::String(debian.to_string());
    }
    Ok(value.to_string())
}

/// A reader of a `control.tar*` / `data.tar*` member.
fn decompressor<'a>(suffix: &str, r: impl Read + 'a) -> Result<Box<dyn Read + 'a>, String> {
    Ok(match suffix {
        "" => Box::new(r),
        ".gz" => Box::new(flate2::read::GzDecoder::new(r)),
        ".xz" => Box::new(xz2::read::XzDecoder::new(r)),
        ".zst" => Box::new(zstd::stream::read::Decoder::new(r).map_err(|e| e.to_string())?),
        other => return Err(format!("unsupported member compression {other:?}")),
    })
}

/// `./control` and `./postinst`, each at most [`MAX_CONTROL`] bytes.
fn read_control(reader: impl Read, file: &str) -> Result<(String, Option<String>), DebError> {
    let mut tar = tar::Archive::new(reader);
    let mut control = None;
    let mut postinst = None;
    let bad = |e: io::Error| DebError::Format(file.to_string(), format!("control.tar: {e}"));
    for entry in tar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let slot = match name.as_str() {
            "control" => &mut control,
            "postinst" => &mut postinst,
            _ => continue,
        };
        let mut text = String::new();
        entry
            .take(MAX_CONTROL as u64 + 1)
            .read_to_string(&mut text)
            .map_err(bad)?;
        if text.len() > MAX_CONTROL {
            return Err(DebError::Format(
                file.to_string(),
                format!("control.tar: {name} larger than {MAX_CONTROL} bytes"),
            ));
        }
        *slot = Some(text);
    }
    let control = control.ok_or_else(|| {
        DebError::Format(file.to_string(), "control.tar has no control file".into())
    })?;
    Ok((control, postinst))
}

struct Extracted {
    files: u64,
    skipped: Vec<String>,
    moved: Vec<String>,
    /// Directories made (relative): the only parents anything is written
    /// into, so no entry is ever written through a link.
    dirs: HashSet<PathBuf>,
    /// Interpreters (program loaders, `#!` programs) its files ask for
    /// under `/bin`, `/lib*` or `/sbin`: paths a merged-/usr tree reaches
    /// only through the top-level links of `usr_links`.
    loaders: std::collections::BTreeSet<String>,
}

/// `path` inside the package after the merged-/usr move; None for paths
/// that leave the tree.
fn usr_merged(path: &Path) -> Option<PathBuf> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_os_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        return Some(PathBuf::new());
    }
    let first = parts[0].to_string_lossy().into_owned();
    let mut out = PathBuf::new();
    if MERGED_INTO_USR.contains(&first.as_str()) {
        out.push("usr");
    }
    out.extend(parts);
    Some(out)
}

fn parent_of(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Unpacks a data tarball into `tree`, moving `/bin`, `/sbin` and `/lib*`
/// into `usr`. Never writes outside `tree`: `..` and absolute paths are
/// refused, parents must be directories made here, and a name already
/// present is replaced, not written through.
/// The limit a [`Capped`] reader's error reports, if it is one.
fn over_limit(e: &io::Error) -> Option<crate::OverLimit> {
    e.get_ref()?.downcast_ref::<crate::OverLimit>().cloned()
}

fn extract(
    reader: impl Read,
    tree: &Path,
    file: &str,
    limits: Limits,
) -> Result<Extracted, DebError> {
    let mut unpacked = 0u64;
    let mut count = |n: u64, raw: &Path| -> Result<(), DebError> {
        if n > limits.max_file {
            return Err(DebError::OverLimit {
                file: file.to_string(),
                limit: crate::OverLimit::File {
                    entry: raw.display().to_string(),
                    bytes: n,
                    mib: limits.max_file >> 20,
                },
            });
        }
        unpacked = unpacked.saturating_add(n);
        if unpacked > limits.max_package {
            return Err(DebError::OverLimit {
                file: file.to_string(),
                limit: crate::OverLimit::Package {
                    mib: limits.max_package >> 20,
                },
            });
        }
        Ok(())
    };
    let mut out = Extracted {
        files: 0,
        skipped: Vec::new(),
        moved: Vec::new(),
        dirs: HashSet::from([PathBuf::new()]),
        loaders: Default::default(),
    };
    let bad = |e: io::Error| match over_limit(&e) {
        Some(limit) => DebError::OverLimit {
            file: file.to_string(),
            limit,
        },
        None => DebError::Format(file.to_string(), format!("data.tar: {e}")),
    };
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let Some(rel) = usr_merged(&raw) else {
            return Err(DebError::Format(
                file.to_string(),
                format!("data.tar: {} leaves the package", raw.display()),
            ));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        if rel.starts_with("usr") && !raw.components().any(|c| c.as_os_str() == "usr") {
            if let Some(Component::Normal(top)) =
                raw.components().find(|c| matches!(c, Component::Normal(_)))
            {
                out.moved.push(top.to_string_lossy().into_owned());
            }
        }
        let parent = parent_of(&rel);
        if !out.dirs.contains(&parent) {
            // dpkg-deb lists parents first; make missing ones, never through links.
            let mut at = PathBuf::new();
            for c in parent.components() {
                at.push(c);
                if !out.dirs.contains(&at) {
                    let full = tree.join(&at);
                    if full.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                        return Err(DebError::Format(
                            file.to_string(),
                            format!("data.tar: {} is under a non-directory", raw.display()),
                        ));
                    }
                    let _ = fs::create_dir(&full);
                    out.dirs.insert(at.clone());
                }
            }
        }
        let target = tree.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let kind = entry.header().entry_type();
        let io = |e: io::Error| DebError::Io(format!("{file}: {}", raw.display()), e);
        match kind {
            tar::EntryType::Directory => {
                if !out.dirs.contains(&rel) {
                    if target.symlink_metadata().is_ok() {
                        return Err(DebError::Format(
                            file.to_string(),
                            format!("data.tar: directory {} over another entry", raw.display()),
                        ));
                    }
                    fs::create_dir(&target).map_err(io)?;
                    out.dirs.insert(rel.clone());
                }
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(io)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // What the header says, checked before a byte is written;
                // the copy itself can never pass it.
                let size = entry.header().size().map_err(bad)?;
                count(size, &raw)?;
                replace(&target, &out.dirs, &rel).map_err(io)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io)?;
                io::copy(&mut (&mut entry).take(size), &mut f).map_err(io)?;
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io)?;
                drop(f);
                if let Some(i) = exos_root::elf::interpreter_of(&target) {
                    if exos_root::elf::under_merged_usr(&i) {
                        out.loaders.insert(i);
                    }
                }
                out.files += 1;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(bad)?
                    .ok_or_else(|| bad(io::Error::other("symlink without a target")))?;
                replace(&target, &out.dirs, &rel).map_err(io)?;
                std::os::unix::fs::symlink(&*link, &target).map_err(io)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(bad)?
                    .ok_or_else(|| bad(io::Error::other("hard link without a target")))?;
                let Some(source) = usr_merged(&link) else {
                    return Err(DebError::Format(
                        file.to_string(),
                        format!("data.tar: hard link {} leaves the package", raw.display()),
                    ));
                };
                let from = tree.join(&source);
                if !from.symlink_metadata().is_ok_and(|m| m.is_file()) {
                    return Err(DebError::Format(
                        file.to_string(),
                        format!("data.tar: hard link {} to a missing file", raw.display()),
                    ));
                }
                let size = from.symlink_metadata().map_err(io)?.len();
                count(size, &raw)?;
                replace(&target, &out.dirs, &rel).map_err(io)?;
                fs::copy(&from, &target).map_err(io)?;
                out.files += 1;
            }
            _ => out.skipped.push(format!("/{}", rel.display())),
        }
    }
    Ok(out)
}

/// Removes whatever non-directory is at `target` (a later entry replaces
/// an earlier one, as with dpkg).
fn replace(target: &Path, dirs: &HashSet<PathBuf>, rel: &Path) -> io::Result<()> {
    if dirs.contains(rel) {
        return Err(io::Error::other("a file over a directory"));
    }
    match fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
