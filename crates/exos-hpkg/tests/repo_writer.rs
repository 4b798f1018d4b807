//! The HPKR writer against a repository made by Haiku's own `package_repo`
//! (fixture `generated_testrepo.hpkr`, holding `generated_testpkg-zlib.hpkg`):
//! from the same package and repository info, the repository info section
//! (a flattened BMessage, hash table included) must be the same bytes; the
//! packages section the same attributes with the same string table — only
//! the order of strings used equally often may differ (Haiku orders them
//! with an unstable sort over a hash table; readers look strings up by
//! index); the header must agree on every field but the compressed size;
//! and the independent `hpkg` crate must read it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use exos_hpkg::budget::{Budget, Limits};
use exos_hpkg::heap::HeapReader;
use exos_hpkg::writer::BuildOptions;
use exos_hpkg::{Compression, Package, RepoHeader, Repository};

fn fixtures() -> PathBuf {
    std::env::var("EXOS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"))
}

fn heap(path: &Path) -> (RepoHeader, Vec<u8>) {
    let file = File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    let mut hb = vec![0u8; 72];
    file.read_exact_at(&mut hb, 0).unwrap();
    let header = RepoHeader::parse(&hb, size).unwrap();
    let budget = Budget::new(Limits::default(), size);
    let reader = HeapReader::new(Arc::new(file), header.heap, &budget).unwrap();
    let bytes = reader.read_vec(0, reader.len()).unwrap();
    (header, bytes)
}

#[test]
fn a_repository_written_here_matches_haikus_package_repo_byte_for_byte() {
    let theirs = fixtures().join("generated_testrepo.hpkr");
    let pkg_path = fixtures().join("generated_testpkg-zlib.hpkg");
    let repo = Repository::open(&theirs).unwrap();
    let pkg = Package::open(&pkg_path).unwrap();
    let sha = exos_root::Sha256::of_file(&pkg_path).unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::Zlib, Compression::None, Compression::Zstd] {
        let ours = dir.path().join(format!("repo-{compression:?}.hpkr"));
        exos_hpkg::repo_writer::write_repository(
            &ours,
            &repo.info,
            &[(pkg.info().clone(), sha.clone())],
            BuildOptions::with_compression(compression),
        )
        .unwrap();
        let (th, tb) = heap(&theirs);
        let (oh, ob) = heap(&ours);
        let info_len = th.info_length as usize;
        assert_eq!(
            &ob[..oh.info_length as usize],
            &tb[..info_len],
            "repository info differs"
        );
        assert_eq!(ob.len(), tb.len(), "packages section differs in size");
        // The same strings in the table (as a set), the same attributes.
        let table = |b: &[u8]| {
            let start = oh.info_length as usize;
            let len = oh.packages_strings_length as usize;
            let mut t: Vec<Vec<u8>> = b[start..start + len]
                .split(|&c| c == 0)
                .map(|x| x.to_vec())
                .collect();
            t.sort();
            t
        };
        assert_eq!(table(&ob), table(&tb), "string tables differ");
        assert_eq!(oh.info_length, th.info_length);
        assert_eq!(oh.packages_length, th.packages_length);
        assert_eq!(oh.packages_strings_length, th.packages_strings_length);
        assert_eq!(oh.packages_strings_count, th.packages_strings_count);
        assert_eq!(oh.heap.size_uncompressed, th.heap.size_uncompressed);
        assert_eq!(oh.minor_version, th.minor_version);
        // And it reads back as the same repository.
        let again = Repository::open(&ours).unwrap();
        assert_eq!(again.info, repo.info);
        let a: Vec<_> = again.packages().collect();
        let b: Vec<_> = repo.packages().collect();
        assert_eq!(a, b, "packages decode differently");
        // Another reader, written independently from Haiku's sources.
        let other = hpkg::repository::Repository::load(&ours).unwrap();
        assert_eq!(other.packages.len(), 1);
        assert_eq!(other.packages[0].checksum.as_deref(), Some(sha.as_str()));
        assert_eq!(other.info.name.as_deref(), Some("TestRepo"));
    }
    // With zlib, Haiku's file and ours differ only by the compressor's
    // choices: the whole file is within a few bytes of the same size.
    let ours = dir.path().join("repo-Zlib.hpkr");
    let (a, b) = (
        std::fs::metadata(&ours).unwrap().len() as i64,
        std::fs::metadata(&theirs).unwrap().len() as i64,
    );
    assert!((a - b).abs() < 64, "{a} vs {b} bytes");
}
