//! The `exos` command line as a library: every command's arguments, the
//! work it asks of the library crates, and its typed reports. The `exos`
//! and `exos-mountd` binaries are thin entry points over it.

#![forbid(unsafe_code)]
// This library exists for its two binaries, not as an API. Doc comments on
// its clap types are the `--help` text users read, and its JSON reports
// are documented field by field in docs/json.md (whose examples the tests
// run), so item docs written for rustdoc would say everything twice.
#![allow(missing_docs)]

pub mod apps;
pub mod boot;
pub mod completion;
pub mod deb;
pub mod delta;
pub mod exitrd;
pub mod extract;
pub mod hints;
pub mod inspect;
pub mod keys;
pub mod listing;
pub mod manage;
pub mod manual;
pub mod mount;
pub mod notify;
pub mod output;
pub mod overlay;
pub mod query;
pub mod repo;
pub mod resolve;
pub mod serve;
pub mod settings;
pub mod sources;
pub mod suggest;
pub mod trust;
pub mod users;
pub mod view;

use std::path::PathBuf;

/// `-r/--root`, falling back to `$EXOS_ROOT`, then to the root the running
/// system booted from.
#[derive(Debug, clap::Args)]
pub struct RootArg {
    /// The EXOS root (default: $EXOS_ROOT; in a system `exos boot` booted,
    /// the root it booted from, shown at /run/exos/root).
    #[arg(short, long, env = "EXOS_ROOT")]
    pub root: Option<PathBuf>,
}

impl RootArg {
    /// The root given, or why there is none.
    pub fn path(&self) -> anyhow::Result<&std::path::Path> {
        if let Some(root) = self.root.as_deref() {
            return Ok(root);
        }
        let booted = std::path::Path::new(boot::BOOTED_ROOT);
        if booted.is_dir() {
            return Ok(booted);
        }
        anyhow::bail!("which EXOS root? give -r ROOT or set $EXOS_ROOT")
    }
}
