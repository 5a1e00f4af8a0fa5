//! Standard output that remembers how it failed. A command streaming store content into a
//! closed pipe sees the write error wrapped in whatever the library names (an object file, a
//! layer); the recorder keeps the truth, so the command's outcome is decided by the output:
//! a closed pipe is a clean exit (as in ripgrep), any other write error names the output.

use std::io::{self, Write};

/// A writer that records its first error.
pub struct Recorder<W> {
    inner: W,
    failure: Option<(io::ErrorKind, String)>,
}

impl<W: Write> Recorder<W> {
    pub fn new(inner: W) -> Self {
        Recorder {
            inner,
            failure: None,
        }
    }

    /// The first write error, if any: its kind and message.
    pub fn failure(&self) -> Option<&(io::ErrorKind, String)> {
        self.failure.as_ref()
    }

    fn record<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() != io::ErrorKind::Interrupted
            && self.failure.is_none()
        {
            self.failure = Some((e.kind(), e.to_string()));
        }
        r
    }
}

impl<W: Write> Write for Recorder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.record(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.record(r)
    }
}

/// Whether the output's reader went away: nothing more to say, and not an error.
pub fn is_closed(kind: io::ErrorKind) -> bool {
    kind == io::ErrorKind::BrokenPipe
}
