//! FUSE over io_uring (Linux 6.14 and later; added to fuser for EXOS).
//!
//! After FUSE_INIT the kernel can hand requests to the daemon through
//! io_uring commands instead of `read(2)` on `/dev/fuse`: one queue per
//! possible CPU, and a request is queued on the CPU of the process that
//! made it. Each queue here is served by its own thread pinned to that CPU,
//! so a request and its reply wake a thread on the same CPU as the caller
//! instead of a halted one elsewhere, and one `io_uring_enter` both commits
//! a reply and waits for the next request.
//!
//! Forgets and interrupts still come through `/dev/fuse`, and requests do
//! until every queue has registered its entries: the session keeps its
//! `/dev/fuse` threads as well.
//!
//! The kernel's interface (`include/uapi/linux/fuse.h`): an entry is two
//! buffers, a header (`fuse_uring_req_header`: the in/out header, the
//! operation's first argument, and `fuse_uring_ent_in_out`) and a payload
//! for the remaining arguments. `REGISTER` hands an entry to the kernel;
//! its completion carries a request; `COMMIT_AND_FETCH` returns the reply
//! and hands the entry back.

use std::io;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::error;
use log::warn;

use crate::Filesystem;
use crate::ReplyEmpty;
use crate::channel::Channel;
use crate::ll::Operation;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

const IN_OUT_SIZE: usize = 128;
const OP_IN_SIZE: usize = 128;
const IN_HEADER_SIZE: usize = 40;
const OUT_HEADER_SIZE: usize = 16;
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// `user_data` of the poll on the stop eventfd.
const STOP: u64 = u64::MAX;

/// `struct fuse_uring_req_header`, page-aligned as the kernel prefers.
#[repr(C, align(4096))]
struct Headers {
    in_out: [u8; IN_OUT_SIZE],
    op_in: [u8; OP_IN_SIZE],
    /// `struct fuse_uring_ent_in_out`: flags, commit_id, payload_sz,
    /// padding, reserved.
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// One ring entry: the buffers the kernel writes a request into and reads
/// the reply from. Boxed so their addresses stay put.
struct Entry {
    headers: Box<Headers>,
    payload: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
    commit_id: u64,
}

/// A reply captured from a filesystem method (see `ChannelSender`).
/// Methods may reply from another thread; the queue thread waits for it.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    reply: Mutex<Option<Vec<u8>>>,
    ready: Condvar,
}

impl Capture {
    pub(crate) fn put(&self, bufs: &[IoSlice<'_>]) {
        let mut data = Vec::with_capacity(bufs.iter().map(|b| b.len()).sum());
        for b in bufs {
            data.extend_from_slice(b);
        }
        *self.reply.lock().unwrap_or_else(|e| e.into_inner()) = Some(data);
        self.ready.notify_one();
    }

    fn take(&self) -> Vec<u8> {
        let mut reply = self.reply.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(data) = reply.take() {
                return data;
            }
            reply = self.ready.wait(reply).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Settings for the io_uring queues, decided after FUSE_INIT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queues {
    /// Entries per queue: how many requests of one CPU can be in flight.
    pub(crate) depth: usize,
    /// Size of each entry's payload buffer: the kernel refuses entries
    /// smaller than its largest request or reply.
    pub(crate) payload_size: usize,
}

/// How many FUSE-over-io_uring queues the kernel expects: one per possible
/// CPU.
pub fn possible_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// An eventfd that tells the queue threads to stop.
pub(crate) fn stop_event() -> io::Result<Arc<OwnedFd>> {
    // SAFETY: eventfd has no memory preconditions; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }))
}

pub(crate) fn signal_stop(stop: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer.
    unsafe { libc::write(stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET bounds-checks nothing,
    // so the index is checked against the set's size first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return;
        }
        libc::CPU_SET(cpu, &mut set);
        // An offline CPU cannot be pinned to; its queue then runs anywhere
        // (the kernel sends it requests only if the CPU comes online).
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The 80 bytes of command data: `struct fuse_uring_cmd_req`.
fn command(qid: u16, commit_id: u64) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    cmd
}

fn register_sqe(fd: i32, qid: u16, index: usize, entry: &Entry) -> squeue::Entry128 {
    let sqe = opcode::UringCmd80::new(types::Fd(fd), CMD_REGISTER)
        .cmd(command(qid, 0))
        .addr(Some(entry.iov.as_ptr() as u64))
        .build()
        .user_data(index as u64);
    with_len(sqe, 2)
}

/// Sets the SQE's `len` (the iovec count REGISTER requires), which the
/// io-uring crate's `UringCmd80` has no setter for.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    const _: () = assert!(std::mem::size_of::<squeue::Entry128>() == 128);
    // SAFETY: Entry128 is #[repr(C)] over the kernel's 128-byte SQE, in
    // which `len` is the u32 at byte 24; every bit pattern is valid.
    let mut bytes: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    bytes[24..28].copy_from_slice(&len.to_ne_bytes());
    unsafe { std::mem::transmute(bytes) }
}

fn commit_sqe(fd: i32, qid: u16, index: usize, commit_id: u64) -> squeue::Entry128 {
    opcode::UringCmd80::new(types::Fd(fd), CMD_COMMIT_AND_FETCH)
        .cmd(command(qid, commit_id))
        .build()
        .user_data(index as u64)
}

/// Serves queue `qid` until the connection ends or `stop` is signalled.
pub(crate) fn serve_queue<FS: Filesystem>(
    qid: u16,
    queues: Queues,
    ch: Channel,
    stop: Arc<OwnedFd>,
    event_loop: SessionEventLoop<FS>,
) -> io::Result<()> {
    pin_to_cpu(usize::from(qid));
    let fd = std::os::fd::AsFd::as_fd(&ch).as_raw_fd();
    let slots = (queues.depth * 2 + 2) as u32;
    let mut ring: IoUring<squeue::Entry128, cqueue::Entry> =
        match IoUring::builder().setup_cqsize(slots * 2).build(slots) {
            Ok(ring) => ring,
            Err(e) => {
                // Said now, not at the end: until every queue registers,
                // the kernel keeps requests on /dev/fuse.
                error!("io_uring queue {qid}: {e}; requests stay on /dev/fuse");
                return Err(e);
            }
        };

    let mut entries: Vec<Entry> = (0..queues.depth)
        .map(|_| {
            let mut headers: Box<Headers> = Box::new(Headers {
                in_out: [0; IN_OUT_SIZE],
                op_in: [0; OP_IN_SIZE],
                flags: 0,
                commit_id: 0,
                payload_sz: 0,
                padding: 0,
                reserved: 0,
            });
            let mut payload = vec![0u8; queues.payload_size].into_boxed_slice();
            let iov = Box::new([
                libc::iovec {
                    iov_base: (&mut *headers as *mut Headers).cast(),
                    iov_len: std::mem::size_of::<Headers>(),
                },
                libc::iovec {
                    iov_base: payload.as_mut_ptr().cast(),
                    iov_len: payload.len(),
                },
            ]);
            Entry {
                headers,
                payload,
                iov,
                commit_id: 0,
            }
        })
        .collect();

    let stop_poll = opcode::PollAdd::new(types::Fd(stop.as_raw_fd()), libc::POLLIN as u32)
        .build()
        .user_data(STOP);
    {
        let mut sq = ring.submission();
        for (i, e) in entries.iter().enumerate() {
            // SAFETY: the entry's buffers (and its iovec) are dropped only
            // after the ring (see the end of this function).
            unsafe { sq.push(&register_sqe(fd, qid, i, e)) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        let stop_poll: squeue::Entry128 = stop_poll.into();
        // SAFETY: the eventfd outlives the ring (held by `stop`).
        unsafe { sq.push(&stop_poll) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    }

    let capture = Arc::new(Capture::default());
    let sender = ch.sender().capturing(capture.clone());
    let mut request = vec![0u64; (IN_HEADER_SIZE + OP_IN_SIZE + queues.payload_size) / 8 + 1];
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(slots as usize);
    let mut live = entries.len();
    let result = 'serve: loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => break 'serve Err(e),
        }
        done.clear();
        done.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(user_data, res) in &done {
            if user_data == STOP {
                break 'serve Ok(());
            }
            let index = user_data as usize;
            let Some(entry) = entries.get_mut(index) else {
                break 'serve Err(io::Error::other("io_uring completion for no entry"));
            };
            if res == -libc::EINTR || res == -libc::EAGAIN {
                // Not taken: hand the entry over again.
                let sqe = if entry.commit_id == 0 {
                    register_sqe(fd, qid, index, entry)
                } else {
                    commit_sqe(fd, qid, index, entry.commit_id)
                };
                // SAFETY: as above, the buffers outlive the ring.
                if unsafe { ring.submission().push(&sqe) }.is_err() {
                    break 'serve Err(io::Error::other("io_uring submission queue full"));
                }
                continue;
            }
            if res < 0 {
                if matches!(-res, libc::ENOTCONN | libc::ENODEV | libc::ECANCELED) {
                    // The connection ended (unmount, abort).
                    break 'serve Ok(());
                }
                // The kernel refused this entry (a reply it could not take,
                // say): the entry is lost, the queue goes on with the rest.
                let err = io::Error::from_raw_os_error(-res);
                live -= 1;
                error!("io_uring queue {qid}: entry {index}: {err}; {live} entries left");
                if live == 0 {
                    break 'serve Err(io::Error::other(format!(
                        "io_uring queue {qid}: every entry failed, last with {err}"
                    )));
                }
                continue;
            }
            let reply = handle(entry, &mut request, &sender, &capture, &event_loop);
            let Some(commit_id) = reply else {
                // DESTROY answered: the kernel tears the queues down next.
                continue;
            };
            let sqe = commit_sqe(fd, qid, index, commit_id);
            // SAFETY: as above.
            if unsafe { ring.submission().push(&sqe) }.is_err() {
                break 'serve Err(io::Error::other("io_uring submission queue full"));
            }
        }
    };
    // The kernel may still hold the entries' buffers until the ring is
    // closed: drop the ring before them.
    drop(ring);
    drop(entries);
    result
}

/// Dispatches the request in `entry` and writes its reply back into the
/// entry. Returns the commit id to hand back, or None after DESTROY.
fn handle<FS: Filesystem>(
    entry: &mut Entry,
    request: &mut [u64],
    sender: &crate::channel::ChannelSender,
    capture: &Capture,
    event_loop: &SessionEventLoop<FS>,
) -> Option<u64> {
    let h = &mut *entry.headers;
    let commit_id = h.commit_id;
    entry.commit_id = commit_id;
    let unique = u64::from_ne_bytes(h.in_out[8..16].try_into().unwrap_or_default());
    let bytes: &mut [u8] = zerocopy_bytes(request);
    let reply = match assemble(&h.in_out, &h.op_in, &entry.payload, h.payload_sz, bytes) {
        Ok(len) => match RequestWithSender::new(sender.clone(), &bytes[..len]) {
            Some(req) => {
                if let Ok(Operation::Destroy(_)) = req.request.operation() {
                    req.reply::<ReplyEmpty>().ok();
                    let _ = capture.take();
                    return None;
                }
                req.dispatch(event_loop);
                capture.take()
            }
            None => error_reply(unique, libc::EIO),
        },
        Err(why) => {
            warn!("io_uring request {unique}: {why}");
            error_reply(unique, libc::EIO)
        }
    };
    // The reply: fuse_out_header, then the data.
    let (head, data) = reply.split_at(OUT_HEADER_SIZE.min(reply.len()));
    h.in_out[..head.len()].copy_from_slice(head);
    if data.len() > entry.payload.len() {
        error!(
            "io_uring reply of {} bytes exceeds the entry's buffer",
            data.len()
        );
        let e = error_reply(unique, libc::EIO);
        h.in_out[..OUT_HEADER_SIZE].copy_from_slice(&e);
        h.payload_sz = 0;
    } else {
        entry.payload[..data.len()].copy_from_slice(data);
        h.payload_sz = data.len() as u32;
    }
    Some(commit_id)
}

/// Rebuilds a request as `/dev/fuse` would have delivered it, into `out`:
/// the in-header (the first 40 bytes of `in_out`), the operation's first
/// argument (from `op_in`) and the rest (the first `payload_sz` bytes of
/// `payload`). The header's length counts all three, which is how the
/// first argument's length is known. Returns the request's length.
pub(crate) fn assemble(
    in_out: &[u8],
    op_in: &[u8],
    payload: &[u8],
    payload_sz: u32,
    out: &mut [u8],
) -> Result<usize, String> {
    let header = in_out
        .get(..IN_HEADER_SIZE)
        .ok_or("in/out header shorter than fuse_in_header")?;
    let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let payload_len = payload_sz as usize;
    let payload = payload.get(..payload_len).ok_or_else(|| {
        format!(
            "payload of {payload_len} bytes larger than the entry's {}",
            payload.len()
        )
    })?;
    let first_len = len
        .checked_sub(IN_HEADER_SIZE + payload_len)
        .ok_or_else(|| format!("length {len} less than header and payload ({payload_len})"))?;
    let first = op_in.get(..first_len).ok_or_else(|| {
        format!("first argument of {first_len} bytes larger than the op header area")
    })?;
    let out = out
        .get_mut(..len)
        .ok_or_else(|| format!("request of {len} bytes larger than the buffer"))?;
    out[..IN_HEADER_SIZE].copy_from_slice(header);
    out[IN_HEADER_SIZE..IN_HEADER_SIZE + first_len].copy_from_slice(first);
    out[IN_HEADER_SIZE + first_len..].copy_from_slice(payload);
    Ok(len)
}

/// For the fuzz target `fuse_ring_request`: `data` is an entry as the
/// kernel would fill it (128 bytes in/out header, 128 bytes first-argument
/// area, 4 bytes payload_sz, then the payload buffer); it is rebuilt and
/// parsed as a request. Must never panic.
#[doc(hidden)]
pub fn fuzz_ring_entry(data: &[u8]) {
    if data.len() < IN_OUT_SIZE + OP_IN_SIZE + 4 {
        return;
    }
    let (in_out, rest) = data.split_at(IN_OUT_SIZE);
    let (op_in, rest) = rest.split_at(OP_IN_SIZE);
    let (size, payload) = rest.split_at(4);
    let payload_sz = u32::from_ne_bytes([size[0], size[1], size[2], size[3]]);
    let mut words = vec![0u64; (IN_HEADER_SIZE + OP_IN_SIZE + payload.len()) / 8 + 1];
    let out = zerocopy_bytes(&mut words);
    if let Ok(len) = assemble(in_out, op_in, payload, payload_sz, out) {
        if let Ok(request) = crate::ll::AnyRequest::try_from(&out[..len]) {
            let _ = request.operation();
        }
    }
}

fn error_reply(unique: u64, errno: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(OUT_HEADER_SIZE);
    out.extend_from_slice(&(OUT_HEADER_SIZE as u32).to_ne_bytes());
    out.extend_from_slice(&(-errno).to_ne_bytes());
    out.extend_from_slice(&unique.to_ne_bytes());
    out
}

fn zerocopy_bytes(words: &mut [u64]) -> &mut [u8] {
    zerocopy::IntoBytes::as_mut_bytes(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, opcode: u32) -> [u8; IN_OUT_SIZE] {
        let mut h = [0u8; IN_OUT_SIZE];
        h[0..4].copy_from_slice(&len.to_ne_bytes());
        h[4..8].copy_from_slice(&opcode.to_ne_bytes());
        h[8..16].copy_from_slice(&7u64.to_ne_bytes());
        h
    }

    #[test]
    fn a_request_is_rebuilt_in_dev_fuse_order() {
        // READ: a 40-byte first argument, no payload.
        let h = header(40 + 40, 15);
        let mut op = [0u8; OP_IN_SIZE];
        op[..40].copy_from_slice(&[3u8; 40]);
        let mut out = [0u8; 512];
        assert_eq!(assemble(&h, &op, &[0; 64], 0, &mut out), Ok(80));
        assert_eq!(&out[..40], &h[..40]);
        assert_eq!(&out[40..80], &[3u8; 40]);
        // LOOKUP: no first argument, the name in the payload.
        let h = header(40 + 4, 1);
        assert_eq!(assemble(&h, &op, b"abc\0..", 4, &mut out), Ok(44));
        assert_eq!(&out[40..44], b"abc\0");
    }

    #[test]
    fn lengths_that_do_not_add_up_are_refused() {
        let op = [0u8; OP_IN_SIZE];
        let mut out = [0u8; 512];
        // Shorter than its payload.
        assert!(assemble(&header(40, 1), &op, &[0; 64], 8, &mut out).is_err());
        // A first argument longer than the 128-byte area.
        assert!(assemble(&header(40 + 129, 15), &op, &[0; 64], 0, &mut out).is_err());
        // A payload size past the entry's buffer.
        assert!(assemble(&header(40 + 100, 1), &op, &[0; 64], 100, &mut out).is_err());
        // Larger than the output buffer.
        assert!(assemble(&header(40 + 100, 1), &op, &[0; 600], 100, &mut out[..100]).is_err());
        // A header cut short.
        assert!(assemble(&[0; 16], &op, &[], 0, &mut out).is_err());
    }

    #[test]
    fn any_entry_bytes_are_handled_without_panicking() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut data = vec![0u8; IN_OUT_SIZE + OP_IN_SIZE + 4 + 300];
        for round in 0..20_000 {
            for b in data.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Plausible lengths and opcodes half of the time.
            if round % 2 == 0 {
                let payload = (x % 300) as u32;
                let first = ((x >> 16) % 129) as u32;
                data[0..4].copy_from_slice(&(40 + first + payload).to_ne_bytes());
                data[4..8].copy_from_slice(&(((x >> 24) % 60) as u32).to_ne_bytes());
                data[256..260].copy_from_slice(&payload.to_ne_bytes());
            }
            fuzz_ring_entry(&data);
        }
    }
}
