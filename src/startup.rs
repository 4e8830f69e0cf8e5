//! Builds the application (database, key, clients, listeners) and runs both
//! servers until shutdown. Listeners are bound in `build`, so callers, tests
//! among them, can pass port 0 and read the real addresses back.

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use sea_orm::DatabaseConnection;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    config::ServeSettings,
    crypto::TokenCipher,
    grpc::{InstallationApi, InstallationServiceServer},
    http::{self, HttpState},
    installations::Installations,
    intercom::IntercomClient,
    metrics::Metrics,
    oauth::OAuthFlows,
    persistence, proto,
    tasks::RequestTasks,
};

/// How often the database is pinged to keep gRPC health current.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);

const SERVICE_NAME: &str = "intercom.installs.v1.InstallationService";

pub struct Application {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    db: DatabaseConnection,
    installations: Arc<Installations>,
    oauth: Arc<OAuthFlows>,
    http_state: HttpState,
    metrics: Arc<Metrics>,
    tasks: RequestTasks,
    oauth_maintenance_interval: Duration,
    shutdown_grace: Duration,
}

impl Application {
    /// Binds both listeners, then builds as [`Application::build_on`] does.
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Self> {
        let grpc_listener = TcpListener::bind(settings.grpc_addr)
            .await
            .with_context(|| format!("failed to listen on GRPC_ADDR {}", settings.grpc_addr))?;
        let http_listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("failed to listen on HTTP_ADDR {}", settings.http_addr))?;
        Self::build_on(settings, grpc_listener, http_listener).await
    }

    /// Loads the token key, connects to the database and runs migrations, to
    /// serve on listeners the caller bound. `GRPC_ADDR` and `HTTP_ADDR` are
    /// not used.
    pub async fn build_on(
        settings: ServeSettings,
        grpc_listener: TcpListener,
        http_listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let cipher = load_cipher(&settings)?;
        let db = persistence::migrate(&settings.database.url).await?;
        let metrics = Arc::new(Metrics::default());
        let tasks = RequestTasks::default();
        let intercom = IntercomClient::new(&settings, metrics.clone())
            .context("failed to build the Intercom HTTP client")?;
        let installations = Arc::new(Installations::new(db.clone(), cipher, intercom));
        let oauth = Arc::new(OAuthFlows::new(installations.clone(), &settings));
        if !oauth.is_configured() {
            tracing::warn!(
                "INTERCOM_CLIENT_ID or INTERCOM_CLIENT_SECRET is not set; OAuth installs are turned off"
            );
        }

        let http_state = HttpState {
            installations: installations.clone(),
            oauth: oauth.clone(),
            client_secret: settings.intercom_client_secret.clone(),
            secure_cookies: settings.public_url.scheme() == "https",
            metrics: metrics.clone(),
            tasks: tasks.clone(),
        };
        Ok(Self {
            grpc_listener,
            http_listener,
            db,
            installations,
            oauth,
            http_state,
            metrics,
            tasks,
            oauth_maintenance_interval: settings.oauth_maintenance_interval(),
            shutdown_grace: settings.shutdown_grace(),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Serves until `shutdown` completes, then stops accepting, reports NOT_SERVING,
    /// and gives in-flight requests the shutdown grace period to finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grpc_addr = self.grpc_addr();
        let http_addr = self.http_addr();
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        set_health(&health_reporter, ServingStatus::Serving).await;

        let (stop_sender, stop) = watch::channel(false);
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let api = InstallationApi::new(
            self.installations.clone(),
            self.oauth.clone(),
            self.metrics.clone(),
            self.tasks.clone(),
        );

        let mut servers = JoinSet::new();
        let grpc = Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InstallationServiceServer::new(api))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc_listener),
                stopped(stop.clone()),
            );
        servers.spawn(async move { grpc.await.context("gRPC server failed") });
        let router = http::router(self.http_state);
        let http =
            axum::serve(self.http_listener, router).with_graceful_shutdown(stopped(stop.clone()));
        servers.spawn(async move { http.await.context("HTTP server failed") });

        let mut background = JoinSet::new();
        background.spawn(watch_database(
            self.db.clone(),
            health_reporter.clone(),
            stop.clone(),
        ));
        background.spawn(maintain_oauth_states(
            self.oauth.clone(),
            self.oauth_maintenance_interval,
            stop.clone(),
        ));
        tracing::info!(%grpc_addr, %http_addr, "intercom-installs is serving");

        let shutdown_grace = self.shutdown_grace;
        let mut shutdown = std::pin::pin!(shutdown);
        let first_exit = tokio::select! {
            () = &mut shutdown => None,
            exited = servers.join_next() => exited,
        };
        if let Some(exited) = first_exit {
            // A server stopped on its own, which only a fault causes.
            let _ = stop_sender.send(true);
            return exited
                .context("server task panicked")?
                .and(Err(anyhow::anyhow!("a server stopped unexpectedly")));
        }

        tracing::info!(
            grace_seconds = shutdown_grace.as_secs(),
            "shutting down: no longer accepting requests"
        );
        set_health(&health_reporter, ServingStatus::NotServing).await;
        let _ = stop_sender.send(true);
        background.shutdown().await;

        // Servers finish their open requests, then the request tasks that
        // outlived a disconnected client finish too, all within the grace.
        let tasks = self.tasks.clone();
        let drained = tokio::time::timeout(shutdown_grace, async {
            while let Some(exited) = servers.join_next().await {
                exited.context("server task panicked")??;
            }
            tasks.close_and_wait().await;
            anyhow::Ok(())
        })
        .await;
        match drained {
            Ok(result) => {
                result?;
                tracing::info!("shut down cleanly");
            }
            Err(_) => {
                tracing::warn!(
                    "in-flight requests did not finish within the grace period; stopping them"
                );
                servers.shutdown().await;
                // Closing the pool would wait for the connections that the
                // stopped tasks still hold, so the process exits without it.
                return Ok(());
            }
        }
        self.db.close().await.ok();
        Ok(())
    }
}

/// Completes once the stop flag turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Keeps gRPC health in step with the database: NOT_SERVING while a ping
/// query fails.
async fn watch_database(
    db: DatabaseConnection,
    reporter: HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    let mut serving = true;
    let mut ticks = tokio::time::interval(HEALTH_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let reachable = persistence::ping(&db).await;
        match (&reachable, serving) {
            (Err(error), true) => {
                tracing::error!(error = %error, "database unreachable; reporting NOT_SERVING");
                set_health(&reporter, ServingStatus::NotServing).await;
            }
            (Ok(()), false) => {
                tracing::info!("database reachable again; reporting SERVING");
                set_health(&reporter, ServingStatus::Serving).await;
            }
            _ => {}
        }
        serving = reachable.is_ok();
    }
}

/// Retries pending OAuth tokens and deletes expired states every `interval`.
async fn maintain_oauth_states(
    oauth: Arc<OAuthFlows>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match oauth.resolve_pending_tokens().await {
            Ok(0) => {}
            Ok(resolved) => tracing::info!(resolved, "resolved pending OAuth tokens"),
            Err(error) => tracing::warn!(
                error = error.with_causes(),
                "failed to resolve pending OAuth tokens"
            ),
        }
        match oauth.delete_stale_states().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired OAuth states"),
            Err(error) => tracing::warn!(
                error = error.with_causes(),
                "failed to delete expired OAuth states"
            ),
        }
    }
}

/// Loads the token key from `TOKEN_ENCRYPTION_KEY`, or for a SQLite file a
/// key file beside it, created on first start.
fn load_cipher(settings: &ServeSettings) -> anyhow::Result<TokenCipher> {
    if let Some(key) = &settings.token_encryption_key {
        return Ok(TokenCipher::from_base64(key)?);
    }
    let url = &settings.database.url;
    if !persistence::is_sqlite(url) {
        anyhow::bail!(
            "TOKEN_ENCRYPTION_KEY is required with a database other than SQLite; generate one with `openssl rand -base64 32`"
        );
    }
    let Some(database_file) = sqlite_file(url) else {
        tracing::warn!(
            "in-memory SQLite database: tokens are encrypted with a key that lives only as long as the process"
        );
        return Ok(TokenCipher::ephemeral());
    };

    let mut key_file = database_file.into_os_string();
    key_file.push(".key");
    let key_file = PathBuf::from(key_file);
    let (cipher, created) = TokenCipher::load_or_create_key_file(&key_file)?;
    if created {
        tracing::info!(
            path = %key_file.display(),
            key_id = cipher.key_id(),
            "created a token encryption key file readable only by its owner; keep it with the database"
        );
    }
    Ok(cipher)
}

/// Returns the file of a SQLite URL, or `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|pair| pair == "mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "failed to listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn sqlite_file_of_urls() {
        assert_eq!(
            sqlite_file("sqlite://data/x.db?mode=rwc").unwrap().to_str(),
            Some("data/x.db")
        );
        assert_eq!(sqlite_file("sqlite:x.db").unwrap().to_str(), Some("x.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_file("postgres://localhost/db"), None);
    }
}
