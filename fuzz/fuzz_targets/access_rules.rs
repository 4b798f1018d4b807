//! The decisions about what a directory others may write can serve
//! (`exos_root::walk::Writers`): arbitrary owners and modes for a chain of
//! directories and a file. Whatever the input, a file is admitted only if
//! root alone controls the chain, or it is world-readable, or it belongs to
//! the one other user who controls it — never a file the users able to
//! plant it could not read themselves.
#![no_main]

use std::sync::OnceLock;

use exos_root::walk::Writers;
use libfuzzer_sys::fuzz_target;

/// A real `Stat` (the crate forbids `unsafe`, so no zeroed one), whose
/// owner and mode the input then sets.
fn template() -> rustix::fs::Stat {
    static T: OnceLock<rustix::fs::Stat> = OnceLock::new();
    *T.get_or_init(|| rustix::fs::fstat(tempfile::tempfile().expect("a temporary file")).expect("fstat"))
}

fn stat(uid: u32, mode: u32) -> rustix::fs::Stat {
    let mut st = template();
    st.st_uid = uid;
    st.st_mode = mode;
    st
}

fuzz_target!(|data: &[u8]| {
    // Six bytes per stat: uid (2), mode (4); the last one is the file.
    let stats: Vec<rustix::fs::Stat> = data
        .chunks_exact(6)
        .take(16)
        .map(|c| {
            let uid = u16::from_le_bytes([c[0], c[1]]) as u32 % 4; // root and three users
            let mode = u32::from_le_bytes([c[2], c[3], c[4], c[5]]);
            stat(uid, mode)
        })
        .collect();
    let Some((file, dirs)) = stats.split_last() else {
        return;
    };
    let mut writers = Writers::Root;
    let mut others = std::collections::BTreeSet::new();
    let mut anyone = false;
    for d in dirs {
        writers = writers.through(d);
        if d.st_uid != 0 {
            others.insert(d.st_uid);
        }
        anyone |= d.st_mode & 0o022 != 0;
    }
    // The fold says who can write, and agrees with a plain count.
    let expected = match (anyone || others.len() > 1, others.first()) {
        (true, _) => Writers::Anyone,
        (false, Some(&u)) => Writers::RootAnd(u),
        (false, None) => Writers::Root,
    };
    assert_eq!(writers, expected);
    if writers.admits(file).is_ok() {
        let regular = file.st_mode & 0o170000 == 0o100000;
        let world_readable = file.st_mode & 0o004 != 0;
        assert!(regular, "a file that is not regular was admitted");
        match writers {
            Writers::Root => {}
            Writers::RootAnd(u) => assert!(file.st_uid == u || world_readable),
            Writers::Anyone => assert!(world_readable),
        }
    }
});
