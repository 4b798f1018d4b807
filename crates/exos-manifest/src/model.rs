//! The manifest model and its JSON form (parsed in `parse`, written by
//! `Serialize`); the mapping onto Haiku's package attributes is in `haiku`.

use std::fmt;
use std::path::Path;

use exos_version::{check_name, Architecture, Version, VersionRef};
use serde_json::Value;

use crate::range::VersionRange;

/// Largest `manifest.json` accepted (inside a package or on disk).
pub const MAX_MANIFEST_SIZE: u64 = 1 << 20;

/// A manifest that could not be read; `Display` names the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {}{message}", key.as_ref().map(|k| format!("key \"{k}\": ")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest's file (or package) name.
    pub file: String,
    /// The key at fault, when one is.
    pub key: Option<String>,
    /// The rule broken, in words.
    pub message: String,
}

/// An API contract a package offers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Provide {
    /// The API (a package name, `lib:libfoo`, …).
    pub api: String,
    /// The version of it provided; unversioned satisfies any range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Oldest version of the API this provider is still compatible with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatible: Option<Version>,
}

/// A need for an API in a version range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// The API needed.
    pub api: String,
    /// The versions that do.
    pub range: VersionRange,
}

impl Dependency {
    /// Parses `api`, `api >=1.0, <2` or `api~2.1`.
    pub fn parse(s: &str) -> Result<Dependency, String> {
        let (api, range) = split_dependency(s)?;
        Ok(Dependency {
            api: api.to_string(),
            range: VersionRange::parse(range)?,
        })
    }

    /// Is `provide` what this conflict names? Unlike requirements, a
    /// versioned conflict only hits versioned providers: an unversioned
    /// provider makes no claim about the versions the conflict is about
    /// (Debian's rule; it keeps `Breaks: foo (<< 2)` off virtual `foo`s).
    pub fn conflicts_with(&self, provide: &Provide) -> bool {
        provide.api == self.api
            && (self.range.is_any() || (provide.version.is_some() && self.is_met_by(provide)))
    }

    /// Does `provide` offer this API in a matching version?
    pub fn is_met_by(&self, provide: &Provide) -> bool {
        provide.api == self.api
            && self
                .range
                .matches(provide.version.as_ref(), provide.compatible.as_ref())
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.api)?;
        if !self.range.is_any() {
            write!(f, " {}", self.range)?;
        }
        Ok(())
    }
}

/// A `requires` entry: one dependency, or alternatives of which any one
/// will do (`{ "any": [...] }`, e.g. Debian's `a | b`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// Never empty.
    pub alternatives: Vec<Dependency>,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Everything `manifest.json` says about a package. Serializes to the
/// canonical `manifest.json` (what `exos info --json` shows, and what a
/// Haiku package's derived manifest looks like); parsing that gives back an
/// equal manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    /// The package name.
    pub name: String,
    /// The package version.
    pub version: Version,
    /// One line about it.
    pub summary: String,
    /// More about it.
    pub description: String,
    /// Its licence (SPDX or free text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Its copyright line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copyright: Option<String>,
    /// Who publishes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Who packaged it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packager: Option<String>,
    /// Its web page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// The architecture it is built for (`any` for data).
    #[serde(serialize_with = "architecture_name")]
    pub architecture: Architecture,
    /// Always includes the package's own name (added when missing), so a
    /// requirement on a package name resolves like any API.
    pub provides: Vec<Provide>,
    /// What it needs: each requirement a list of alternatives.
    pub requires: Vec<Requirement>,
    /// System APIs that must be present globally for the package to work.
    pub uses: Vec<Dependency>,
    /// APIs it cannot be installed beside.
    pub conflicts: Vec<Dependency>,
    /// Packages (by name) this one supersedes; they are removed when it is
    /// installed.
    pub replaces: Vec<String>,
    /// The system cannot work without it: removing it, even along with
    /// something else, needs `--force`. Haiku's `system_package` flag.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub essential: bool,
    /// Paths (files or directories, relative to the package root) kept out
    /// of the layers' unions: reachable only through the package's own
    /// directory, `<layer>/.packages/<name>/PATH` (embedded libraries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<String>,
    /// What `exos run NAME` starts, relative to the package root (default
    /// `bin/NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The version as the package's origin wrote it (e.g. a Debian version
    /// with its epoch, `1:2.3-4`), when it had to be mapped to a Haiku one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_version: Option<String>,
    /// The name as the package's origin wrote it (a Debian name with `-`,
    /// which Haiku names cannot hold), when it had to be mapped. Accepted
    /// wherever a name is typed, and shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_name: Option<String>,
}

impl Manifest {
    /// Whether the package was made from another format whose versions it
    /// keeps in `original_version` (an imported Debian package): ranges
    /// typed against it are read in that format's syntax.
    pub fn is_imported(&self) -> bool {
        self.original_version.is_some()
    }
}

fn architecture_name<S: serde::Serializer>(a: &Architecture, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.name())
}

/// `{"api": …}` or `{"api": …, "version": RANGE}`.
impl serde::Serialize for Dependency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let any = self.range.is_any();
        let mut m = s.serialize_map(Some(if any { 1 } else { 2 }))?;
        m.serialize_entry("api", &self.api)?;
        if !any {
            m.serialize_entry("version", &self.range.to_string())?;
        }
        m.end()
    }
}

/// One dependency as itself, alternatives as `{"any": [...]}`.
impl serde::Serialize for Requirement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.alternatives.as_slice() {
            [one] => one.serialize(s),
            many => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("any", many)?;
                m.end()
            }
        }
    }
}

/// Splits `api RANGE` into the API name and the range text, checking both:
/// the one grammar of a dependency written as text.
pub(crate) fn split_dependency(s: &str) -> Result<(&str, &str), String> {
    let s = s.trim();
    let end = s
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '=' | '!' | '~' | '^'))
        .unwrap_or(s.len());
    let (api, range) = s.split_at(end);
    check_name(api)?;
    VersionRange::check(range)?;
    Ok((api, range))
}

/// A provided version and its compatibility floor must make a window.
pub(crate) fn check_window(
    version: Option<VersionRef>,
    compatible: Option<VersionRef>,
) -> Result<(), String> {
    match (version, compatible) {
        (None, Some(_)) => Err("\"compatible\" needs a \"version\"".into()),
        (Some(v), Some(c)) if c.compare(&v).is_gt() => Err(format!(
            "compatible version {} is newer than the provided version {}",
            c.to_version(),
            v.to_version()
        )),
        _ => Ok(()),
    }
}

/// Splits `api`, `api = 1.0` or `api = 1.0 compat >= 0.9` (Haiku's text
/// form) into name, version and compatibility floor, checking them.
pub(crate) fn split_provide(s: &str) -> Result<(&str, Option<&str>, Option<&str>), String> {
    let s = s.trim();
    let (head, compatible) = match s.split_once("compat") {
        Some((h, c)) => {
            let c = c.trim_start();
            (h, Some(c.strip_prefix(">=").unwrap_or(c)))
        }
        None => (s, None),
    };
    let (api, version) = match head.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim_start_matches('='))),
        None => (head.trim(), None),
    };
    check_name(api)?;
    let v = version.map(VersionRef::parse).transpose()?;
    let c = compatible.map(VersionRef::parse).transpose()?;
    check_window(v, c)?;
    Ok((api, version, compatible))
}

impl Manifest {
    /// Releases the spare capacity of every list: indexes hold tens of
    /// thousands of manifests, and vectors grown by `collect` keep room for
    /// four elements where most have one (measured: 3.7 KiB per Debian
    /// package before, far less after).
    pub fn compact(&mut self) {
        self.provides.shrink_to_fit();
        for r in &mut self.requires {
            for d in &mut r.alternatives {
                d.range.constraints.shrink_to_fit();
            }
            r.alternatives.shrink_to_fit();
        }
        self.requires.shrink_to_fit();
        for d in self.uses.iter_mut().chain(self.conflicts.iter_mut()) {
            d.range.constraints.shrink_to_fit();
        }
        self.uses.shrink_to_fit();
        self.conflicts.shrink_to_fit();
        self.replaces.shrink_to_fit();
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let file = path.display().to_string();
        let fail = |message: String| ManifestError {
            file: file.clone(),
            key: None,
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.len() > MAX_MANIFEST_SIZE {
            return Err(fail(format!(
                "{} bytes is larger than the {MAX_MANIFEST_SIZE}-byte limit",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        Self::parse(&bytes, &file)
    }

    /// Parses manifest JSON; `file` names the source in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Manifest, ManifestError> {
        Ok(crate::parse::parse(bytes, file)?.to_manifest())
    }

    /// The canonical JSON form (what `exos info --json` and derived
    /// manifests show). Parsing it gives back an equal manifest.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

pub(crate) fn add_self_provide(provides: &mut Vec<Provide>, name: &str, version: &Version) {
    if !provides.iter().any(|p| p.api == name) {
        provides.insert(
            0,
            Provide {
                api: name.to_string(),
                version: Some(version.clone()),
                compatible: None,
            },
        );
    }
}
