//! Package metadata: the package-attributes section of an HPKG (and each
//! entry of an HPKR packages section), spec §1.7.
//!
//! This module holds the types; [`version`] has Haiku's version grammar and
//! order, `decode` reads the attribute stream, `encode` writes it in
//! Haiku's order, and `text` renders a `.PackageInfo` file.

mod decode;
mod encode;
mod text;

/// Haiku's version grammar and order (in `exos-version`, which the
/// resolver uses without this crate).
pub mod version {
    pub use exos_version::version::*;
}

pub use exos_version::{
    check_name, natural_compare, Architecture, Operator, Provides, Resolvable, Version, VersionRef,
    MAX_NAME_LENGTH,
};

/// How a shipped writable file is updated (`global-writable-files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WritableFileUpdateType {
    /// Keep the user's file (`keep-old`).
    KeepOld,
    /// Leave merging to the user (`manual`).
    Manual,
    /// Merge automatically (`auto-merge`).
    AutoMerge,
}

impl serde::Serialize for WritableFileUpdateType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl WritableFileUpdateType {
    /// The type a stored attribute value names; `None` past the known ones.
    pub fn from_raw(v: u64) -> Option<Self> {
        [Self::KeepOld, Self::Manual, Self::AutoMerge]
            .get(usize::try_from(v).ok()?)
            .copied()
    }
    /// The value stored in a package attribute.
    pub fn raw(self) -> u64 {
        self as u64
    }
    /// Haiku's name (`keep-old`, `manual`, `auto-merge`).
    pub fn name(self) -> &'static str {
        ["keep-old", "manual", "auto-merge"][self as usize]
    }
}

/// A file the package ships that users may change (Haiku's `global-writable-files`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct GlobalWritableFile {
    /// Its path.
    pub path: String,
    /// Whether it is a directory.
    pub is_directory: bool,
    /// Present iff the file is shipped in the package.
    pub update_type: Option<WritableFileUpdateType>,
}

/// A per-user settings file (Haiku's `user-settings-files`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct UserSettingsFile {
    /// Its path.
    pub path: String,
    /// Whether it is a directory.
    pub is_directory: bool,
    /// The file it starts as, if any.
    pub template: Option<String>,
}

/// A user account the package needs (Haiku's `users`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Full name.
    pub real_name: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// Groups it belongs to.
    pub groups: Vec<String>,
}

/// Users must accept the licence before installing.
pub const FLAG_APPROVE_LICENSE: u32 = 1;
/// A system package (EXOS: `essential`).
pub const FLAG_SYSTEM_PACKAGE: u32 = 2;

/// Everything the package-attributes section can say. Serialized with
/// versions and resolvables as text, the architecture by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PackageInfo {
    /// The package name.
    pub name: String,
    /// One line about it.
    pub summary: String,
    /// More about it.
    pub description: String,
    /// Who publishes it.
    pub vendor: String,
    /// Who packaged it.
    pub packager: String,
    /// The package it extends, if any.
    pub base_package: String,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The architecture it is built for.
    pub architecture: Architecture,
    /// Its version.
    pub version: Version,
    /// Copyright lines.
    pub copyrights: Vec<String>,
    /// Licence names.
    pub licenses: Vec<String>,
    /// Web pages.
    pub urls: Vec<String>,
    /// Where its sources are.
    pub source_urls: Vec<String>,
    /// What it provides.
    pub provides: Vec<Provides>,
    /// What it requires.
    pub requires: Vec<Resolvable>,
    /// Packages it extends when they are installed.
    pub supplements: Vec<Resolvable>,
    /// What it cannot be installed beside.
    pub conflicts: Vec<Resolvable>,
    /// Packages it updates when installed.
    pub freshens: Vec<Resolvable>,
    /// Packages it supersedes.
    pub replaces: Vec<String>,
    /// Files users may change.
    pub global_writable_files: Vec<GlobalWritableFile>,
    /// Per-user settings files.
    pub user_settings_files: Vec<UserSettingsFile>,
    /// User accounts it needs.
    pub users: Vec<User>,
    /// Groups it needs.
    pub groups: Vec<String>,
    /// Scripts Haiku runs after installing it.
    pub post_install_scripts: Vec<String>,
    /// Scripts Haiku runs before removing it.
    pub pre_uninstall_scripts: Vec<String>,
    /// Only in repository entries: SHA-256 (hex) of the package file.
    pub checksum: String,
    /// Where it is installed (Haiku's `install-path`; rarely set).
    pub install_path: String,
}

impl PackageInfo {
    /// Haiku's canonical file name: `<name>-<version>-<arch>.hpkg`.
    pub fn canonical_file_name(&self) -> String {
        format!("{}-{}-{}.hpkg", self.name, self.version, self.architecture)
    }
}
