//! The sandbox's pieces on their own: its seccomp filter, applied to one
//! thread of this test (a filter binds only the thread that installs it
//! and what it starts), and the environment a sandboxed command gets.

use std::path::PathBuf;

use exos_view::{seccomp, Audience, Person, Sandbox, ViewSpec};
use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

/// Runs `f` on a new thread under the sandbox's filter.
fn filtered<T: Send + 'static>(net: bool, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        rustix::thread::set_no_new_privs(true).unwrap();
        seccomp::apply(net).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn errno_of<T>(r: nix::Result<T>) -> Option<Errno> {
    r.err()
}

#[test]
fn the_filter_refuses_the_ways_out_and_keeps_ordinary_work_going() {
    let got = filtered(false, || {
        let vsock = errno_of(socket(
            AddressFamily::Vsock,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        ));
        let netlink = errno_of(socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        ));
        let inet = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .is_ok();
        let userns = errno_of(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER));
        let aslr_off = errno_of(nix::sys::personality::set(
            nix::sys::personality::Persona::ADDR_NO_RANDOMIZE,
        ));
        // Programs still start: glibc falls back from clone3 (ENOSYS under
        // the filter) to clone.
        let spawned = std::process::Command::new("true")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        (vsock, netlink, inet, userns, aslr_off, spawned)
    });
    let (vsock, netlink, inet, userns, aslr_off, spawned) = got;
    assert_eq!(vsock, Some(Errno::EPERM), "AF_VSOCK");
    assert_eq!(netlink, Some(Errno::EPERM), "AF_NETLINK without --net");
    assert!(inet, "an ordinary socket");
    assert_eq!(userns, Some(Errno::EPERM), "a new user namespace");
    assert_eq!(aslr_off, Some(Errno::EPERM), "turning ASLR off");
    assert!(spawned, "running a program");
}

#[test]
fn with_net_the_routing_netlink_stays_and_others_do_not() {
    let (route, audit) = filtered(true, || {
        let route = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .is_ok();
        let audit = errno_of(socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkAudit,
        ));
        (route, audit)
    });
    assert!(route, "NETLINK_ROUTE with --net");
    assert_eq!(audit, Some(Errno::EPERM), "NETLINK_AUDIT");
}

fn person(uid: u32) -> Person {
    Person {
        name: "alice".into(),
        uid,
        gid: uid,
        groups: vec![],
        home: PathBuf::from("/home/alice"),
        shell: PathBuf::from("/bin/sh"),
    }
}

#[test]
fn a_sandbox_sees_its_own_data_directory_as_home() {
    let spec = ViewSpec {
        root: "/r".into(),
        mountpoint: "/m".into(),
        audience: Audience::User,
        person: person(1000),
        sandbox: Some(Sandbox {
            net: false,
            data_name: "app".into(),
        }),
        library_dirs: vec!["/system/apps/x/lib".into()],
    };
    assert_eq!(spec.data_dir(), PathBuf::from("/r/data/users/alice/app"));
    let env = spec.environment(Some("/usr/bin".into()), |p| p.starts_with("/system"));
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    };
    assert_eq!(get("HOME").as_deref(), Some("/data/app"));
    assert_eq!(get("PATH").as_deref(), Some("/system/bin:/usr/bin"));
    assert_eq!(
        get("LD_LIBRARY_PATH").as_deref(),
        Some("/system/apps/x/lib")
    );
    assert_eq!(get("EXOS_VIEW").as_deref(), Some("user"));
}
