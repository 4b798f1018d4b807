//! `exos-hostile DIR`: writes every hostile case into DIR, plus
//! `cases.tsv` (file, size, class, expected outcome) for scripts.
//!
//! `exos-hostile seeds FIXTURES DIR`: writes the fuzz seed corpus, one
//! directory per fuzz target, from the real fixtures, the small hostile
//! cases and the example manifests (see fuzz/make-seeds.sh).

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let result = match args.as_slice() {
        [dir] => write_all(dir),
        [cmd, fixtures, dir] if cmd.as_os_str() == "seeds" => write_seeds(fixtures, dir),
        _ => {
            eprintln!("usage: exos-hostile DIR | exos-hostile seeds FIXTURES DIR");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = result {
        eprintln!("exos-hostile: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn write_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut index = std::fs::File::create(dir.join("cases.tsv"))?;
    for case in exos_hostile::cases() {
        std::fs::write(dir.join(case.file_name()), &case.bytes)?;
        writeln!(
            index,
            "{}\t{}\t{}\t{:?}",
            case.file_name(),
            case.bytes.len(),
            case.class,
            case.expect
        )?;
    }
    Ok(())
}

/// A FUSE-over-io_uring entry: 128 bytes of in/out header (a
/// `fuse_in_header` whose length counts all arguments), 128 bytes for the
/// first argument, the payload's size, then the payload.
fn ring_entry(opcode: u32, first: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; 256];
    let len = (40 + first.len() + payload.len()) as u32;
    e[0..4].copy_from_slice(&len.to_ne_bytes());
    e[4..8].copy_from_slice(&opcode.to_ne_bytes());
    e[8..16].copy_from_slice(&2u64.to_ne_bytes()); // unique
    e[16..24].copy_from_slice(&1u64.to_ne_bytes()); // node id: the root
    e[128..128 + first.len()].copy_from_slice(first);
    e.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
    e.extend_from_slice(payload);
    e
}

/// Hostile cases small enough for a seed corpus (the large ones are in the
/// tests; a fuzzer mutates small inputs best).
const MAX_SEED: usize = 4096;

fn write_seeds(fixtures: &Path, out: &Path) -> std::io::Result<()> {
    let put = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let d = out.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(name), bytes)
    };
    let small_fixture = |name: &str| std::fs::read(fixtures.join(name));
    let mut packages: Vec<(String, Vec<u8>)> = vec![
        (
            "mini".into(),
            small_fixture("generated_mini-uncompressed.hpkg")?,
        ),
        (
            "artificial".into(),
            small_fixture(
                "haikudepotserver-packagefile_src_test_resources_artificial-1.0.0-any.hpkg",
            )?,
        ),
    ];
    let mut repos: Vec<(String, Vec<u8>)> =
        vec![("testrepo".into(), small_fixture("generated_testrepo.hpkr")?)];
    for case in exos_hostile::cases() {
        if case.bytes.len() > MAX_SEED {
            continue;
        }
        match case.extension {
            "hpkg" => packages.push((case.name.into(), case.bytes)),
            _ => repos.push((case.name.into(), case.bytes)),
        }
    }
    let fuzz_key = exos_hpkg::crypt::PackageKey::parse(
        format!("exos-package-key-v1\n{}\n", "5a".repeat(32)).as_bytes(),
        Path::new("fuzz.pkey"),
    )
    .map_err(std::io::Error::other)?;
    for (name, bytes) in &packages {
        put("read_package", name, bytes)?;
        // read_encrypted: as plaintext, and sealed with its fixed key.
        put("read_encrypted", name, bytes)?;
        put(
            "read_encrypted",
            &format!("{name}.sealed"),
            &exos_hpkg::crypt::seal(bytes, &fuzz_key, [3; 32]).map_err(std::io::Error::other)?,
        )?;
        // lazy_package reads them through verified blocks too.
        put("lazy_package", name, bytes)?;
        // build_view: the first byte says where the input splits in two.
        let mut whole = vec![255u8];
        whole.extend_from_slice(bytes);
        put("build_view", name, &whole)?;
    }
    let (a, b) = (&packages[0].1, &packages[1].1);
    let mut pair = vec![(a.len() * 255 / (a.len() + b.len())) as u8];
    pair.extend_from_slice(a);
    pair.extend_from_slice(b);
    put("build_view", "mini+artificial", &pair)?;
    for (name, bytes) in &repos {
        put("read_repository", name, bytes)?;
        if let Some(info) = repository_info_section(bytes) {
            put("read_repository_info", name, &info)?;
        }
    }
    // fuse_ring_request: FUSE-over-io_uring entries as the kernel fills
    // them (see vendor/fuser/src/uring.rs, `fuzz_ring_entry`).
    for (name, opcode, first, payload) in [
        ("lookup", 1u32, &[][..], &b"libc.so.6\0"[..]),
        ("getattr", 3, &[0u8; 16][..], &[][..]),
        ("readlink", 5, &[][..], &[][..]),
        ("read", 15, &[0u8; 40][..], &[][..]),
        ("write", 16, &[0u8; 40][..], &b"data"[..]),
        ("getxattr", 22, &[0u8; 8][..], &b"user.haiku.x\0"[..]),
        ("readdirplus", 44, &[0u8; 40][..], &[][..]),
        ("setxattr", 21, &[0u8; 16][..], &b"user.a\0value"[..]),
    ] {
        put(
            "fuse_ring_request",
            name,
            &ring_entry(opcode, first, payload),
        )?;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for e in std::fs::read_dir(&examples)? {
        let e = e?;
        if let Ok(m) = std::fs::read(e.path().join("manifest.json")) {
            put("parse_manifest", &e.file_name().to_string_lossy(), &m)?;
        }
    }
    put(
        "parse_manifest",
        "full",
        br#"{"name":"hello","version":"1.2.0-1","summary":"s","license":"MIT","copyright":"c",
"provides":["cmd:hello = 1.2",{"api":"libhello","version":"1.2","compatible":"1.0"}],
"requires":[{"api":"libgreet","version":">=1.0, <2"},"core.runtime ~2.1",{"any":["pager","less >= 500"]}],
"uses":["system.cuda >= 12"],"conflicts":[{"api":"oldhello","version":"<1.0"}],"replaces":["hello_legacy"]}"#,
    )?;
    put(
        "load_index",
        "small",
        br#"{"name":"app","version":"1.0","requires":["libfoo >=1.2",{"any":["pager","less"]}],"uses":["system.gpu"]}
{"name":"libfoo","version":"1.3","provides":["libfoo = 1.3 compat >= 1.0"],"conflicts":[{"api":"oldfoo"}]}

{"name":"less","version":"5.1","replaces":["pager"],"architecture":"x86_64"}
{"name":"app","version":"2~beta1-3","requires":["libfoo ^2"]}
"#,
    )?;
    put(
        "lazy_package",
        "record",
        br#"{"repository":"main","base":"http://127.0.0.1:8080","file":"app_1%3a2.0+b1_amd64.hpkg","size":4096,"sha256":"8725f0e4b0a3c0b9e0d6f0d3ad0f2f7c5b5f6e2f0f9a6a1e2f2b1c3d4e5f6a7b","metadata_offset":2048,"manifest":{"name":"app","version":"2.0"}}"#,
    )?;
    // apply_delta: a good delta between the two packages the target
    // builds, and the same delta cut short.
    {
        let dir = tempfile::tempdir()?;
        let (old, new) = exos_hostile::delta_pair(dir.path()).map_err(std::io::Error::other)?;
        let d = dir.path().join("pair.delta");
        exos_delta::make(&old, &new, &d, &exos_delta::MakeOptions::default())
            .map_err(std::io::Error::other)?;
        let bytes = std::fs::read(&d)?;
        put("apply_delta", "pair", &bytes)?;
        put("apply_delta", "short", &bytes[..bytes.len() / 2])?;
    }
    // Trust files (a throwaway test key, made by `exos key generate`).
    put(
        "parse_trust",
        "public-key",
        b"untrusted comment: minisign public key 4B9F5751679EBCEB\nRWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la\n",
    )?;
    put(
        "parse_trust",
        "signature",
        b"untrusted comment: signature from exos secret key 4B9F5751679EBCEB\nRUTrvJ5nUVefSxJpq+mI8Ap8jIUYbNGUu7EiAw6ovishBmUi18jOVodbi6WwICLpC/JAuiG3X5X4gaJ/izV5R9OiC1CMGacctQQ=\ntrusted comment: timestamp:1795662131\tfile:hello.hpkg\thashed\tpackage:hello-1.0-1\nxw18ussjTdEkLD3OXH347HY4fwzHyNCEly+tZoEFY5m88dThdf7KgtBOEt2rkjeMRusjsaWkoHghI/QvEMVZBg==\n",
    )?;
    put(
        "parse_trust",
        "secret-key",
        b"untrusted comment: minisign secret key 4B9F5751679EBCEB (unencrypted, written by exos)\nRWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA67yeZ1FXn0tHlVj9gX4NTLdNKsUj4oUgzn96sZ4CQHCM5kK+as1/dcGDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7laVX2srhyxzub9ocvHrGTDwdcIDssnppVF2z3Xngyj50E=\n",
    )?;
    put(
        "parse_trust",
        "trust.json",
        br#"{"keys":[{"id":"4B9F5751679EBCEB","public_key":"RWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la","name":"rel","layers":["system","common"]}],"policy":{"system":"signed","common":"any","user":"any"}}"#,
    )?;
    // Repository documents (as `exos repo index` writes them).
    put(
        "parse_repo_metadata",
        "timestamp.json",
        br#"{"type":"exos-timestamp","version":3,"expires":1795749386,"index":{"version":2,"size":1337,"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#,
    )?;
    put(
        "parse_repo_metadata",
        "root.json",
        br#"{"type":"exos-root","version":1,"expires":1827198986,"keys":{"root":["RWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la"],"index":["RWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la"],"timestamp":["RWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la"]}}"#,
    )?;
    put(
        "parse_repo_metadata",
        "index.json",
        br#"{"type":"exos-index","version":2,"expires":1798254986,"packages":[{"file":"hello.hpkg","size":785,"sha256":"c278e0cbd1645e9ae8d4bb8b72137dc472e75195f845e99d64431766fb260fea","signed":true,"manifest":{"name":"hello","version":"1.0-1","summary":"Prints a greeting","requires":["greetings >=1.0"]}}]}"#,
    )?;
    // Regressions the fuzzer found.
    put(
        "parse_manifest",
        "regression-array",
        br#"["T_,","lame",",",""]"#,
    )?;
    let sha = "0123456789abcdef".repeat(4);
    put(
        "parse_state_list",
        "active.list",
        format!("# exos state\n# created 1764000000\n# change install a 1.0\nsystem a-1.0.hpkg {sha}\nuser b.hpkg {sha}\n").as_bytes(),
    )?;
    put(
        "parse_state_list",
        "overlays.json",
        br#"{"overlays":[{"package":"hello","layer":"system","dir":"/srv/fix","added":1764150000,"forced":false},
{"package":"tool","layer":"common","dir":"/srv/tool","added":1,"forced":true}]}"#,
    )?;
    put(
        "parse_state_list",
        "content.digests",
        &exos_root::digests::ContentDigests(vec![(1, [7; 16]), (4, [0xab; 16]), (9, [0; 16])])
            .render(),
    )?;
    put(
        "parse_state_list",
        "status.json",
        br#"{"root":"/r","state_list":null,"mountpoint":"/m","pid":1,"generation":2,"updated":3,
"layers":{"system":[{"file":"a.hpkg","name":"a","version":"1","sha256":null,"memory_bytes":9}],"common":[],"user":[]},
"refused":[{"layer":"user","file":"/r/user/packages/x.hpkg","reason":"r"}],
"conflicts":[{"layer":"system","path":"bin/x","winner":"a.hpkg","loser":"b.hpkg"}],
"owners":{"system":{"uid":0,"gid":0},"common":{"uid":0,"gid":0},"user":{"uid":1000,"gid":1000}},
"security":{"nosuid":true,"nodev":true,"setuid":{"system":false,"common":false,"user":false}},
"memory":{"used_bytes":1,"budget_bytes":2},"live":{"mode":"inotify","interval_ms":null,"reason":null},
"cache_bytes":8388608,"nodes":10,"index_bytes":100}"#,
    )?;
    put(
        "parse_state_list",
        "packages.json",
        format!(r#"{{"origins":{{"{sha}":{{"repository":"main","key":"RWTrvJ5nUVefS8GDm+cxlrfgprg7bcqmnYmQwdgv1R7MqLAUlZr3Y7la"}}}}}}"#).as_bytes(),
    )?;
    put(
        "parse_repo_metadata",
        "repo.info",
        b"name HaikuPorts\nvendor \"Haiku Project\"\nsummary \"The \\\"ports\\\" repository\" # comment\npriority 1\nbaseurl https://eu.hpkg.haiku-os.org/haikuports/master/x86_64/current\nidentifier tag:haikuports.org,2013:repositories/haikuports/master/x86_64\narchitecture x86_64\nlicense \"MIT\"\n",
    )?;
    put(
        "parse_state_list",
        "launch.json",
        br#"{"spec":{"root":"/r","mountpoint":"/m","audience":"User","person":{"name":"nobody","uid":65534,"gid":65534,"groups":[],"home":"/","shell":"/bin/sh"},"sandbox":{"net":false,"data_name":"app"},"library_dirs":[]},"program":{"Unix":[115,104]},"args":[],"path":null}"#,
    )?;
    // access_rules: (uid u16, mode u32) per directory, the file last.
    let stat = |uid: u16, mode: u32| [uid.to_le_bytes().as_slice(), &mode.to_le_bytes()].concat();
    for (name, chain) in [
        (
            "root-chain",
            vec![stat(0, 0o40755), stat(0, 0o40755), stat(0, 0o100600)],
        ),
        (
            "user-layer",
            vec![
                stat(0, 0o40755),
                stat(1, 0o40755),
                stat(1, 0o40755),
                stat(0, 0o100600),
            ],
        ),
        ("sticky", vec![stat(0, 0o41777), stat(0, 0o100644)]),
        (
            "two-users",
            vec![stat(1, 0o40755), stat(2, 0o40700), stat(1, 0o100640)],
        ),
        ("link", vec![stat(0, 0o40755), stat(0, 0o120777)]),
    ] {
        put("access_rules", name, &chain.concat())?;
    }
    Ok(())
}

/// The repository-info section (a flattened BMessage) of an uncompressed
/// or compressed HPKR file.
fn repository_info_section(bytes: &[u8]) -> Option<Vec<u8>> {
    let h = exos_hpkg::RepoHeader::parse(bytes.get(..72)?, bytes.len() as u64).ok()?;
    let dir = std::env::temp_dir().join(format!("exos-seed-{}", std::process::id()));
    std::fs::write(&dir, bytes).ok()?;
    let file = std::sync::Arc::new(std::fs::File::open(&dir).ok()?);
    let _ = std::fs::remove_file(&dir);
    let heap =
        exos_hpkg::heap::HeapReader::new(file, h.heap, &exos_hpkg::budget::Budget::unlimited())
            .ok()?;
    heap.read_vec(h.info_offset(), h.info_length as u64).ok()
}
