//! Command line and environment settings. Every setting is a flag with an
//! environment variable behind it; `intercom-installs serve --help` lists them.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use url::Url;

/// The SQLite file used when `DATABASE_URL` is not set, in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://intercom-installs.db?mode=rwc";

#[derive(Parser)]
#[command(
    name = "intercom-installs",
    version,
    about = "Owns the app's installations across Intercom workspaces"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log output: `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` EnvFilter syntax, for example `info` or
    /// `intercom_installs=debug,info`.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the database migrations, then serve gRPC and HTTP until SIGTERM or Ctrl-C.
    Serve(Box<ServeSettings>),
    /// Run the database migrations and exit.
    Migrate(DatabaseSettings),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
pub struct DatabaseSettings {
    /// Database URL: `sqlite://FILE?mode=rwc` or `postgres://USER@HOST/DB`.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub url: String,
}

#[derive(Args, Clone)]
pub struct ServeSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Address of the gRPC listener for internal services. Port 0 picks a free port.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// Address of the HTTP listener for browsers and Intercom. Port 0 picks a free port.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Base URL at which browsers and Intercom reach the HTTP side. The OAuth
    /// redirect URI is this URL followed by `/oauth/callback`.
    #[arg(long, env = "PUBLIC_URL", default_value = "http://127.0.0.1:8080", value_parser = parse_base_url)]
    pub public_url: Url,

    /// OAuth client id of the app, from the Developer Hub. OAuth installs are
    /// turned off while it or the client secret is missing.
    #[arg(long, env = "INTERCOM_CLIENT_ID")]
    pub intercom_client_id: Option<String>,

    /// OAuth client secret of the app; also the key of uninstall notification signatures.
    #[arg(long, env = "INTERCOM_CLIENT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub intercom_client_secret: Option<SecretString>,

    /// Intercom's OAuth authorize page.
    #[arg(long, env = "INTERCOM_OAUTH_URL", default_value = "https://app.intercom.com/oauth", value_parser = parse_base_url)]
    pub intercom_oauth_url: Url,

    /// Intercom REST API for US workspaces; it also forwards other regions' requests.
    #[arg(long, env = "INTERCOM_API_URL", default_value = "https://api.intercom.io", value_parser = parse_base_url)]
    pub intercom_api_url: Url,

    /// Intercom REST API for EU workspaces.
    #[arg(long, env = "INTERCOM_API_URL_EU", default_value = "https://api.eu.intercom.io", value_parser = parse_base_url)]
    pub intercom_api_url_eu: Url,

    /// Intercom REST API for AU workspaces.
    #[arg(long, env = "INTERCOM_API_URL_AU", default_value = "https://api.au.intercom.io", value_parser = parse_base_url)]
    pub intercom_api_url_au: Url,

    /// Intercom App Store redirect page that ends an install started from the App Store.
    #[arg(long, env = "INTERCOM_APP_STORE_URL", default_value = "https://app.intercom.com/appstore/redirect", value_parser = parse_base_url)]
    pub intercom_app_store_url: Url,

    /// Value of the `Intercom-Version` header sent on every API call.
    #[arg(long, env = "INTERCOM_VERSION", default_value = "2.14")]
    pub intercom_version: String,

    /// Timeout of one Intercom API call, in milliseconds (1 to 120000).
    #[arg(long, env = "INTERCOM_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=120_000))]
    pub intercom_timeout_ms: u64,

    /// Maximum wait for Intercom's rate limit window to reset before a call
    /// fails as unavailable, in milliseconds (0 to 60000).
    #[arg(long, env = "INTERCOM_RATE_LIMIT_MAX_WAIT_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub intercom_rate_limit_max_wait_ms: u64,

    /// Key that encrypts stored tokens: base64 of 32 random bytes. Required with
    /// PostgreSQL. With a SQLite file and no key, a key file is created beside it.
    #[arg(long, env = "TOKEN_ENCRYPTION_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub token_encryption_key: Option<SecretString>,

    /// Page our own website sends admins to after an install started there
    /// succeeds. Without it, such installs end on the App Store pages.
    #[arg(long, env = "WEBSITE_SUCCESS_URL", value_parser = parse_base_url)]
    pub website_success_url: Option<Url>,

    /// Page our own website sends admins to after an install started there
    /// fails; it receives an `error_message` query parameter.
    #[arg(long, env = "WEBSITE_FAILURE_URL", value_parser = parse_base_url)]
    pub website_failure_url: Option<Url>,

    /// How long an admin has to finish an OAuth install, in seconds (60 to 86400).
    #[arg(long, env = "OAUTH_STATE_TTL_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub oauth_state_ttl_seconds: u64,

    /// How often pending OAuth tokens are retried and expired states deleted, in seconds
    /// (1 to 3600).
    #[arg(long, env = "OAUTH_MAINTENANCE_INTERVAL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub oauth_maintenance_interval_seconds: u64,

    /// How long in-flight requests may run after SIGTERM, in seconds (0 to 300).
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_grace_seconds: u64,
}

impl ServeSettings {
    pub fn intercom_timeout(&self) -> Duration {
        Duration::from_millis(self.intercom_timeout_ms)
    }

    pub fn rate_limit_max_wait(&self) -> Duration {
        Duration::from_millis(self.intercom_rate_limit_max_wait_ms)
    }

    pub fn oauth_state_ttl(&self) -> Duration {
        Duration::from_secs(self.oauth_state_ttl_seconds)
    }

    pub fn oauth_maintenance_interval(&self) -> Duration {
        Duration::from_secs(self.oauth_maintenance_interval_seconds)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// Parses settings the way `intercom-installs serve ARGS…` would, with the
    /// environment behind every flag. Tests and embedders start from here.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let program_and_subcommand = ["intercom-installs", "serve"].map(std::ffi::OsString::from);
        let args = program_and_subcommand
            .into_iter()
            .chain(args.into_iter().map(Into::into));
        match Cli::try_parse_from(args)?.command {
            Command::Serve(settings) => Ok(*settings),
            Command::Migrate(_) => unreachable!("the serve subcommand was parsed"),
        }
    }
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(value.to_owned()))
}

/// Parses an absolute http(s) URL without a fragment.
fn parse_base_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|error| format!("not an absolute URL ({error})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not {}",
            url.scheme()
        ));
    }
    if url.fragment().is_some() {
        return Err("must not contain a #fragment".into());
    }
    Ok(url)
}

/// Appends `path` to the path of `base`, keeping any path prefix `base` has
/// (`https://host/prefix` and `oauth/callback` give `https://host/prefix/oauth/callback`).
pub fn endpoint_url(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}
