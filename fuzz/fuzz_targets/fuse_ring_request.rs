//! A FUSE-over-io_uring entry as the kernel fills it (in/out header, first
//! argument area, payload size, payload), rebuilt into a request and parsed
//! as fuser's queue threads do (vendor/fuser/src/uring.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuser::fuzz_ring_entry(data);
});
