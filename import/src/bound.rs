//! bootc's logically bound images, read from an image through the index (no checkout):
//! `usr/lib/bootc/bound-images.d/` holds only symlinks, each resolved inside the image root to
//! a `.image` or `.container` quadlet file whose `[Image] Image=` or `[Container] Image=` names
//! the image to bind. Parsing is strict: anything bootc or systemd would read differently, or
//! that would need a value layerstore cannot know (`AuthFile=`, `%` specifiers), is an error
//! naming the file.

use layerstore_store::{EntryKind, ImageInfo, Store};

use crate::error::{Error, Result};

/// The directory bootc reads bound images from.
pub const BOUND_IMAGES_DIR: &str = "/usr/lib/bootc/bound-images.d";

/// One bound image an image declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundImage {
    /// The symlink's name in [`BOUND_IMAGES_DIR`].
    pub file: String,
    /// The image reference, as written (after `%%` unescaping).
    pub image: String,
}

/// The kind of quadlet file, by its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    Image,
    Container,
}

impl UnitKind {
    /// The kind a file name's suffix says, if any.
    pub fn of(name: &str) -> Option<UnitKind> {
        if name.ends_with(".image") && name.len() > ".image".len() {
            Some(UnitKind::Image)
        } else if name.ends_with(".container") && name.len() > ".container".len() {
            Some(UnitKind::Container)
        } else {
            None
        }
    }

    fn section(self) -> &'static str {
        match self {
            UnitKind::Image => "Image",
            UnitKind::Container => "Container",
        }
    }
}

/// Undo systemd's `%%` and refuse every other specifier (`%h`, `%n`, …): their values depend
/// on the host and the unit, which a store cannot know.
fn unescape_specifiers(v: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(s) => return Err(format!("systemd specifier %{s} is not supported")),
            None => return Err("a lone % at the end of the value".into()),
        }
    }
    Ok(out)
}

/// The image a quadlet file of `kind` names. `Err` is the reason it is refused.
pub fn parse_unit(kind: UnitKind, content: &[u8]) -> std::result::Result<String, String> {
    let text = std::str::from_utf8(content).map_err(|_| "not UTF-8".to_string())?;
    let want = kind.section();
    let mut section: Option<&str> = None;
    let mut seen_section = false;
    let mut image: Option<String> = None;
    for (n, raw) in text.split('\n').enumerate() {
        let n = n + 1;
        // CRLF line ends are read as LF, as systemd does; a CR elsewhere is not whitespace.
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            return Err(format!("line {n}: line continuations are not supported"));
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("line {n}: a section header without ']'"))?;
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(format!("line {n}: invalid section header"));
            }
            section = Some(name);
            seen_section |= name == want;
            continue;
        }
        let Some(sec) = section else {
            return Err(format!("line {n}: a key before any section"));
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: not KEY=VALUE"))?;
        let key = key.trim_matches([' ', '\t']);
        let value = value.trim_matches([' ', '\t']);
        if sec != want {
            continue;
        }
        match key {
            "Image" => {
                if image.is_some() {
                    return Err(format!("line {n}: Image= is given twice"));
                }
                let v = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(inner) => inner,
                    None => value,
                };
                if v.is_empty() {
                    return Err(format!("line {n}: Image= is empty"));
                }
                if v.contains(['"', '\'', ' ', '\t', '\\', '\r']) {
                    return Err(format!(
                        "line {n}: Image= has quotes, blanks or escapes inside"
                    ));
                }
                image = Some(unescape_specifiers(v).map_err(|e| format!("line {n}: {e}"))?);
            }
            "AuthFile" if kind == UnitKind::Image => {
                return Err(format!(
                    "line {n}: AuthFile= is not supported for bound images (they are pulled \
                     with the store's credentials)"
                ));
            }
            _ => {}
        }
    }
    if !seen_section {
        return Err(format!("no [{want}] section"));
    }
    image.ok_or_else(|| format!("no Image= in [{want}]"))
}

/// The bound images `image` declares, read from its merged tree in the index, sorted by file
/// name. No directory means none.
pub fn read_bound_images(store: &Store, image: &ImageInfo) -> Result<Vec<BoundImage>> {
    let tree = store.merged_tree(image)?;
    let bad = |file: &str, reason: String| Error::BoundImage {
        file: format!("{BOUND_IMAGES_DIR}/{file}"),
        reason,
    };
    let Some(dir) = tree.lookup_nofollow(BOUND_IMAGES_DIR.as_bytes()) else {
        return Ok(Vec::new());
    };
    if dir.kind != EntryKind::Directory {
        return Err(bad("", "is not a directory".into()));
    }
    let objects = store.object_reader()?;
    let mut out = Vec::new();
    for e in tree.children(&dir.path) {
        let name_bytes = e.path.rsplit(|b| *b == b'/').next().unwrap_or(&e.path);
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        if e.kind != EntryKind::Symlink {
            return Err(bad(&name, "is not a symbolic link".into()));
        }
        let kind = UnitKind::of(&name)
            .ok_or_else(|| bad(&name, "does not end in .image or .container".into()))?;
        // Resolved inside the image root, as if chrooted: `..` never leaves it.
        let mut path = BOUND_IMAGES_DIR.as_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(name_bytes);
        let target = tree
            .lookup(&path)
            .ok_or_else(|| bad(&name, "is a dangling symbolic link".into()))?;
        let id = match (target.kind, target.object) {
            (EntryKind::Regular | EntryKind::Hardlink, Some(id)) => id,
            (EntryKind::Regular, None) => {
                return Err(bad(&name, "points at an empty file".into()));
            }
            _ => return Err(bad(&name, "does not point at a regular file".into())),
        };
        let data = objects.read(&id)?;
        let mut content = Vec::new();
        data.copy_to(&mut content).map_err(|e| Error::Io {
            path: store.object_path(&id),
            source: e,
        })?;
        let image = parse_unit(kind, &content).map_err(|r| bad(&name, r))?;
        out.push(BoundImage { file: name, image });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadlet_parsing_table() {
        use UnitKind::{Container as C, Image as I};
        let ok = |k, s: &str, want: &str| {
            assert_eq!(parse_unit(k, s.as_bytes()).as_deref(), Ok(want), "{s:?}")
        };
        let err = |k, s: &str, why: &str| {
            let e = parse_unit(k, s.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
        };
        ok(
            I,
            "[Image]\nImage=quay.io/a/b@sha256:1\n",
            "quay.io/a/b@sha256:1",
        );
        ok(
            C,
            "[Unit]\nDescription=x\n[Container]\nImage=a/b:1\nExec=sh\n",
            "a/b:1",
        );
        ok(
            I,
            "# comment\n; also\n\n[Image]\r\nImage = a/b:1 \r\n",
            "a/b:1",
        );
        ok(I, "[Image]\nImage=\"a/b:1\"\n", "a/b:1");
        ok(I, "[Image]\nImage=a/b:100%%\n", "a/b:100%");
        ok(I, "[Image]\nPull=newer\nImage=x/y:1", "x/y:1");
        // The other section's keys do not count.
        ok(
            C,
            "[Image]\nImage=wrong:1\n[Container]\nImage=right:1\n",
            "right:1",
        );
        err(I, "[Image]\nImage=a:1\nImage=b:1\n", "given twice");
        err(I, "[Image]\nImage=a:1\n[Image]\nImage=b:1\n", "given twice");
        err(I, "Image=a:1\n", "before any section");
        err(I, "[Container]\nImage=a:1\n", "no [Image] section");
        err(C, "[Image]\nImage=a:1\n", "no [Container] section");
        err(I, "[Image]\nPull=always\n", "no Image=");
        err(I, "[Image]\nImage=\n", "empty");
        err(
            I,
            "[Image]\nImage=a:1\nAuthFile=/etc/auth.json\n",
            "AuthFile",
        );
        ok(C, "[Container]\nImage=a:1\nAuthFile=/x\n", "a:1");
        err(I, "[Image]\nImage=%h/img:1\n", "specifier %h");
        err(I, "[Image]\nImage=a:1%\n", "lone %");
        err(I, "[Image]\nImage=a:1 \\\n b\n", "continuations");
        err(I, "[Image\nImage=a:1\n", "without ']'");
        err(I, "[Image]\nnot a key value\n", "not KEY=VALUE");
        err(I, "[Image]\nImage=a b:1\n", "blanks");
        err(I, "[Image]\nImage=a:1\r\r\n", "blanks");
        assert!(parse_unit(I, b"[Image]\nImage=\xff\n").is_err());
    }

    #[test]
    fn unit_kinds_by_suffix() {
        assert_eq!(UnitKind::of("app.image"), Some(UnitKind::Image));
        assert_eq!(UnitKind::of("db.container"), Some(UnitKind::Container));
        for bad in [".image", "app.volume", "app.image.bak", "app"] {
            assert_eq!(UnitKind::of(bad), None, "{bad}");
        }
    }
}
