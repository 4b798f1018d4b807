//! `/proc/self/mountinfo`, the kernel's mount table: the one parser for it
//! (whether a path is mounted, what is mounted below it, which mount serves
//! a root).

use std::path::{Path, PathBuf};

/// One line of mountinfo: where, what type, from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The file system type (`fuse.packagefs`, `squashfs`).
    pub fstype: String,
    /// What is mounted (a device, or a FUSE file system's name).
    pub source: String,
}

/// The entries of a mountinfo text, in its order (later mounts last);
/// malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(mount_point)),
                fstype: unescape(right.next()?),
                source: unescape(right.next()?),
            })
        })
        .collect()
}

/// This process's mount table (empty when it cannot be read).
pub fn read() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Whether `path` (canonicalised) is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    read().iter().any(|m| m.mount_point == canon)
}

/// The mount point of the packagefs mount serving `root` (canonical): its
/// source reads `exos:ROOT`; the topmost such mount wins.
pub fn exos_mount_of(entries: &[MountEntry], root: &Path) -> Option<PathBuf> {
    let wanted = format!("exos:{}", root.display());
    entries
        .iter()
        .rev()
        .find(|m| matches!(m.fstype.as_str(), "fuse" | "fuse.exos") && m.source == wanted)
        .map(|m| m.mount_point.clone())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_and_the_topmost_mount_of_a_root() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /mnt/a rw,nosuid,nodev - fuse.exos exos:/srv/root ro,user_id=0
41 22 0:51 / /mnt/with\\040space ro - fuse.exos exos:/srv/other\\040root ro
42 22 0:52 / /mnt/b ro - fuse exos:/srv/root ro
43 22 0:53 / /mnt/c ro - fuse.squashfuse exos:/srv/root ro
garbage
\\
";
        let entries = parse(text);
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[2].mount_point, Path::new("/mnt/with space"));
        assert_eq!(
            exos_mount_of(&entries, Path::new("/srv/root")),
            Some("/mnt/b".into())
        );
        assert_eq!(
            exos_mount_of(&entries, Path::new("/srv/other root")),
            Some("/mnt/with space".into())
        );
        assert_eq!(exos_mount_of(&entries, Path::new("/srv/none")), None);
        assert_eq!(unescape("a\\134b\\01"), "a\\b\\01");
    }
}
