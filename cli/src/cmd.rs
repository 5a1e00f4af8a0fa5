//! One module per command: its clap `Args` and `run(&Context, Args) -> Result<ExitCode>`, and
//! the view types its JSON and text output both come from.

pub mod bind;
pub mod cat;
pub mod checkout;
pub mod dedup_report;
pub mod df;
pub mod disk;
pub mod export;
pub mod export_layer;
pub mod fsck;
pub mod gc;
pub mod images;
pub mod import;
pub mod init;
pub mod inspect;
pub mod latest;
pub mod ls;
pub mod prepare;
pub mod push;
pub mod refs;
pub mod rm;
pub mod root;
pub mod stash;
pub mod status;
pub mod tag;
pub mod why;
