//! `exos boot`: a Debian 12 system made of imported packages boots as a
//! systemd-nspawn container with systemd as PID 1, /usr served by an exos
//! mount of the chosen state and an empty /etc filled from the packages'
//! factory defaults; a state that keeps failing is passed over for the last
//! one that booted well. Real components: apt's archive (the packages),
//! systemd-nspawn, systemd 252, FUSE. Needs root, /dev/fuse and
//! systemd-nspawn (scripts/setup.sh installs systemd-container); fails
//! instead of skipping when CI=true.

mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn can_boot() -> bool {
    if !fuse_available() {
        return false;
    }
    let nspawn = Command::new("systemd-nspawn").arg("--version").output();
    if nspawn.is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "systemd-nspawn is missing (scripts/setup.sh installs systemd-container)"
    );
    eprintln!("SKIPPED: systemd-nspawn is missing (apt-get install systemd-container)");
    false
}

/// The processes below `pid`, by reading /proc.
fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut all = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').unwrap() + 1..close].to_string();
        let ppid: u32 = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        all.push((p, ppid, comm));
    }
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for (p, pp, comm) in &all {
            if *pp == parent {
                found.push((*p, comm.clone()));
                parents.push(*p);
            }
        }
    }
    found
}

/// A booting machine: `exos boot` running, and the machine's PID 1.
struct Machine {
    child: Child,
    init: u32,
    log: PathBuf,
}

impl Machine {
    /// Starts `exos boot -r ROOT ARGS` and waits for systemd to be PID 1
    /// of the machine.
    fn boot(root: &Path, log: PathBuf, args: &[&str]) -> Machine {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exos"))
            .args(["boot", "-r", s(root)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(log.with_extension("out")).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            // Up once systemd listens on its private socket (systemctl's
            // way in, without D-Bus).
            if let Some((init, _)) = descendants(child.id())
                .into_iter()
                .find(|(_, comm)| comm == "systemd")
                .filter(|(init, _)| {
                    Path::new(&format!("/proc/{init}/root/run/systemd/private")).exists()
                })
            {
                return Machine { child, init, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "exos boot ended ({status}) before systemd started:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no systemd after 120 s:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a command inside the machine (all its namespaces).
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("timeout")
            .args(["180", "nsenter", "-t", &self.init.to_string(), "-a"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}{}\n{}",
            text(&o.stdout),
            text(&o.stderr),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        text(&o.stdout)
    }

    /// Powers the machine off; what `exos boot` said on stdout.
    fn power_off(self) -> String {
        // The machine goes away under this call: its result is not the test.
        let _ = self.run(&["/usr/bin/systemctl", "poweroff"]);
        self.wait_for_exit()
    }

    /// Asks `exos boot` to stop, as a service manager or ^C would (it
    /// passes the signal on: the machine powers off); what it said.
    fn terminate(self) -> String {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.wait_for_exit()
    }

    fn wait_for_exit(mut self) -> String {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the machine did not power off"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let said = fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "exos boot: {status}\n{said}");
        fs::read_to_string(self.log.with_extension("out")).unwrap()
    }
}

impl Drop for Machine {
    /// A failed test leaves no machine running: its init is killed, which
    /// ends systemd-nspawn, and `exos boot` unmounts.
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|s| s.is_none()) {
            if let Some(init) = rustix::process::Pid::from_raw(self.init as i32) {
                let _ = rustix::process::kill_process(init, rustix::process::Signal::KILL);
            }
            let _ = self.child.wait();
        }
    }
}

/// The mount daemons serving `root`, by their command lines.
fn daemons_of(root: &Path) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("exos-mountd") && c.contains(s(root)))
        .collect()
}

/// Makes the Debian 12 system of scripts/debian-system.sh (in `work`) and
/// installs it into a new root at `root`, as docs/boot.md shows.
/// With `with_exos`, exos itself is one of the system's packages
/// (scripts/exos-package.sh), to manage the system from inside.
fn install_debian_system(work: &Path, root: &Path, with_exos: bool) {
    let system = work.join("debian");
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let o = Command::new(scripts.join("debian-system.sh"))
        .arg(&system)
        .env("EXOS", env!("CARGO_BIN_EXE_exos"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let packages = system.join("packages");
    let mut names = fs::read_to_string(system.join("names")).unwrap();
    if with_exos {
        let bin = Path::new(env!("CARGO_BIN_EXE_exos")).parent().unwrap();
        let o = Command::new(scripts.join("exos-package.sh"))
            .arg(&packages)
            .env("EXOS_BIN_DIR", bin)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        names.push_str("exos\n");
    }
    ok(&["init", "-q", s(root)]);
    let mut install = vec!["install", "-q", "-r", s(root), "-a", s(&packages)];
    install.extend(names.lines());
    ok(&install);
}

/// `command` run as the machine's nobody (uid and gid 65534, no groups).
fn as_nobody<'a>(command: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "/usr/bin/setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    v.extend_from_slice(command);
    v
}

/// Boots `args` and expects a failed boot (exos boot says so and fails).
fn failed_boot(root: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_exos"))
        .args(["boot", "-r", s(root)])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o.stderr));
    text(&o.stderr)
}

#[test]
fn a_debian_system_boots_from_its_packages_and_falls_back_to_the_last_good_state() {
    if !can_boot() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    install_debian_system(tmp.path(), &root, false);
    // One package per set of alternatives: the resolver chose.
    let installed = ok(&["list", "--installed", "-r", s(&root)]);
    for chosen in ["libsystemd0", "mawk"] {
        assert!(installed.contains(chosen), "{chosen} missing:\n{installed}");
    }
    for passed in ["libelogind0", "gawk", "original-awk", "cdebconf"] {
        assert!(
            !installed.contains(passed),
            "{passed} installed:\n{installed}"
        );
    }

    // The machine's /etc starts empty: the packages' own are its factory
    // defaults.
    let m = Machine::boot(&root, tmp.path().join("boot1.log"), &["--allow-setuid"]);
    assert_eq!(
        m.ok(&["/usr/bin/systemctl", "is-system-running", "--wait"]),
        "running\n"
    );
    assert_eq!(
        m.ok(&["/usr/bin/systemctl", "--failed", "--plain", "--no-legend"]),
        ""
    );
    let usr = m.ok(&["/usr/bin/findmnt", "-n", "-o", "SOURCE,FSTYPE", "/usr"]);
    assert!(usr.starts_with("exos:") && usr.contains("fuse"), "{usr}");
    assert_eq!(
        m.ok(&[
            "/usr/bin/bash",
            "-c",
            "echo $((6 * 7)) from $(readlink /bin)"
        ]),
        "42 from usr/bin\n"
    );
    for copied in ["/etc/pam.d/login", "/etc/login.defs", "/etc/bash.bashrc"] {
        m.ok(&["/usr/bin/test", "-f", copied]);
    }
    assert_eq!(
        m.ok(&["/usr/bin/readlink", "/etc/os-release"]),
        "../usr/lib/os-release\n"
    );
    // With --allow-setuid the system layer's setuid programs work: an
    // ordinary user becomes another through su (a password-less account).
    let usr_options = m.ok(&["/usr/bin/findmnt", "-n", "-o", "OPTIONS", "/usr"]);
    assert!(!usr_options.contains("nosuid"), "{usr_options}");
    m.ok(&["/usr/sbin/useradd", "-m", "alice"]);
    m.ok(&["/usr/bin/passwd", "-q", "-d", "alice"]);
    assert_eq!(
        m.ok(&as_nobody(&["/usr/bin/su", "alice", "-c", "id -un"])),
        "alice\n"
    );
    // A change to /etc is the machine's: kept across boots.
    m.ok(&["/usr/bin/sh", "-c", "echo changed > /etc/issue"]);
    // (The machine's console comes first: nspawn passes it through.)
    let said = m.power_off();
    assert!(said.ends_with("\nState 1 booted well.\n"), "{said}");
    assert_eq!(daemons_of(&root), Vec::<String>::new());
    let states = ok(&["state", "list", "-r", s(&root)]);
    assert!(
        states
            .lines()
            .any(|l| l.contains(" 1 ") && l.contains("[booted well]")),
        "{states}"
    );

    // State 2 cannot boot (no init): tried, counted, and after three
    // failures passed over for state 1, the last that booted well.
    ok(&[
        "remove",
        "-q",
        "-y",
        "--force",
        "-r",
        s(&root),
        "systemd_sysv",
        "systemd",
    ]);
    for n in 1..=3 {
        let said = failed_boot(&root, &[]);
        assert!(
            said.contains(&format!(
                "state 2 did not reach boot-complete.target ({n} failed boot"
            )),
            "{said}"
        );
    }
    let states = ok(&["state", "list", "-r", s(&root)]);
    assert!(states.contains("[3 failed boots]"), "{states}");
    let m = Machine::boot(&root, tmp.path().join("boot2.log"), &[]);
    assert_eq!(
        m.ok(&["/usr/bin/systemctl", "is-system-running", "--wait"]),
        "running\n"
    );
    assert_eq!(m.ok(&["/usr/bin/cat", "/etc/issue"]), "changed\n");
    // Without it /usr is nosuid: su cannot become anyone.
    let usr_options = m.ok(&["/usr/bin/findmnt", "-n", "-o", "OPTIONS", "/usr"]);
    assert!(usr_options.contains("nosuid"), "{usr_options}");
    let o = m.run(&as_nobody(&["/usr/bin/su", "alice", "-c", "id -un"]));
    assert!(!o.status.success(), "{}", text(&o.stdout));
    assert_eq!(text(&o.stdout), "");
    // Stopped by a signal, exos boot powers the machine off and unmounts.
    let said = m.terminate();
    assert!(said.ends_with("\nState 1 booted well.\n"), "{said}");
    assert_eq!(daemons_of(&root), Vec::<String>::new());
    let said = fs::read_to_string(tmp.path().join("boot2.log")).unwrap();
    assert!(
        said.contains("state 2 failed 3 boots in a row and never booted well: booting state 1, the last that booted well"),
        "{said}"
    );
    // Asked for by number, a state is booted whatever its record.
    let said = failed_boot(&root, &["--state", "2"]);
    assert!(said.contains("(4 failed boots in a row"), "{said}");
    let said = failed_boot(&root, &["--state", "7"]);
    assert!(said.contains("there is no state 7"), "{said}");

    // The machine's root user owns its /etc and could leave links where
    // exos boot writes: the host's files are never written through them.
    let victim = tmp.path().join("host-file");
    fs::write(&victim, "the host's").unwrap();
    let planted = root.join("data/machine/etc/tmpfiles.d/zz-exos-factory.conf");
    fs::remove_file(&planted).unwrap();
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let said = failed_boot(&root, &["--state", "1"]);
    assert!(said.contains("symbolic link"), "{said}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "the host's");
    fs::remove_file(&planted).unwrap();
    let usr = root.join("data/machine/usr");
    fs::remove_dir(&usr).unwrap();
    std::os::unix::fs::symlink(tmp.path(), &usr).unwrap();
    let said = failed_boot(&root, &["--state", "1"]);
    assert!(said.contains("links are not followed here"), "{said}");
}

/// What a VM boot needs from the host: qemu, a Debian kernel, mkinitramfs.
fn can_boot_a_vm() -> Option<PathBuf> {
    if !can_boot() {
        return None;
    }
    let kernel = fs::read_dir("/boot").ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("vmlinuz-"))
            .max()
    });
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    let mkinitramfs = Path::new("/usr/sbin/mkinitramfs").exists();
    match (kernel, qemu.is_ok_and(|o| o.status.success()), mkinitramfs) {
        (Some(kernel), true, true) => Some(kernel),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "qemu-system-x86, a kernel in /boot or initramfs-tools is missing (scripts/setup.sh installs them)"
            );
            eprintln!("SKIPPED: qemu-system-x86_64, /boot/vmlinuz-* or mkinitramfs is missing");
            None
        }
    }
}

/// A disk whose root file system is a machine's (/etc, /var, …) with an
/// EXOS root at /exos on it, and an initramfs made with the hook
/// contrib/initramfs-tools ships.
struct VmDisk {
    kernel: PathBuf,
    initrd: PathBuf,
    image: PathBuf,
    work: PathBuf,
    boots: usize,
}

/// What the machine's check prints on its serial console at every boot
/// (`exos.test=STEP` on the kernel command line picks what it changes).
const VM_CHECK: &str = r#"#!/bin/sh
step=$(sed -n 's/.*exos\.test=\([a-z-]*\).*/\1/p' /proc/cmdline)
id alice >/dev/null 2>&1 || { useradd -m alice && passwd -q -d alice; }
echo "EXOS-CHECK step=$step state=$(cat /run/exos/booted-state) multi-user=$(systemctl is-active multi-user.target) failed=$(systemctl --failed --plain --no-legend | wc -l) usr=$(findmnt -n -o FSTYPE /usr) verdict=$(ls /run/exos/boot) daemons=$(grep -l -a "^@exos-mountd" /proc/[0-9]*/cmdline | wc -l) etc=$(test -f /etc/pam.d/login && echo factory) su=$(setpriv --reuid=65534 --regid=65534 --clear-groups su alice -c "id -un") hello=$(exos-vm-hello 2>/dev/null || echo none) answer=$((6 * 7))"
# Changes made from inside are states for the next boot.
case $step in
first) exos install -q /srv/exos-vm-hello.hpkg ;;
installed) exos rollback -q ;;
rolled-back) exos remove -q -y --force systemd_sysv systemd ;;
esac
exos state list | sed 's/^/EXOS-STATE /'
echo "EXOS-NOW hello=$(exos-vm-hello 2>/dev/null || echo none)"
"#;

impl VmDisk {
    fn new(kernel: PathBuf, work: &Path) -> VmDisk {
        let version = kernel
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("vmlinuz-")
            .to_string();
        let disk = work.join("disk");
        let root = disk.join("exos");
        install_debian_system(work, &root, true);
        // The check, run once the machine is up, then off.
        let units = disk.join("etc/systemd/system");
        fs::create_dir_all(units.join("multi-user.target.wants")).unwrap();
        fs::write(disk.join("etc/exos-vm-check"), VM_CHECK).unwrap();
        fs::write(
            units.join("exos-vm-check.service"),
            "[Unit]\nDescription=EXOS VM check\nAfter=multi-user.target exos-boot-complete.service\n\n\
             [Service]\nType=oneshot\nStandardOutput=tty\nStandardError=tty\nTTYPath=/dev/ttyS0\n\
             ExecStart=/bin/sh /etc/exos-vm-check\nExecStopPost=/bin/systemctl poweroff\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../exos-vm-check.service",
            units.join("multi-user.target.wants/exos-vm-check.service"),
        )
        .unwrap();
        // No login prompt on the serial console: agetty starting there
        // hangs the terminal up (vhangup), and a check that was writing to
        // it then lost the rest of its output (a CI run saw only its
        // first line).
        std::os::unix::fs::symlink("/dev/null", units.join("serial-getty@ttyS0.service")).unwrap();
        // A package to install from inside.
        let hello = work.join("hello");
        fs::create_dir_all(hello.join("usr/bin")).unwrap();
        fs::write(
            hello.join("usr/bin/exos-vm-hello"),
            "#!/bin/sh\necho installed-from-inside\n",
        )
        .unwrap();
        fs::set_permissions(
            hello.join("usr/bin/exos-vm-hello"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        fs::write(
            hello.join("manifest.json"),
            r#"{"name": "exos_vm_hello", "version": "1", "summary": "A package installed from inside a booted machine", "license": "MIT", "copyright": "2026 The EXOS authors"}"#,
        )
        .unwrap();
        fs::create_dir_all(disk.join("srv")).unwrap();
        ok(&[
            "build",
            "-q",
            s(&hello),
            "-o",
            s(&disk.join("srv/exos-vm-hello.hpkg")),
        ]);
        let image = work.join("disk.img");
        let o = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&disk)
            .arg(&image)
            .arg("1G")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        // The initramfs: the system's initramfs-tools configuration plus
        // the hook and script contrib/initramfs-tools ships.
        let conf = work.join("initramfs-tools");
        let o = Command::new("cp")
            .args(["-r", "/etc/initramfs-tools"])
            .arg(&conf)
            .output()
            .unwrap();
        assert!(o.status.success());
        let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/initramfs-tools");
        fs::create_dir_all(conf.join("scripts/local-bottom")).unwrap();
        fs::copy(contrib.join("hooks/exos"), conf.join("hooks/exos")).unwrap();
        fs::copy(
            contrib.join("scripts/local-bottom/exos"),
            conf.join("scripts/local-bottom/exos"),
        )
        .unwrap();
        let initrd = work.join("initrd.img");
        let bin = Path::new(env!("CARGO_BIN_EXE_exos")).parent().unwrap();
        let o = Command::new("mkinitramfs")
            .arg("-d")
            .arg(&conf)
            .arg("-o")
            .arg(&initrd)
            .arg(&version)
            .env("EXOS_BIN_DIR", bin)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        VmDisk {
            kernel,
            initrd,
            image,
            work: work.to_path_buf(),
            boots: 0,
        }
    }

    /// Boots the machine with `more` on the kernel command line until it
    /// powers off (or, failing, panics: the initramfs reboots, qemu stops);
    /// its serial console.
    fn boot(&mut self, more: &str) -> String {
        self.boots += 1;
        let serial = self.work.join(format!("serial{}.log", self.boots));
        let o = Command::new("timeout")
            .arg("900")
            .args([
                "qemu-system-x86_64",
                "-accel",
                "tcg",
                "-m",
                "1536",
                "-smp",
                "2",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio",
                self.image.display()
            ))
            .args([
                "-append",
                &format!(
                    "root=/dev/vda rw console=ttyS0 exos.root=/exos exos.allow-setuid \
                     systemd.firstboot=off panic=1 {more}"
                ),
                "-display",
                "none",
                "-no-reboot",
                "-net",
                "none",
            ])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let console =
            String::from_utf8_lossy(&fs::read(&serial).unwrap_or_default()).replace('\r', "");
        assert!(o.status.success(), "qemu: {}\n{console}", text(&o.stderr));
        console
    }

    /// Boots with `exos.test=STEP` and checks the machine came up on its
    /// packages and shut down cleanly; the console.
    fn good_boot(&mut self, step: &str, state: u64, hello: &str) -> String {
        let console = self.boot(&format!("exos.test={step}"));
        let check = console
            .lines()
            .find(|l| l.starts_with("EXOS-CHECK"))
            .unwrap_or_else(|| panic!("the machine never ran its check:\n{console}"));
        assert_eq!(
            check.trim_end(),
            format!(
                "EXOS-CHECK step={step} state={state} multi-user=active failed=0 usr=fuse \
                 verdict=complete daemons=1 etc=factory su=alice hello={hello} answer=42"
            ),
            "{console}"
        );
        assert!(
            console.contains(&format!(
                "exos: state {state} of /root/exos is ready in /root"
            )),
            "{console}"
        );
        // Shut down cleanly: systemd's units unmount what they can, the
        // exitrd (exos-shutdown) unmounts /usr — which ends the daemon —
        // and the root.
        assert!(!console.contains("Failed unmounting"), "{console}");
        for said in [
            "Returning to initrd",
            "exos-shutdown: unmounted /oldroot/usr\n",
            "exos-shutdown: unmounted /oldroot\n",
            "exos-shutdown: everything under /oldroot is unmounted",
            "reboot: Power down",
        ] {
            assert!(console.contains(said), "{said:?} missing:\n{console}");
        }
        let o = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&self.image)
            .output()
            .unwrap();
        assert!(
            text(&o.stdout).contains("Filesystem state:         clean\n"),
            "{}",
            text(&o.stdout)
        );
        console
    }
}

/// The `exos state list` a boot's check printed.
fn states_in(console: &str) -> String {
    console
        .lines()
        .filter_map(|l| l.strip_prefix("EXOS-STATE "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The line of state `n` in `exos state list`.
fn state_line(states: &str, n: u64) -> &str {
    states
        .lines()
        .find(|l| l.split_whitespace().find(|w| *w != "*") == Some(&n.to_string()))
        .unwrap_or_else(|| panic!("no state {n}:\n{states}"))
}

#[test]
fn a_debian_system_boots_from_its_packages_in_a_vm_updates_from_inside_and_falls_back() {
    let Some(kernel) = can_boot_a_vm() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut vm = VmDisk::new(kernel, tmp.path());

    // State 1. exos inside installs a package: state 2, for the next boot
    // (the running /usr does not change under its programs).
    let console = vm.good_boot("first", 1, "none");
    assert!(console.contains("EXOS-NOW hello=none"), "{console}");
    let states = states_in(&console);
    assert!(state_line(&states, 1).contains("[running now]"), "{states}");
    assert!(state_line(&states, 2).starts_with('*'), "{states}");
    // (Shown with --nocapture: how the machine shuts down.)
    let from = console.find("systemd-shutdown[1]: Syncing").unwrap_or(0);
    println!("{}", &console[from..]);

    // State 2 boots; inside, a rollback makes a state 3 with state 1's
    // packages, current for the next boot.
    let console = vm.good_boot("installed", 2, "installed-from-inside");
    let states = states_in(&console);
    assert!(state_line(&states, 1).contains("[booted well]"), "{states}");
    assert!(state_line(&states, 2).contains("[running now]"), "{states}");
    let rollback = state_line(&states, 3);
    assert!(
        rollback.starts_with('*') && rollback.contains("rollback to state 1"),
        "{states}"
    );

    // State 3; inside, a state without init is made (4).
    vm.good_boot("rolled-back", 3, "none");

    // State 4 cannot boot: counted three times, then the boot falls back
    // to state 3, the last that booted well (not 2, rolled back from).
    for n in 1..=3 {
        let console = vm.boot("");
        assert!(
            console.contains(
                "exos: state 4 of /root/exos has no init: /sbin/init (No such file or directory"
            ) && console.contains("Rebooting automatically due to panic= boot argument"),
            "boot {n}:\n{console}"
        );
        assert!(!console.contains("EXOS-CHECK"), "boot {n}:\n{console}");
    }
    let console = vm.good_boot("fallback", 3, "none");
    assert!(
        console.contains(
            "exos: state 4 failed 3 boots in a row and never booted well: booting state 3, the last that booted well"
        ),
        "{console}"
    );
    let states = states_in(&console);
    let failed = state_line(&states, 4);
    assert!(
        failed.starts_with('*') && failed.contains("[3 failed boots]"),
        "{states}"
    );
}
