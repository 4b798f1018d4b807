//! The installed-package index (`system/state/installed.index`): for each
//! package of the current state, its manifest, size and top-level names,
//! so that a change or a listing reads one file instead of opening every
//! installed package (as dpkg reads its status file, not every `.deb`).
//!
//! The index is derived data, rewritten by every switch of state. Entries
//! are keyed by the package file's SHA-256, so an entry is never wrong for
//! its package, only missing: a package the index lacks (an index older
//! than the state, written by an older exos, or unreadable) is read from
//! its file. An index that breaks a rule is ignored whole.
//! Sealed packages are never in it (their manifests are remembered apart,
//! readable by the root's owner only); nor are lazy ones (their records
//! hold their manifests).
//!
//! Format: the line `exos-installed-index 1`, then one JSON object per
//! line: `{"sha256": HEX, "size": BYTES, "tops": [{"name": NAME, "dir":
//! BOOL}...], "manifest": MANIFEST}`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use exos_hpkg::Package;
use exos_manifest::Manifest;
use exos_root::{Layout, Sha256};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Error, Result};

/// The index's first line.
pub const HEADER: &str = "exos-installed-index 1";

/// The largest index read (about 150,000 packages' worth): a larger file
/// is not an index this exos wrote.
pub const MAX_INDEX_SIZE: u64 = 64 << 20;

/// Indexes of at least this many lines are parsed on several threads.
const PARALLEL_LINES: usize = 512;

/// A top-level name of a package (`bin`, `lib`, a file at the top), and
/// whether it is a directory: what the layer clash check needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Top {
    /// The name.
    pub name: String,
    /// Whether it is a directory.
    pub dir: bool,
}

/// What the index knows of one package file.
#[derive(Debug, Clone)]
pub struct Indexed {
    /// The file's size in bytes.
    pub size: u64,
    /// Its top-level names, metadata files (`.PackageInfo`) left out.
    pub tops: Vec<Top>,
    /// Its manifest, shared with the plans made from the index (a change
    /// among 10,000 packages copied 10,000 manifests).
    pub manifest: Arc<Manifest>,
    /// Its manifest as the index holds it (written again as it was read:
    /// a change rewrites thousands of lines it did not change).
    json: Box<RawValue>,
}

impl Indexed {
    /// What `pkg` (a plain package of `size` bytes) would have in the
    /// index; `None` if a top-level name is not UTF-8 (not representable
    /// in the index: the package is read from its file instead).
    pub fn of_package(pkg: &Package, size: u64) -> Result<Option<Indexed>> {
        let mut tops = Vec::new();
        for c in pkg.toc().root().children() {
            let Ok(name) = std::str::from_utf8(c.name_bytes()) else {
                return Ok(None);
            };
            if exos_manifest::METADATA_FILES.contains(&name) {
                continue;
            }
            tops.push(Top {
                name: name.to_string(),
                dir: c.is_dir(),
            });
        }
        let manifest = Manifest::from_package(pkg)?;
        // A JSON value's text is valid JSON.
        let json = RawValue::from_string(manifest.to_json().to_string())
            .map_err(|e| Error::invalid(pkg.path().display(), e.to_string()))?;
        Ok(Some(Indexed {
            size,
            tops,
            manifest: Arc::new(manifest),
            json,
        }))
    }
}

/// One line of the index, as written.
#[derive(Serialize)]
struct LineOut<'a> {
    sha256: &'a Sha256,
    size: u64,
    tops: &'a [Top],
    manifest: &'a RawValue,
}

/// One line of the index, as read: the manifest is kept raw and read by
/// the manifest parser, the one parser of manifests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    sha256: Sha256,
    size: u64,
    tops: Vec<Top>,
    #[serde(borrow)]
    manifest: &'a RawValue,
}

/// The installed-package index: what it knows, by SHA-256.
#[derive(Debug, Clone, Default)]
pub struct InstalledIndex {
    packages: HashMap<Sha256, Indexed>,
}

impl InstalledIndex {
    /// An empty index with room for `packages` entries.
    pub fn with_capacity(packages: usize) -> InstalledIndex {
        InstalledIndex {
            packages: HashMap::with_capacity(packages),
        }
    }

    /// What the index knows of the package file whose SHA-256 is `sha`.
    pub fn get(&self, sha: &Sha256) -> Option<&Indexed> {
        self.packages.get(sha)
    }

    /// Records `sha`'s package.
    pub fn insert(&mut self, sha: Sha256, indexed: Indexed) {
        self.packages.insert(sha, indexed);
    }

    /// Takes what the index knows of `sha`'s package out of it.
    pub fn remove(&mut self, sha: &Sha256) -> Option<Indexed> {
        self.packages.remove(sha)
    }

    /// How many packages the index knows.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// Whether the index knows no package.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Reads an index from `bytes`; `file` names it in errors, which say
    /// the line and the rule broken.
    pub fn parse(bytes: &[u8], file: &str) -> Result<InstalledIndex> {
        let broken = |line: usize, rule: String| Error::Invalid {
            what: format!("{file}, line {line}"),
            rule,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            broken(
                1 + count_lines(&bytes[..e.valid_up_to()]),
                "not UTF-8".into(),
            )
        })?;
        let mut lines = text.split_terminator('\n');
        if lines.next() != Some(HEADER) {
            return Err(broken(1, format!("the first line must be `{HEADER}`")));
        }
        let lines: Vec<&str> = lines.collect();
        let parse_line = |(i, line): (usize, &&str)| -> Result<(Sha256, Indexed)> {
            let n = i + 2;
            let l: LineIn = serde_json::from_str(line).map_err(|e| broken(n, e.to_string()))?;
            let manifest =
                Manifest::parse(l.manifest.get().as_bytes(), &format!("{file}, line {n}"))?;
            let indexed = Indexed {
                size: l.size,
                tops: l.tops,
                manifest: Arc::new(manifest),
                json: l.manifest.to_owned(),
            };
            Ok((l.sha256, indexed))
        };
        // Lines are independent: a large index is parsed on every core
        // (parsing 10,000 manifests was a fifth of an install). The first
        // line at fault is reported, as a reader going line by line would.
        let parsed: Vec<Result<(Sha256, Indexed)>> = if lines.len() >= PARALLEL_LINES {
            use rayon::prelude::*;
            lines.par_iter().enumerate().map(parse_line).collect()
        } else {
            lines.iter().enumerate().map(parse_line).collect()
        };
        // Sized up front: entries are large, and each growth moves them all.
        let mut packages = HashMap::with_capacity(parsed.len());
        for (i, line) in parsed.into_iter().enumerate() {
            let (sha, indexed) = line?;
            if packages.insert(sha, indexed).is_some() {
                return Err(broken(i + 2, format!("{sha} is listed twice")));
            }
        }
        Ok(InstalledIndex { packages })
    }

    /// The index's text, in SHA-256 order.
    pub fn render(&self) -> String {
        let mut shas: Vec<&Sha256> = self.packages.keys().collect();
        shas.sort_unstable_by_key(|s| s.0);
        let mut out = String::from(HEADER);
        out.push('\n');
        for sha in shas {
            let p = &self.packages[sha];
            let line = LineOut {
                sha256: sha,
                size: p.size,
                tops: &p.tops,
                manifest: &p.json,
            };
            // Serializing plain data to a string cannot fail.
            out += &serde_json::to_string(&line).unwrap_or_default();
            out.push('\n');
        }
        out
    }

    /// `layout`'s index; empty when there is none or it cannot be used
    /// (it is derived data: packages it lacks are read from their files).
    pub fn read(layout: &Layout) -> InstalledIndex {
        let path = layout.installed_index();
        match read_bounded(&path)
            .and_then(|(bytes, _)| InstalledIndex::parse(&bytes, &path.display().to_string()))
        {
            Ok(index) => index,
            Err(e) => ignored(e),
        }
    }

    /// [`InstalledIndex::read`], shared within the process: a command
    /// that opens a root twice (to read names, then to change it) parses
    /// the same file once. The file is recognised by its identity (device,
    /// inode, size, modification time): every write replaces it by rename.
    pub fn read_shared(layout: &Layout) -> Arc<InstalledIndex> {
        let path = layout.installed_index();
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let read = read_bounded_if(&path, |key| match &*shared {
            Some((p, k, _)) => !(p == &path && *k == key),
            None => true,
        });
        match read {
            Ok((None, _)) => match &*shared {
                Some((_, _, index)) => index.clone(),
                None => Arc::default(),
            },
            Ok((Some(bytes), key)) => {
                match InstalledIndex::parse(&bytes, &path.display().to_string()) {
                    Ok(index) => {
                        let index = Arc::new(index);
                        *shared = Some((path, key, index.clone()));
                        index
                    }
                    Err(e) => Arc::new(ignored(e)),
                }
            }
            Err(e) => Arc::new(ignored(e)),
        }
    }

    /// Drops the process's shared copy (before a rewrite that takes the
    /// entries out of it).
    pub fn forget_shared() {
        *SHARED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Writes the index of `layout`: by rename, not synced (derived data,
    /// see [`exos_root::write_derived`]); readable by all, as the states
    /// are: it holds only what anyone can read from the packages.
    pub fn write(&self, layout: &Layout) -> Result<()> {
        let path = layout.installed_index();
        exos_root::write_derived(&path, self.render().as_bytes()).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })
    }
}

/// An index file's identity: replaced by rename on every write, so a
/// file with the same identity holds the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

/// The index last read in this process, with its file and identity.
static SHARED: Mutex<Option<(PathBuf, FileKey, Arc<InstalledIndex>)>> = Mutex::new(None);

/// An index that cannot be used is an empty one (a missing one silently).
fn ignored(e: Error) -> InstalledIndex {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {}
        e => tracing::warn!("ignoring the installed-package index: {e}"),
    }
    InstalledIndex::default()
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// The file at `path`, refused past [`MAX_INDEX_SIZE`] (read up to one
/// byte more, never by a size it claims), and its identity.
fn read_bounded(path: &Path) -> Result<(Vec<u8>, FileKey)> {
    let (bytes, key) = read_bounded_if(path, |_| true)?;
    Ok((bytes.unwrap_or_default(), key))
}

/// [`read_bounded`], reading only if `wanted` says so of the identity of
/// the file opened (so what is read is what was identified).
fn read_bounded_if(
    path: &Path,
    wanted: impl FnOnce(FileKey) -> bool,
) -> Result<(Option<Vec<u8>>, FileKey)> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    // Never through a link, never blocking on a FIFO: a user's layout is
    // the user's to fill, and root may read it.
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| io(e.into()))?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Error::invalid(path.display(), "not a regular file"));
    }
    let key = FileKey {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
    };
    if !wanted(key) {
        return Ok((None, key));
    }
    let mut bytes = Vec::new();
    file.take(MAX_INDEX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_INDEX_SIZE {
        return Err(Error::invalid(
            path.display(),
            format!("larger than an installed-package index may be ({MAX_INDEX_SIZE} bytes)"),
        ));
    }
    Ok((Some(bytes), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "00000000000000000000000000000000000000000000000000000000000000aa";
    const SHA_B: &str = "00000000000000000000000000000000000000000000000000000000000000bb";

    fn line(sha: &str, name: &str) -> String {
        format!(
            r#"{{"sha256":"{sha}","size":574,"tops":[{{"name":"bin","dir":true}},{{"name":"README","dir":false}}],"manifest":{{"name":"{name}","version":"1.2","summary":"s","license":"MIT","copyright":"c"}}}}"#
        )
    }

    fn error_of(text: &str) -> String {
        InstalledIndex::parse(text.as_bytes(), "t.index")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("accepted:\n{text}"))
    }

    #[test]
    fn reads_what_it_writes() {
        let text = format!("{HEADER}\n{}\n{}\n", line(SHA_B, "b"), line(SHA_A, "a"));
        let index = InstalledIndex::parse(text.as_bytes(), "t.index").unwrap();
        assert_eq!(index.len(), 2);
        let a = index.get(&SHA_A.parse().unwrap()).unwrap();
        assert_eq!((a.manifest.name.as_str(), a.size), ("a", 574));
        assert_eq!(
            a.tops,
            [
                Top {
                    name: "bin".into(),
                    dir: true
                },
                Top {
                    name: "README".into(),
                    dir: false
                }
            ]
        );
        // Rendered in SHA-256 order, manifests as they were read.
        let rendered = index.render();
        assert_eq!(
            rendered,
            format!("{HEADER}\n{}\n{}\n", line(SHA_A, "a"), line(SHA_B, "b"))
        );
        let again = InstalledIndex::parse(rendered.as_bytes(), "t.index").unwrap();
        assert_eq!(again.render(), rendered);
        assert!(InstalledIndex::parse(format!("{HEADER}\n").as_bytes(), "t")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refuses_what_it_did_not_write_naming_the_line_and_rule() {
        let good = line(SHA_A, "a");
        for (text, says) in [
            (String::new(), "t.index, line 1: the first line must be"),
            (
                format!("exos-installed-index 2\n{good}\n"),
                "line 1: the first line",
            ),
            (format!("{HEADER}\n{good}\n{good}\n"), "line 3: 00000000"),
            (
                format!("{HEADER}\n{good}\n{{\"sha256\":1}}\n"),
                "line 3: invalid type",
            ),
            (
                format!(
                    "{HEADER}\n{}\n",
                    good.replace("\"size\"", "\"extra\":1,\"size\"")
                ),
                "line 2: unknown field `extra`",
            ),
            (
                format!("{HEADER}\n{}\n", good.replace(SHA_A, "zz")),
                "line 2:",
            ),
            (
                format!(
                    "{HEADER}\n{}\n",
                    good.replace("\"name\":\"a\"", "\"name\":\"../a\"")
                ),
                "t.index, line 2",
            ),
            (
                format!("{HEADER}\n{}\n", good.replace("574", "-1")),
                "line 2: invalid value",
            ),
            (format!("{HEADER}\n\n"), "line 2: EOF while parsing"),
        ] {
            let e = error_of(&text);
            assert!(e.contains(says), "{e}\n(wanted {says:?} for {text:?})");
        }
        let mut bytes = format!("{HEADER}\n{good}\n").into_bytes();
        bytes.extend_from_slice(b"\xff\n");
        let e = InstalledIndex::parse(&bytes, "t.index")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.index, line 3: not UTF-8"), "{e}");
    }

    /// Large enough to be parsed on several threads: the same answers, and
    /// the first line at fault named, as line by line.
    #[test]
    fn a_large_index_reads_the_same_and_names_its_first_fault() {
        let sha = |i: usize| format!("{i:064x}");
        let lines: Vec<String> = (0..2 * PARALLEL_LINES)
            .map(|i| line(&sha(i), &format!("p{i}")))
            .collect();
        let text = format!("{HEADER}\n{}\n", lines.join("\n"));
        let index = InstalledIndex::parse(text.as_bytes(), "t.index").unwrap();
        assert_eq!(index.len(), 2 * PARALLEL_LINES);
        for i in [0, 700, 2 * PARALLEL_LINES - 1] {
            let got = index.get(&sha(i).parse().unwrap()).unwrap();
            assert_eq!(got.manifest.name, format!("p{i}"));
        }
        assert_eq!(
            InstalledIndex::parse(index.render().as_bytes(), "t")
                .unwrap()
                .render(),
            index.render()
        );

        // A broken line late and an earlier one: the earlier is named.
        let mut broken = lines.clone();
        broken[900] = "{".into();
        broken[600] = broken[600].replace("574", "-1");
        let e = error_of(&format!("{HEADER}\n{}\n", broken.join("\n")));
        assert!(e.contains("t.index, line 602: invalid value"), "{e}");
        // A package listed twice: named at its second line.
        let mut twice = lines;
        twice[800] = twice[3].clone();
        let e = error_of(&format!("{HEADER}\n{}\n", twice.join("\n")));
        assert!(
            e.contains(&format!("line 802: {} is listed twice", sha(3))),
            "{e}"
        );
    }

    #[test]
    fn a_missing_or_broken_index_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.state_dir()).unwrap();
        assert!(InstalledIndex::read(&layout).is_empty());
        std::fs::write(layout.installed_index(), "garbage").unwrap();
        assert!(InstalledIndex::read(&layout).is_empty());
        // Larger than an index may be: refused without reading it all.
        let f = std::fs::File::create(layout.installed_index()).unwrap();
        f.set_len(MAX_INDEX_SIZE + 2).unwrap();
        let e = read_bounded(&layout.installed_index())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("larger than an installed-package index may be"),
            "{e}"
        );
        assert!(InstalledIndex::read(&layout).is_empty());
        // Never through a link, never stuck on a FIFO.
        std::fs::remove_file(layout.installed_index()).unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink(&fifo, layout.installed_index()).unwrap();
        let e = read_bounded(&layout.installed_index())
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic links"), "{e}");
        std::fs::remove_file(layout.installed_index()).unwrap();
        std::fs::rename(&fifo, layout.installed_index()).unwrap();
        let e = read_bounded(&layout.installed_index())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(InstalledIndex::read(&layout).is_empty());
        std::fs::remove_file(layout.installed_index()).unwrap();
        // What is written reads back.
        let text = format!("{HEADER}\n{}\n", line(SHA_A, "a"));
        let index = InstalledIndex::parse(text.as_bytes(), "t").unwrap();
        index.write(&layout).unwrap();
        assert_eq!(InstalledIndex::read(&layout).render(), text);
        // Shared within the process until the file is replaced.
        let first = InstalledIndex::read_shared(&layout);
        assert!(Arc::ptr_eq(&first, &InstalledIndex::read_shared(&layout)));
        let two = format!("{HEADER}\n{}\n{}\n", line(SHA_A, "a"), line(SHA_B, "b"));
        InstalledIndex::parse(two.as_bytes(), "t")
            .unwrap()
            .write(&layout)
            .unwrap();
        let second = InstalledIndex::read_shared(&layout);
        assert_eq!((first.len(), second.len()), (1, 2));
        InstalledIndex::forget_shared();
        assert!(!Arc::ptr_eq(&second, &InstalledIndex::read_shared(&layout)));
    }
}
