use std::io::Write;
use std::os::fd::FromRawFd;

extern "C" {
    fn memfd_create(name: *const std::ffi::c_char, flags: u32) -> i32;
}

/// The readers work on files (pread), so fuzz input goes into an
/// anonymous in-memory file.
pub fn memfile(data: &[u8]) -> std::fs::File {
    // SAFETY: memfd_create returns a fresh, owned descriptor or -1.
    let fd = unsafe { memfd_create(c"fuzz".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create failed");
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.write_all(data).unwrap();
    f
}
