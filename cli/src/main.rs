//! `layerstore`: store OCI images in a deduplicated, content-addressed store.
//!
//! Exit status: 0 success, 1 the command ran and found problems (`fsck`), 2 error. Results go to
//! stdout (JSON with `--json`), progress and diagnostics to stderr. Each command is a module of
//! `cmd/` with its clap `Args` and a `run`; adding one is a new file and one arm below.

mod chart;
mod cmd;
mod context;
mod fmt;
mod integrity;
mod output;
mod parse;
mod progress;
mod version;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use context::{Context, Global};

#[derive(Parser)]
#[command(
    name = "layerstore",
    version,
    about = "A content-addressed, deduplicated store for OCI images"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(cmd::init::Args),
    Import(cmd::import::Args),
    Push(cmd::push::Args),
    Prepare(cmd::prepare::Args),
    Status(cmd::status::Args),
    Images(cmd::images::Args),
    Inspect(cmd::inspect::Args),
    Ls(cmd::ls::Args),
    Cat(cmd::cat::Args),
    Checkout(cmd::checkout::Args),
    Export(cmd::export::Args),
    ExportLayer(cmd::export_layer::Args),
    Df(cmd::df::Args),
    Fsck(cmd::fsck::Args),
    Gc(cmd::gc::Args),
    Why(cmd::why::Args),
    Disk(cmd::disk::Args),
    DedupReport(cmd::dedup_report::Args),
    Refs(cmd::refs::Args),
    Tag(cmd::tag::Args),
    Rm(cmd::rm::Args),
    Root(cmd::root::Args),
    Latest(cmd::latest::Args),
    Stash(cmd::stash::Args),
    Bind(cmd::bind::BindArgs),
    Unbind(cmd::bind::UnbindArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => log::LevelFilter::Error,
        (_, 0) => log::LevelFilter::Warn,
        (_, 1) => log::LevelFilter::Info,
        (_, 2) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .target(env_logger::Target::Stderr)
        .init();
    let ctx = Context::new(cli.global);
    let res = match cli.command {
        Command::Init(a) => cmd::init::run(&ctx, a),
        Command::Import(a) => cmd::import::run(&ctx, a),
        Command::Push(a) => cmd::push::run(&ctx, a),
        Command::Prepare(a) => cmd::prepare::run(&ctx, a),
        Command::Status(a) => cmd::status::run(&ctx, a),
        Command::Images(a) => cmd::images::run(&ctx, a),
        Command::Inspect(a) => cmd::inspect::run(&ctx, a),
        Command::Ls(a) => cmd::ls::run(&ctx, a),
        Command::Cat(a) => cmd::cat::run(&ctx, a),
        Command::Checkout(a) => cmd::checkout::run(&ctx, a),
        Command::Export(a) => cmd::export::run(&ctx, a),
        Command::ExportLayer(a) => cmd::export_layer::run(&ctx, a),
        Command::Df(a) => cmd::df::run(&ctx, a),
        Command::Fsck(a) => cmd::fsck::run(&ctx, a),
        Command::Gc(a) => cmd::gc::run(&ctx, a),
        Command::Why(a) => cmd::why::run(&ctx, a),
        Command::Disk(a) => cmd::disk::run(&ctx, a),
        Command::DedupReport(a) => cmd::dedup_report::run(&ctx, a),
        Command::Refs(a) => cmd::refs::run(&ctx, a),
        Command::Tag(a) => cmd::tag::run(&ctx, a),
        Command::Rm(a) => cmd::rm::run(&ctx, a),
        Command::Root(a) => cmd::root::run(&ctx, a),
        Command::Latest(a) => cmd::latest::run(&ctx, a),
        Command::Stash(a) => cmd::stash::run(&ctx, a),
        Command::Bind(a) => cmd::bind::bind(&ctx, a),
        Command::Unbind(a) => cmd::bind::unbind(&ctx, a),
    };
    // A closed or failing standard output decides the outcome over whatever error the command
    // saw through it, which may name the store file it was copying from.
    match ctx.finish(res) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("layerstore: error: {e:#}");
            if let Some(hint) = integrity::read_only_hint(&e) {
                eprintln!("layerstore: {hint}");
            }
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// `--help` describes every argument and flag of every command.
    #[test]
    fn every_argument_has_a_description() {
        let cli = super::Cli::command();
        for a in cli.get_arguments() {
            assert!(a.get_help().is_some(), "global --{}", a.get_id());
        }
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "{}", sub.get_name());
            for a in sub.get_arguments() {
                assert!(a.get_help().is_some(), "{} {}", sub.get_name(), a.get_id());
            }
        }
        super::Cli::command().debug_assert();
    }
}
