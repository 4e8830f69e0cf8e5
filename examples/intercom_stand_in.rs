//! Runs the Intercom stand-in on loopback so the whole install flow can be
//! walked on a laptop. See "Walk the install flow locally" in the README.

use clap::Parser;
use intercom_stand_in::{Config, StandIn};

#[derive(Parser)]
#[command(
    about = "Serves stand-ins for Intercom's authorize page, token exchange, /me and /auth/uninstall"
)]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    addr: std::net::SocketAddr,
    /// OAuth client id the stand-in accepts.
    #[arg(long, default_value = "local-client")]
    client_id: String,
    /// OAuth client secret the stand-in accepts.
    #[arg(long, default_value = "local-secret")]
    client_secret: String,
    /// Workspace whose admin is signed in and authorizes installs.
    #[arg(long, default_value = "demo1234")]
    workspace: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("--addr must be a loopback address, not {}", args.addr);
        std::process::exit(2);
    }
    let config = Config {
        client_id: args.client_id,
        client_secret: args.client_secret,
        ..Config::default()
    };
    let stand_in = StandIn::start_on(args.addr, config).await?;
    stand_in.add_workspace(&args.workspace, "Demo workspace", "US");
    stand_in.sign_in(&args.workspace, "991");
    let token = stand_in.issue_token(&args.workspace, "991");

    println!("Intercom stand-in listening on {}", stand_in.url());
    println!("  authorize page:  {}", stand_in.oauth_url());
    println!("  API:             {}", stand_in.api_url("US"));
    println!("  App Store page:  {}", stand_in.app_store_url());
    println!(
        "Developer Hub token for workspace {}: {token}",
        args.workspace
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
