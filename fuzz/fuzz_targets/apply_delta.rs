//! Deltas: arbitrary bytes as a delta, applied to a fixed small package
//! (the input's "made from" field is set to that package, so the fuzzer
//! gets past that check to the segments and recipes). No panic, no hang,
//! no runaway allocation, and an output only if it is the promised file.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Base {
    dir: tempfile::TempDir,
    old: std::path::PathBuf,
    id: exos_delta::FileId,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, _) = exos_hostile::delta_pair(dir.path()).expect("delta pair");
        let id = exos_delta::FileId::of(&old).expect("hash");
        Base { dir, old, id }
    })
}

fuzz_target!(|data: &[u8]| {
    let b = base();
    let mut input = data.to_vec();
    if input.len() >= 48 {
        input[8..16].copy_from_slice(&b.id.size.to_le_bytes());
        input[16..48].copy_from_slice(&b.id.sha256.0);
    }
    let delta = b.dir.path().join("input.delta");
    let out = b.dir.path().join("out.hpkg");
    if std::fs::write(&delta, &input).is_err() {
        return;
    }
    if let Ok(mut r) = exos_delta::DeltaReader::open(&delta) {
        while let Ok(Some(_)) = r.next_segment() {}
        while let Ok(Some(_)) = r.next_recipe() {}
        let _ = r.finish();
    }
    if exos_delta::apply(&b.old, &delta, &out).is_ok() {
        let id = exos_delta::FileId::of(&out).expect("hash");
        let promised = exos_delta::DeltaReader::open(&delta)
            .expect("reopen")
            .header()
            .to;
        assert_eq!(id, promised, "apply wrote a file the delta did not promise");
        let _ = std::fs::remove_file(&out);
    }
});
