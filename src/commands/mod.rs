//! One module per subcommand.

mod actions;
mod agent;
mod alerts;
mod config;
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
    match cli.command {
        Command::Parse(args) => parse::run(args),
        Command::Ingest(args) => ingest::run(args, &cli.data, &cli.rules),
        Command::Search(args) => search::run(args, &cli.data),
        Command::Prune(args) => prune::run(args, &cli.data),
        Command::Incidents(args) => incidents::list(args, &cli.data),
        Command::Explain(args) => incidents::explain(args, &cli.data),
        Command::Rules => incidents::rules(&cli.rules),
        Command::Stats(args) => stats::run(args, &cli.data),
        Command::Host(args) => host::run(args),
        Command::Migrate(args) => host::migrate(args),
        Command::Vms(args) => host::vms(args),
        Command::Resolve(args) => host::resolve(args),
        Command::Serve(args) => serve::run(args, &cli.data, &cli.rules),
        Command::Ui(args) => ui::run(args, &cli.data),
        Command::Agent(args) => agent::run(args),
        Command::Actions(args) => actions::run(args, &cli.data),
        Command::Remediate(args) => remediate::plan(args, &cli.data),
        Command::Approve(args) => remediate::decide(args, &cli.data, true),
        Command::Reject(args) => remediate::decide(args, &cli.data, false),
        Command::Alerts(args) => alerts::list(args, &cli.data),
        Command::Silence(command) => alerts::silence(command, &cli.data),
        Command::Config(command) => config::run(command),
    }
}
