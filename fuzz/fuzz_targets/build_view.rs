//! Builds a packagefs view (no FUSE) from two fuzzed packages, one in the
//! system layer and one in the user layer, then walks every node the
//! kernel could ask for and reads every file through the view.
#![no_main]

mod common;

use std::sync::Arc;

use exos_packagefs::activate::{Activation, ActivePackage, FileIdentity};
use exos_packagefs::view::{Privileges, View, ViewSettings};
use exos_root::Layer;
use libfuzzer_sys::fuzz_target;

fn activate(id: u64, layer: Layer, bytes: &[u8]) -> Option<Arc<ActivePackage>> {
    let file = common::memfile(bytes);
    let identity = FileIdentity::of(&file.metadata().ok()?);
    let package = exos_hpkg::Package::from_file(file, "fuzz.hpkg", &Default::default()).ok()?;
    ActivePackage::new(
        id,
        layer,
        "fuzz.hpkg".into(),
        format!("p{id}.hpkg"),
        identity,
        package,
    )
    .ok()
    .map(Arc::new)
}

fuzz_target!(|data: &[u8]| {
    // First byte: where the input splits into two packages.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize * rest.len() / 255).min(rest.len());
    let (a, b) = rest.split_at(at);
    let mut act = Activation::default();
    for (id, layer, bytes) in [(1, Layer::System, a), (2, Layer::User, b)] {
        if let Some(p) = activate(id, layer, bytes) {
            act.layers.get_mut(layer).push(p);
        }
    }
    let view = View::build(&act, &ViewSettings::new(Privileges::default()));
    let mut buf = vec![0u8; 1 << 16];
    let mut stack = vec![0u32];
    while let Some(n) = stack.pop() {
        let node = view.node(n);
        // Every inode number resolves; nodes share one only when they are
        // the same package entry (one file wherever the view shows it).
        let canonical = view.lookup_ino(node.ino).expect("inode number resolves");
        if canonical != n {
            assert_eq!(view.node(canonical).source, node.source);
            assert!(matches!(
                node.source,
                exos_packagefs::view::Source::Entry { .. }
            ));
        }
        let _ = view.name(n);
        let _ = view.kind(n);
        for &c in view.children(n) {
            assert_eq!(view.lookup(n, view.name(c)), Some(c));
            stack.push(c);
        }
        if let exos_packagefs::view::Source::Entry { pkg, entry } = node.source {
            let p = &view.packages[pkg as usize];
            let e = p.package.entry(entry);
            let _ = exos_packagefs::fs::time(e.mtime());
            let mut off = 0;
            while off < e.size() {
                match p.package.read_at(e, off, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => off += k as u64,
                }
            }
        }
    }
});
