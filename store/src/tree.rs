//! The entries of a layer tree as the index records them, and image path rules.

use serde::Serialize;

use crate::digest::ObjectId;

/// What an entry is. Whiteouts and opaque markers are recorded as such and applied at merge time;
/// they never reach a checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    Regular,
    Directory,
    Symlink,
    /// A hard link to an earlier non-directory entry of the same layer (`link` is its path).
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// `.wh.NAME`: `path` is the removed name.
    Whiteout,
    /// `.wh..wh..opq`: `path` is the directory whose lower children are hidden.
    Opaque,
}

impl EntryKind {
    /// The code stored in the index.
    pub fn code(self) -> i64 {
        match self {
            EntryKind::Regular => 0,
            EntryKind::Directory => 1,
            EntryKind::Symlink => 2,
            EntryKind::Hardlink => 3,
            EntryKind::CharDevice => 4,
            EntryKind::BlockDevice => 5,
            EntryKind::Fifo => 6,
            EntryKind::Whiteout => 7,
            EntryKind::Opaque => 8,
        }
    }

    /// The inverse of [`EntryKind::code`].
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => EntryKind::Regular,
            1 => EntryKind::Directory,
            2 => EntryKind::Symlink,
            3 => EntryKind::Hardlink,
            4 => EntryKind::CharDevice,
            5 => EntryKind::BlockDevice,
            6 => EntryKind::Fifo,
            7 => EntryKind::Whiteout,
            8 => EntryKind::Opaque,
            _ => return None,
        })
    }

    /// A one-letter type as `ls -l` shows it.
    pub fn letter(self) -> char {
        match self {
            EntryKind::Regular | EntryKind::Hardlink => '-',
            EntryKind::Directory => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::CharDevice => 'c',
            EntryKind::BlockDevice => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Whiteout | EntryKind::Opaque => 'w',
        }
    }
}

/// One entry of a layer (or of a merged tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Normalized path relative to the image root: no leading `/`, no `.`/`..`/empty components.
    /// The root directory itself is the empty path.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Content size of regular files (and hard links, the size of their target).
    pub size: u64,
    /// Content of regular files and hard links.
    pub object: Option<ObjectId>,
    /// Symlink target as written (raw bytes), or the normalized path a hard link names.
    pub link: Option<Vec<u8>>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TreeEntry {
    /// A directory entry with default metadata, for parents that a layer implies but omits.
    pub fn implicit_dir(path: Vec<u8>) -> Self {
        TreeEntry {
            path,
            kind: EntryKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            size: 0,
            object: None,
            link: None,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }

    /// The last component of the path.
    pub fn name(&self) -> &[u8] {
        file_name(&self.path)
    }
}

/// The last component of a normalized path.
pub fn file_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// The parent of a normalized path (`None` for the root).
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    })
}

/// `a` joined with `b` (`b` non-empty).
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut p = Vec::with_capacity(a.len() + 1 + b.len());
    p.extend_from_slice(a);
    p.push(b'/');
    p.extend_from_slice(b);
    p
}

/// Whether `path` is `dir` or lies below it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || (path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/'))
}

/// Limits on the shape of paths in an image.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PathLimits {
    /// Longest component in bytes (Linux NAME_MAX).
    pub max_component: usize,
    /// Longest normalized path in bytes (Linux PATH_MAX less the terminator).
    pub max_path: usize,
    /// Most components.
    pub max_depth: usize,
}

impl Default for PathLimits {
    fn default() -> Self {
        PathLimits {
            max_component: 255,
            max_path: 4095,
            max_depth: 256,
        }
    }
}

/// Normalize a path from an archive: leading `/` and `./`, repeated and trailing slashes, and `.`
/// components are dropped (absolute names are rooted in the image). `..` components, NUL bytes and
/// paths beyond the limits are refused with the reason.
pub fn normalize(raw: &[u8], limits: &PathLimits) -> Result<Vec<u8>, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut depth = 0;
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("path has a '..' component"),
            c if c.len() > limits.max_component => return Err("path component is too long"),
            c => {
                depth += 1;
                if depth > limits.max_depth {
                    return Err("path is nested too deeply");
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    if out.len() > limits.max_path {
        return Err("path is too long");
    }
    Ok(out)
}

/// Render path bytes for humans: UTF-8 as is, other bytes as `\xNN`.
pub fn display_path(path: &[u8]) -> String {
    let mut s = String::with_capacity(path.len() + 1);
    s.push('/');
    for chunk in path.utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// overlayfs's own xattrs (`trusted.overlay.*`, `user.overlay.*`): markers of an unpacked
/// overlay, never restored by a checkout.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_roots_absolute_names_and_refuses_dotdot() {
        let l = PathLimits::default();
        for (raw, want) in [
            (&b"/etc/passwd"[..], &b"etc/passwd"[..]),
            (b"./usr//bin/", b"usr/bin"),
            (b"./", b""),
            (b"a/./b", b"a/b"),
            (b"\xff\xfe/x", b"\xff\xfe/x"),
        ] {
            assert_eq!(normalize(raw, &l).unwrap(), want);
        }
        for bad in [&b"../x"[..], b"a/../../b", b"a/..", b"a\0b"] {
            assert!(normalize(bad, &l).is_err());
        }
        assert!(normalize(&[b'a'; 256], &l).is_err());
        let long: Vec<u8> = (0..2100).flat_map(|_| *b"a/").collect();
        assert!(normalize(&long, &l).is_err());
    }

    #[test]
    fn path_helpers() {
        assert_eq!(parent(b"a/b/c"), Some(&b"a/b"[..]));
        assert_eq!(parent(b"a"), Some(&b""[..]));
        assert_eq!(parent(b""), None);
        assert_eq!(file_name(b"a/b"), b"b");
        assert!(is_within(b"a/b", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert!(is_within(b"x", b""));
        assert_eq!(display_path(b"a\xffb"), "/a\\xffb");
    }
}
