//! A sandbox's seccomp filter: system calls a sandboxed program has no use
//! for, whose kernel code has been a steady source of privilege escalations,
//! or that reach outside the sandbox (`AF_VSOCK` and `AF_NETLINK` sockets,
//! `personality` flags that weaken ASLR) — refused with EPERM (`clone3` with
//! ENOSYS, whose flags a filter cannot read: libc then falls back to
//! `clone`, whose flags it can). Landlock covers files, signals and ptrace;
//! this covers the rest, as Flatpak's filter does.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::ViewError;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const ARCH: TargetArch = TargetArch::riscv64;

/// System calls refused outright.
const REFUSED: &[libc::c_long] = &[
    // Kernel keyrings: shared with the host user's sessions.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // Large, privileged-by-history kernel interfaces.
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Mount changes (Landlock refuses them too) and namespaces joined.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_setns,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
];

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, ViewError> {
    let c = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(err)?;
    SeccompRule::new(vec![c]).map_err(err)
}

/// One condition on the low 32 bits of an argument (an `int`).
fn int(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ViewError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(err)
}

/// `personality` values a program may set: Linux's own (0), 32-bit
/// Linux (`PER_LINUX32`), and the query (0xffffffff) — never a flag that
/// weakens the address-space randomisation (`ADDR_NO_RANDOMIZE`, what
/// `setarch -R` sets) or maps page zero, as Flatpak allows.
const PERSONALITIES: [u64; 3] = [0, 0x0008, 0xffff_ffff];

/// Socket families refused: `AF_VSOCK` (a way out to the hypervisor) and
/// `AF_NETLINK` (kernel interfaces; with `--net` its routing protocol,
/// which name resolution asks for local addresses, stays).
fn socket_rules(net: bool) -> Result<Vec<SeccompRule>, ViewError> {
    let vsock =
        SeccompRule::new(vec![int(0, SeccompCmpOp::Eq, libc::AF_VSOCK as u64)?]).map_err(err)?;
    let mut netlink = vec![int(0, SeccompCmpOp::Eq, libc::AF_NETLINK as u64)?];
    if net {
        netlink.push(int(2, SeccompCmpOp::Ne, libc::NETLINK_ROUTE as u64)?);
    }
    Ok(vec![vsock, SeccompRule::new(netlink).map_err(err)?])
}

fn err(e: impl std::fmt::Display) -> ViewError {
    ViewError::Seccomp(e.to_string())
}

/// The two programs of the filter: EPERM rules, then the ENOSYS one.
/// `net`: the sandbox shares the host's network (`--net`).
pub fn programs(net: bool) -> Result<Vec<BpfProgram>, ViewError> {
    let new_user = libc::CLONE_NEWUSER as u64;
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|&n| (n, Vec::new())).collect();
    // New user namespaces: a nested one would give the program every
    // capability over new namespaces, and their kernel code with them.
    eperm.insert(
        libc::SYS_unshare,
        vec![condition(0, SeccompCmpOp::MaskedEq(new_user), new_user)?],
    );
    // clone's flags are its first argument on every architecture here.
    eperm.insert(
        libc::SYS_clone,
        vec![condition(0, SeccompCmpOp::MaskedEq(new_user), new_user)?],
    );
    // Typing into the terminal the sandbox was started from (TIOCSTI), or
    // driving the console (TIOCLINUX).
    eperm.insert(
        libc::SYS_ioctl,
        vec![
            condition(1, SeccompCmpOp::MaskedEq(0xFFFF_FFFF), libc::TIOCSTI)?,
            condition(1, SeccompCmpOp::MaskedEq(0xFFFF_FFFF), libc::TIOCLINUX)?,
        ],
    );
    eperm.insert(libc::SYS_socket, socket_rules(net)?);
    eperm.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(
            PERSONALITIES
                .iter()
                .map(|&p| int(0, SeccompCmpOp::Ne, p))
                .collect::<Result<_, _>>()?,
        )
        .map_err(err)?],
    );
    let eperm = SeccompFilter::new(
        eperm,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )
    .map_err(err)?;
    let enosys = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )
    .map_err(err)?;
    Ok(vec![
        eperm.try_into().map_err(err)?,
        enosys.try_into().map_err(err)?,
    ])
}

/// Installs the filter on this thread (what it starts inherits it). Needs
/// no-new-privileges, which the Landlock domain set first.
pub fn apply(net: bool) -> Result<(), ViewError> {
    for program in programs(net)? {
        seccompiler::apply_filter(&program).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles() {
        assert_eq!(super::programs(false).unwrap().len(), 2);
        assert_eq!(super::programs(true).unwrap().len(), 2);
    }
}
