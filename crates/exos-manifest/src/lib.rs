//! # exos-manifest — what a package offers and needs
//!
//! Every EXOS package carries a `manifest.json` at its root: name, version,
//! the API contracts it `provides`, the ones it `requires` (with version
//! ranges such as `>=1.0, <2` or `~2.1`), the system APIs it `uses`, and
//! what it `conflicts` with or `replaces`. This crate is that model:
//!
//! * [`range`]: version ranges over Haiku's version ordering, and how a
//!   range matches a provider that declares a compatibility window;
//! * [`model`]: [`Manifest`], parsed from JSON (one serde parser, in
//!   `parse`) with errors that name the file and the key, mapped onto Haiku's package attributes (so Haiku's tools
//!   see the same dependencies), and derived back from those attributes for
//!   Haiku packages that carry no `manifest.json`.
//!
//! The JSON Schema of the file is `schema/manifest.schema.json` in the
//! repository ([`SCHEMA`]). Resolution policy lives in `exos-resolve`.

#![forbid(unsafe_code)]

#[cfg(feature = "hpkg")]
mod haiku;
pub mod model;
mod parse;
pub mod range;

pub use model::{Dependency, Manifest, ManifestError, Provide, Requirement, MAX_MANIFEST_SIZE};
pub use parse::{DependencyRef, ManifestRef, ProvideRef};
pub use range::{Constraint, RangeOp, VersionRange};

/// The JSON Schema (draft 2020-12) of `manifest.json`.
pub const SCHEMA: &str = include_str!("../../../schema/manifest.schema.json");

/// Name of the manifest file at a package's root.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Files at a package's root that are metadata, not content: mounts keep
/// them out of the layers' unions and show them under `.packages/NAME/`.
pub const METADATA_FILES: [&str; 2] = [MANIFEST_FILE, ".PackageInfo"];
