//! `exos-shutdown`: systemd-shutdown's "exitrd" program for a system booted
//! by `exos boot --switch-root` — the initramfs script copies it to
//! `/run/initramfs/shutdown`; see [`exos_cli::exitrd`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let (verb, note) = exos_cli::exitrd::Verb::parse(arg.as_deref());
    if let Some(note) = note {
        eprintln!("exos-shutdown: {note}");
    }
    if rustix::process::getpid() != rustix::process::Pid::INIT {
        eprintln!(
            "exos-shutdown: systemd-shutdown runs this as PID 1 from /run/initramfs, with the old root at {}; not to be run by hand",
            exos_cli::exitrd::OLD_ROOT
        );
        return ExitCode::FAILURE;
    }
    let e = exos_cli::exitrd::shut_down(verb);
    eprintln!("exos-shutdown: {verb:?} failed: {e}");
    ExitCode::FAILURE
}
