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
