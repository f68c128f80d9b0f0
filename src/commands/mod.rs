//! One module per subcommand.

mod actions;
mod agent;
mod alerts;
mod config;
mod demo;
mod host;
mod incidents;
mod ingest;
mod inputs;
mod parse;
mod prune;
mod remediate;
mod search;
mod serve;
mod stats;
mod ui;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the command the user asked for.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data = cli
        .data
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("./relive-data"));
    let data = &data;
    match cli.command {
        Command::Parse(args) => parse::run(args),
        Command::Ingest(args) => ingest::run(args, data, &cli.rules),
        Command::Search(args) => search::run(args, data),
        Command::Prune(args) => prune::run(args, data),
        Command::Incidents(args) => incidents::list(args, data),
        Command::Explain(args) => incidents::explain(args, data),
        Command::Rules => incidents::rules(&cli.rules),
        Command::Stats(args) => stats::run(args, data),
        Command::Host(args) => host::run(args),
        Command::Demo(args) => demo::run(args, cli.data, &cli.rules),
        Command::Migrate(args) => host::migrate(args),
        Command::Vms(args) => host::vms(args),
        Command::Resolve(args) => host::resolve(args),
        Command::Serve(args) => serve::run(args, data, &cli.rules),
        Command::Ui(args) => ui::run(args, data),
        Command::Agent(args) => agent::run(args),
        Command::Actions(args) => actions::run(args, data),
        Command::Remediate(args) => remediate::plan(args, data),
        Command::Approve(args) => remediate::decide(args, data, true),
        Command::Reject(args) => remediate::decide(args, data, false),
        Command::Alerts(args) => alerts::list(args, data),
        Command::Silence(command) => alerts::silence(command, data),
        Command::Config(command) => config::run(command),
    }
}
