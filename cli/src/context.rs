//! What every command gets: the global flags, the store's path, how to open it (and under which
//! lock), and one way to print a result as text or JSON.

use std::cell::{RefCell, RefMut};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use layerstore_store::{LockMode, Store, StoreLock, StoreOptions};
use serde::Serialize;

use crate::output::{Recorder, is_closed};

/// Flags every command takes, before or after its name.
#[derive(clap::Args, Clone)]
pub struct Global {
    /// The store directory [default: $LAYERSTORE_STORE, else /var/lib/layerstore as root, else
    /// $XDG_DATA_HOME/layerstore]
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print results as JSON (an error for commands whose output is raw bytes).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail: on stderr, and in the output of commands that have more to say (repeat for
    /// more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Never reach a registry: a command that would (a docker:// import, push, prepare, bind,
    /// latest docker://) fails at once instead; the others run as usual.
    #[arg(long, global = true)]
    pub offline: bool,
}

/// A result a command prints: serialized as is with `--json`, drawn as text otherwise.
pub trait View: Serialize {
    /// The text form. `ctx` says how much detail (`quiet`, `verbose`).
    fn text(&self, ctx: &Context, w: &mut dyn Write) -> std::io::Result<()>;
}

/// The store under the shared lock, for commands that read it briefly: the whole run holds the
/// lock, so no gc sweep removes what they read.
pub struct Shared {
    pub store: Store,
    _lock: StoreLock,
}

impl std::ops::Deref for Shared {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

pub struct Context {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    /// `--offline`: no command reaches a registry.
    pub offline: bool,
    store_path: PathBuf,
    out: RefCell<Recorder<std::io::Stdout>>,
}

impl Context {
    pub fn new(g: Global) -> Self {
        Context {
            json: g.json,
            quiet: g.quiet,
            verbose: g.verbose,
            offline: g.offline,
            store_path: g.store.unwrap_or_else(default_store),
            out: RefCell::new(Recorder::new(std::io::stdout())),
        }
    }

    pub fn store_path(&self) -> &Path {
        &self.store_path
    }

    /// Open the existing store; a missing one is an error that says how to make one (reading
    /// commands never create a store).
    pub fn open(&self) -> Result<Store> {
        let p = &self.store_path;
        Store::open(p).map_err(|e| {
            let hint = match e {
                layerstore_store::Error::NotAStore { .. } => {
                    " (create one with `layerstore init`, or import an image)"
                }
                _ => "",
            };
            anyhow::Error::new(e).context(format!("cannot open store {}{hint}", p.display()))
        })
    }

    /// Open the store, creating it first if there is none (for commands that add to it).
    pub fn open_or_init(&self) -> Result<Store> {
        let p = &self.store_path;
        Store::open_or_init(p, &StoreOptions::default())
            .with_context(|| format!("cannot open store {}", p.display()))
    }

    /// Open the store and hold the shared lock for the whole run.
    pub fn shared(&self) -> Result<Shared> {
        let store = self.open()?;
        let lock = store.lock(LockMode::Shared)?;
        Ok(Shared { store, _lock: lock })
    }

    /// Standard output. Do not hold it across [`Context::emit`].
    pub fn out(&self) -> RefMut<'_, Recorder<std::io::Stdout>> {
        self.out.borrow_mut()
    }

    /// Print `view`: JSON with `--json`, else its text.
    pub fn emit(&self, view: &impl View) -> Result<()> {
        let mut out = self.out();
        if self.json {
            serde_json::to_writer_pretty(&mut *out, view)?;
            writeln!(out)?;
        } else {
            view.text(self, &mut *out)?;
        }
        Ok(())
    }

    /// `--json` cannot be honoured by a command whose output is raw bytes: say so rather than
    /// ignore it.
    pub fn refuse_json(&self, why: &str) -> Result<()> {
        if self.json {
            bail!("--json is not supported here: {why}");
        }
        Ok(())
    }

    /// The command's outcome, decided by standard output first: a reader that went away ends
    /// the run cleanly, another write error is reported as what it is.
    pub fn finish(&self, res: Result<ExitCode>) -> Result<ExitCode> {
        let mut out = self.out();
        let _ = out.flush();
        match out.failure() {
            Some((kind, _)) if is_closed(*kind) => Ok(ExitCode::SUCCESS),
            Some((_, msg)) => bail!("cannot write to standard output: {msg}"),
            None => res,
        }
    }
}

/// $LAYERSTORE_STORE, else /var/lib/layerstore as root, else $XDG_DATA_HOME/layerstore.
fn default_store() -> PathBuf {
    if let Some(p) = std::env::var_os("LAYERSTORE_STORE").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if rustix::process::geteuid().is_root() {
        return "/var/lib/layerstore".into();
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("layerstore")
}
