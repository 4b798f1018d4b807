//! Delta packages: a new version of an HPKG package described against an
//! old one, small enough to download instead of the package, and rebuilt
//! from the old package **byte for byte** (its SHA-256 is checked before
//! anything is written in its place).
//!
//! Packages are compressed in 64 KiB chunks, so two versions that share
//! almost all their files share almost none of their compressed bytes:
//! `zstd --patch-from` or `bsdiff` on the package files find little to
//! reuse. A delta therefore works on decompressed content:
//!
//! * **Segments** rebuild the new package's uncompressed heap in order.
//!   A *copy* is old bytes unchanged (an unchanged file, or an unchanged
//!   512 KiB piece of a large one). Any other segment is a zstd frame
//!   compressed with a *reference* — the old heap's bytes of the same
//!   files (matched by path, then by file name, then by content), read on
//!   both sides from the old package — as zstd's prefix, the mechanism of
//!   `zstd --patch-from`. Segments are at most 16 MiB and their references
//!   at most 64 MiB, so making or applying a delta needs bounded memory
//!   whatever the package size.
//! * **Recipes**, one per chunk of the new package, say how to store it:
//!   raw, recompressed (with the level found when the delta was made; the
//!   stored length is checked), or, when our compressor does not reproduce
//!   the chunk (a package built by another zlib), its stored bytes.
//!
//! The file layout is in [`format`]; [`make`] and [`apply`] are the two
//! operations. Invariant: [`apply`] writes nothing at its destination
//! unless the rebuilt file has the size and SHA-256 the delta promises.

pub mod apply;
pub mod error;
pub mod format;
pub mod make;

pub use apply::{apply, Applied};
pub use error::{DeltaError, Result};
pub use format::{DeltaHeader, DeltaReader, FileId, Recipe, Segment, SegmentData};
pub use make::{make, make_with_progress, DeltaStats, MakeOptions};
