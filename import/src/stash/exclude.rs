//! `--exclude` patterns, as rsync reads them: a pattern with a `/` matches the whole path from
//! the root (a leading `/` is optional), one without matches any single name; `*` matches any
//! run of bytes but `/`, `?` one byte. A trailing `/` is ignored. An excluded directory takes
//! its whole subtree with it.

use layerstore_store::tree;

/// A set of patterns.
#[derive(Clone, Debug, Default)]
pub(crate) struct Excludes {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    glob: Vec<u8>,
    anchored: bool,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Self {
        Excludes {
            patterns: patterns
                .iter()
                .map(|p| {
                    let p = p.trim_end_matches('/');
                    let anchored = p.contains('/');
                    Pattern {
                        glob: p.trim_start_matches('/').as_bytes().to_vec(),
                        anchored,
                    }
                })
                .filter(|p| !p.glob.is_empty())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the path itself matches (not its ancestors: the walk never enters an excluded
    /// directory).
    pub fn matches(&self, path: &[u8]) -> bool {
        self.patterns.iter().any(|p| {
            if p.anchored {
                glob(&p.glob, path)
            } else {
                glob(&p.glob, tree::file_name(path))
            }
        })
    }

    /// Whether the path or one of its ancestors matches.
    pub fn covers(&self, path: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut p = path;
        while !p.is_empty() {
            if self.matches(p) {
                return true;
            }
            p = tree::parent(p).unwrap_or_default();
        }
        false
    }
}

/// Shell-style matching of `text` against `pat` (`*` never crosses `/`).
fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len()
            && (pat[p] == b'?' && text[t] != b'/' || pat[p] == text[t] && pat[p] != b'*')
        {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star
            && text[st] != b'/'
        {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_or_anchored_paths() {
        let e = Excludes::new(&["*.pyc".into(), "/var/cache/*".into(), "tmp/".into()]);
        assert!(e.matches(b"usr/lib/x.pyc"));
        assert!(e.matches(b"var/cache/apt"));
        assert!(!e.matches(b"var/cache"));
        assert!(!e.matches(b"var/cache/apt/x"));
        assert!(e.covers(b"var/cache/apt/x"));
        assert!(e.matches(b"tmp"));
        assert!(e.matches(b"a/tmp"));
        assert!(!e.matches(b"tmpx"));
        assert!(!Excludes::new(&[]).covers(b"x"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a*", b"a/b"));
    }
}
