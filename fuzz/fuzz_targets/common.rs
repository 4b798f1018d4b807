use std::io::Write;

/// The readers work on files (pread), so fuzz input goes into an
/// anonymous in-memory file.
pub fn memfile(data: &[u8]) -> std::fs::File {
    let fd =
        rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd_create");
    let mut f = std::fs::File::from(fd);
    f.write_all(data).expect("writing a memfd");
    f
}

/// Reads every entry's data (and, with `attributes`, every attribute) of a
/// package, ignoring errors: what a reader of a hostile package does.
#[allow(dead_code)]
pub fn read_every_entry(pkg: &exos_hpkg::Package, attributes: bool) {
    let mut buf = vec![0u8; 70_000];
    for (_, e) in pkg.toc().walk() {
        let mut off = 0;
        while off < e.size() {
            match pkg.read_at(e, off, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => off += n as u64,
            }
        }
        if attributes {
            for a in e.attributes() {
                let _ = pkg.read_attribute(&a);
            }
        }
    }
}
