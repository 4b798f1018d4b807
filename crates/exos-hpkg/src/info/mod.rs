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
    KeepOld,
    Manual,
    AutoMerge,
}

impl serde::Serialize for WritableFileUpdateType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl WritableFileUpdateType {
    pub fn from_raw(v: u64) -> Option<Self> {
        [Self::KeepOld, Self::Manual, Self::AutoMerge]
            .get(usize::try_from(v).ok()?)
            .copied()
    }
    pub fn raw(self) -> u64 {
        self as u64
    }
    pub fn name(self) -> &'static str {
        ["keep-old", "manual", "auto-merge"][self as usize]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct GlobalWritableFile {
    pub path: String,
    pub is_directory: bool,
    /// Present iff the file is shipped in the package.
    pub update_type: Option<WritableFileUpdateType>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct UserSettingsFile {
    pub path: String,
    pub is_directory: bool,
    pub template: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct User {
    pub name: String,
    pub real_name: String,
    pub home: String,
    pub shell: String,
    pub groups: Vec<String>,
}

pub const FLAG_APPROVE_LICENSE: u32 = 1;
pub const FLAG_SYSTEM_PACKAGE: u32 = 2;

/// Everything the package-attributes section can say. Serialized with
/// versions and resolvables as text, the architecture by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PackageInfo {
    pub name: String,
    pub summary: String,
    pub description: String,
    pub vendor: String,
    pub packager: String,
    pub base_package: String,
    pub flags: u32,
    pub architecture: Architecture,
    pub version: Version,
    pub copyrights: Vec<String>,
    pub licenses: Vec<String>,
    pub urls: Vec<String>,
    pub source_urls: Vec<String>,
    pub provides: Vec<Provides>,
    pub requires: Vec<Resolvable>,
    pub supplements: Vec<Resolvable>,
    pub conflicts: Vec<Resolvable>,
    pub freshens: Vec<Resolvable>,
    pub replaces: Vec<String>,
    pub global_writable_files: Vec<GlobalWritableFile>,
    pub user_settings_files: Vec<UserSettingsFile>,
    pub users: Vec<User>,
    pub groups: Vec<String>,
    pub post_install_scripts: Vec<String>,
    pub pre_uninstall_scripts: Vec<String>,
    /// Only in repository entries: SHA-256 (hex) of the package file.
    pub checksum: String,
    pub install_path: String,
}

impl PackageInfo {
    /// Haiku's canonical file name: `<name>-<version>-<arch>.hpkg`.
    pub fn canonical_file_name(&self) -> String {
        format!("{}-{}-{}.hpkg", self.name, self.version, self.architecture)
    }
}
