//! One module per command group; [`run`] dispatches.

pub(crate) mod streams;

use events::connection::Connection;

use crate::cli::{Cli, Command, ConnArgs};

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Streams(cmd) => streams::run(&cli.conn, cmd).await,
    }
}

/// Connects with the global options; the error names the URL(s) already.
pub(crate) async fn connect(args: &ConnArgs) -> anyhow::Result<Connection> {
    Ok(events::connection::connect(&args.connect_config()).await?)
}
