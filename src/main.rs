use std::process::ExitCode;

use clap::Parser;
use intercom_installs::{
    config::{Cli, Command},
    persistence,
    startup::{self, Application},
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_filter);

    let result = match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Migrate(database) => persistence::migrate(&database.url)
            .await
            .map(|_| tracing::info!("database migrations applied")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "intercom-installs failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: intercom_installs::config::ServeSettings) -> anyhow::Result<()> {
    let application = Application::build(settings).await?;
    application.run_until(startup::shutdown_signal()).await
}
