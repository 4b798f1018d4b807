//! Rendering a [`PackageInfo`] as a `.PackageInfo` text file (§1.13), so
//! that a package extracted from ours can be rebuilt by Haiku's
//! `package create`.

use super::{
    GlobalWritableFile, PackageInfo, Provides, Resolvable, User, UserSettingsFile,
    FLAG_APPROVE_LICENSE, FLAG_SYSTEM_PACKAGE,
};

impl PackageInfo {
    /// The `.PackageInfo` text of this package; lists that are empty are
    /// left out, as Haiku's own files do.
    pub fn to_package_info_text(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!("name {}\n", self.name));
        // The package version in .PackageInfo requires a revision.
        let mut v = self.version.clone();
        if v.revision == 0 {
            v.revision = 1;
        }
        o.push_str(&format!("version {v}\n"));
        o.push_str(&format!("architecture {}\n", self.architecture));
        o.push_str(&format!("summary {}\n", quote(&self.summary)));
        o.push_str(&format!("description {}\n", quote(&self.description)));
        o.push_str(&format!("packager {}\n", quote(&self.packager)));
        o.push_str(&format!("vendor {}\n", quote(&self.vendor)));
        let mut flags = Vec::new();
        if self.flags & FLAG_APPROVE_LICENSE != 0 {
            flags.push("approve_license".to_string());
        }
        if self.flags & FLAG_SYSTEM_PACKAGE != 0 {
            flags.push("system_package".to_string());
        }
        list(&mut o, "flags", &flags);
        list(&mut o, "copyrights", &quoted(&self.copyrights));
        list(&mut o, "licenses", &quoted(&self.licenses));
        list(&mut o, "urls", &quoted(&self.urls));
        list(&mut o, "source-urls", &quoted(&self.source_urls));
        list(&mut o, "provides", &lines(&self.provides, provides_line));
        list(&mut o, "requires", &lines(&self.requires, resolvable_line));
        list(
            &mut o,
            "supplements",
            &lines(&self.supplements, resolvable_line),
        );
        list(
            &mut o,
            "conflicts",
            &lines(&self.conflicts, resolvable_line),
        );
        list(&mut o, "freshens", &lines(&self.freshens, resolvable_line));
        list(&mut o, "replaces", &self.replaces);
        if !self.base_package.is_empty() {
            o.push_str(&format!("base-package {}\n", self.base_package));
        }
        let gwf = lines(&self.global_writable_files, writable_file_line);
        list(&mut o, "global-writable-files", &gwf);
        let usf = lines(&self.user_settings_files, settings_file_line);
        list(&mut o, "user-settings-files", &usf);
        list(&mut o, "users", &lines(&self.users, user_line));
        list(&mut o, "groups", &self.groups);
        let post = quoted(&self.post_install_scripts);
        list(&mut o, "post-install-scripts", &post);
        let pre = quoted(&self.pre_uninstall_scripts);
        list(&mut o, "pre-uninstall-scripts", &pre);
        o
    }
}

/// A double-quoted string with the escapes the `.PackageInfo` lexer knows.
fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn quoted(items: &[String]) -> Vec<String> {
    items.iter().map(|s| quote(s)).collect()
}

fn lines<T>(items: &[T], line: fn(&T) -> String) -> Vec<String> {
    items.iter().map(line).collect()
}

/// `key {` one item per line `}`; nothing for an empty list.
fn list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.push_str(key);
    out.push_str(" {\n");
    for i in items {
        out.push('\t');
        out.push_str(i);
        out.push('\n');
    }
    out.push_str("}\n");
}

fn provides_line(p: &Provides) -> String {
    let mut s = p.name.clone();
    if let Some(v) = &p.version {
        s.push_str(&format!(" = {v}"));
    }
    if let Some(c) = &p.compatible {
        s.push_str(&format!(" compat >= {c}"));
    }
    s
}

fn resolvable_line(r: &Resolvable) -> String {
    match &r.constraint {
        Some((op, ver)) => format!("{} {} {}", r.name, op.symbol(), ver),
        None => r.name.clone(),
    }
}

fn writable_file_line(f: &GlobalWritableFile) -> String {
    let mut s = quote(&f.path);
    if f.is_directory {
        s.push_str(" directory");
    }
    if let Some(t) = f.update_type {
        s.push(' ');
        s.push_str(t.name());
    }
    s
}

fn settings_file_line(f: &UserSettingsFile) -> String {
    let mut s = quote(&f.path);
    if let Some(t) = &f.template {
        s.push_str(&format!(" template {}", quote(t)));
    } else if f.is_directory {
        s.push_str(" directory");
    }
    s
}

fn user_line(u: &User) -> String {
    let mut s = u.name.clone();
    if !u.real_name.is_empty() {
        s.push_str(&format!(" real-name {}", quote(&u.real_name)));
    }
    if !u.home.is_empty() {
        s.push_str(&format!(" home {}", quote(&u.home)));
    }
    if !u.shell.is_empty() {
        s.push_str(&format!(" shell {}", quote(&u.shell)));
    }
    if !u.groups.is_empty() {
        s.push_str(" groups ");
        s.push_str(&u.groups.join(" "));
    }
    s
}
