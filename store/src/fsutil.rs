//! Small filesystem helpers on directory handles.

use std::io::Write;

use cap_std::fs::{Dir, OpenOptions};

/// Replace `name` in `dir` atomically: write a temp file, fsync it, rename it over.
pub fn atomic_write(dir: &Dir, name: &str, content: &[u8]) -> std::io::Result<()> {
    let tmp = format!(".{name}.tmp{}", std::process::id());
    let mut f = dir.open_with(
        &tmp,
        OpenOptions::new().write(true).create(true).truncate(true),
    )?;
    f.write_all(content)?;
    f.sync_all()?;
    dir.rename(&tmp, dir, name)
}
