//! Finding the live packagefs mount of a root in `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

/// The mount point of the packagefs mount serving `root` (its source reads
/// `exos:ROOT`, ROOT canonical), from the text of a mountinfo file.
pub fn find_in(mountinfo: &str, root: &Path) -> Option<PathBuf> {
    let wanted = format!("exos:{}", root.display());
    // The last mount of a root wins: it is the one on top.
    mountinfo.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        let mut right = right.split(' ');
        let fstype = right.next()?;
        let source = right.next()?;
        (matches!(fstype, "fuse" | "fuse.exos") && unescape(source) == wanted)
            .then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
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
    fn finds_the_topmost_mount_of_a_root() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:50 / /mnt/a rw,nosuid,nodev - fuse.exos exos:/srv/root ro,user_id=0
41 22 0:51 / /mnt/with\\040space ro - fuse.exos exos:/srv/other\\040root ro
42 22 0:52 / /mnt/b ro - fuse exos:/srv/root ro
43 22 0:53 / /mnt/c ro - fuse.squashfuse exos:/srv/root ro
";
        assert_eq!(find_in(text, Path::new("/srv/root")), Some("/mnt/b".into()));
        assert_eq!(
            find_in(text, Path::new("/srv/other root")),
            Some("/mnt/with space".into())
        );
        assert_eq!(find_in(text, Path::new("/srv/none")), None);
        assert_eq!(find_in("garbage\n - \n\\", Path::new("/x")), None);
    }
}
