//! `exos_root::elf::interpreter` over arbitrary bytes (an imported file, a
//! program in a view): never panics, never reads past what it was given,
//! allocates at most its bounds, and any answer is a path it found there.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let found = exos_root::elf::interpreter(&|offset, buf| {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| std::io::Error::other("overflow"))?;
        let src = data
            .get(start..end)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    });
    if let Some(path) = found {
        assert!(path.len() <= exos_root::elf::MAX_PATH);
        assert!(!path.is_empty());
    }
});
