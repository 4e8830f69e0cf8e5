//! Test harness: starts the real service on port 0 against a fresh database
//! (SQLite by default, PostgreSQL when TEST_DATABASE_URL names a server) and
//! an Intercom stand-in, and drives it with a tonic client and reqwest.

use std::{
    collections::HashSet,
    io::Write,
    sync::{Mutex, Once},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use intercom_installs::{
    config::ServeSettings,
    persistence::entities::{installation, installation_event, oauth_state},
    proto::{self, installation_service_client::InstallationServiceClient},
    startup::Application,
};
use intercom_stand_in::{Config, StandIn};
use rand::RngCore;
use reqwest::{StatusCode, header};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};
use secrecy::SecretString;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;
use url::Url;

/// Prefix of the PostgreSQL databases the tests create.
const PG_DATABASE_PREFIX: &str = "intercom_installs_test_";

/// Logs of every app in this test binary, as JSON lines.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static LOG_SETUP: Once = Once::new();

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every log event of this test binary to [`captured_logs`].
pub fn capture_logs() {
    LOG_SETUP.call_once(|| {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("debug")
            .with_writer(|| LogWriter)
            .init();
    });
}

/// Everything logged so far by any app in this test binary.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
        .into_owned()
}

pub struct TestApp {
    pub grpc: InstallationServiceClient<Channel>,
    pub grpc_addr: std::net::SocketAddr,
    pub http_url: String,
    pub intercom: StandIn,
    pub db: DatabaseConnection,
    pub encryption_key: String,
    pub database: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// State values seen in authorize URLs, which must never be logged.
    pub seen_states: Mutex<Vec<String>>,
}

/// A database of one test. It is dropped by `drop_database`, or, when a
/// test panics first, by `Drop`.
pub struct TestDatabase {
    pub kind: DatabaseKind,
    dropped: bool,
}

#[derive(Clone)]
pub enum DatabaseKind {
    Sqlite { path: std::path::PathBuf },
    Postgres { admin_url: String, name: String },
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let kind = self.kind.clone();
        // Drop runs outside any runtime, or inside one that cannot block,
        // so the async cleanup gets a thread and a runtime of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(drop_kind(&kind));
            }
        })
        .join()
        .ok();
    }
}

impl TestDatabase {
    fn new(kind: DatabaseKind) -> Self {
        Self {
            kind,
            dropped: false,
        }
    }

    pub async fn create() -> (Self, String) {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            Some(admin_url) if admin_url.starts_with("postgres") => {
                let name = format!("{PG_DATABASE_PREFIX}{}", random_hex(8));
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create a test database");
                admin.close().await.ok();
                let mut url = Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                (
                    Self::new(DatabaseKind::Postgres { admin_url, name }),
                    url.to_string(),
                )
            }
            Some(other) => {
                panic!("TEST_DATABASE_URL must be a postgres:// URL or unset, not {other}")
            }
            None => {
                let path = sqlite_path();
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (Self::new(DatabaseKind::Sqlite { path }), url)
            }
        }
    }

    pub async fn drop_database(&mut self) {
        drop_kind(&self.kind).await;
        self.dropped = true;
    }
}

async fn drop_kind(kind: &DatabaseKind) {
    match kind {
        DatabaseKind::Sqlite { path } => {
            for suffix in ["", "-wal", "-shm", ".key"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                std::fs::remove_file(file).ok();
            }
        }
        DatabaseKind::Postgres { admin_url, name } => {
            if let Ok(admin) = Database::connect(admin_url).await {
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok();
                admin.close().await.ok();
            }
        }
    }
}

pub fn sqlite_path() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("intercom-installs-tests");
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir.join(format!("{}.db", random_hex(8)))
}

pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

pub fn random_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    STANDARD.encode(key)
}

/// Settings that point every Intercom URL at `intercom` and listen on port 0.
pub fn settings_for(intercom: &StandIn, database_url: &str, encryption_key: &str) -> ServeSettings {
    let mut settings =
        ServeSettings::from_args(Vec::<String>::new()).expect("default settings parse");
    settings.database.url = database_url.to_owned();
    settings.intercom_client_id = Some(Config::default().client_id);
    settings.intercom_client_secret = Some(SecretString::from(intercom.client_secret()));
    settings.intercom_oauth_url = intercom.oauth_url().parse().unwrap();
    settings.intercom_api_url = intercom.api_url("US").parse().unwrap();
    settings.intercom_api_url_eu = intercom.api_url("EU").parse().unwrap();
    settings.intercom_api_url_au = intercom.api_url("AU").parse().unwrap();
    settings.intercom_app_store_url = intercom.app_store_url().parse().unwrap();
    settings.website_success_url = Some(
        format!("{}/website/installed", intercom.url())
            .parse()
            .unwrap(),
    );
    settings.website_failure_url = Some(
        format!("{}/website/install-failed", intercom.url())
            .parse()
            .unwrap(),
    );
    settings.token_encryption_key = Some(SecretString::from(encryption_key.to_owned()));
    settings.intercom_timeout_ms = 2_000;
    settings.intercom_rate_limit_max_wait_ms = 2_500;
    settings.shutdown_grace_seconds = 5;
    settings
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app with settings changed by `customize`.
    pub async fn spawn_with(customize: impl FnOnce(&mut ServeSettings)) -> Self {
        capture_logs();
        let intercom = StandIn::start(Config::default())
            .await
            .expect("start the Intercom stand-in");
        Self::spawn_on(intercom, customize).await
    }

    pub async fn spawn_on(intercom: StandIn, customize: impl FnOnce(&mut ServeSettings)) -> Self {
        capture_logs();
        let (database, database_url) = TestDatabase::create().await;
        let encryption_key = random_key();
        let mut settings = settings_for(&intercom, &database_url, &encryption_key);

        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_url = format!("http://{}", http_listener.local_addr().unwrap());
        settings.public_url = http_url.parse().unwrap();
        customize(&mut settings);

        let app = Application::build_on(settings, grpc_listener, http_listener)
            .await
            .expect("build the application");
        let grpc_addr = app.grpc_addr();
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            stop.await.ok();
        }));

        let grpc = InstallationServiceClient::connect(format!("http://{grpc_addr}"))
            .await
            .expect("connect the gRPC client");
        let db = Database::connect(&database_url)
            .await
            .expect("connect to the test database");
        Self {
            grpc,
            grpc_addr,
            http_url,
            intercom,
            db,
            encryption_key,
            database,
            shutdown: Some(shutdown),
            server: Some(server),
            seen_states: Mutex::new(Vec::new()),
        }
    }

    /// Starts the shutdown that SIGTERM starts in production.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
    }

    /// Waits up to `limit` for the app to stop after [`Self::begin_shutdown`].
    /// Returns whether it stopped.
    pub async fn stops_within(&mut self, limit: Duration) -> bool {
        let Some(server) = self.server.as_mut() else {
            return true;
        };
        if tokio::time::timeout(limit, server).await.is_ok() {
            self.server = None;
            return true;
        }
        false
    }

    /// Stops the app, checks that no secret reached the logs, and drops the database.
    pub async fn finish(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
        if let Some(server) = self.server.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), server).await;
            let result = result
                .expect("the app stops within 10 s")
                .expect("the server task does not panic");
            result.expect("the app shuts down without error");
        }
        self.assert_no_secrets_logged();
        self.db.clone().close().await.ok();
        self.database.drop_database().await;
    }

    /// Returns every token, code, state, client secret and key this app has seen.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self.intercom.issued_tokens();
        secrets.extend(self.intercom.issued_codes());
        secrets.extend(self.seen_states.lock().unwrap().iter().cloned());
        secrets.push(self.intercom.client_secret());
        secrets.push(self.encryption_key.clone());
        secrets
    }

    pub fn assert_no_secrets_logged(&self) {
        let logs = captured_logs();
        for secret in self.secrets() {
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            assert!(!logs.contains(&secret), "a secret value reached the logs");
            assert!(
                !logs.contains(&encoded),
                "a URL-encoded secret value reached the logs"
            );
        }
    }

    /// Asserts that `text` (a response rendered with `{:?}`) contains no secret.
    pub fn assert_no_secrets_in(&self, text: &str) {
        for secret in self.secrets() {
            assert!(
                !text.contains(&secret),
                "a secret value appeared in a response"
            );
        }
    }

    /// Installs `workspace_id` through the gRPC API with a fresh Developer Hub token.
    pub async fn install_with_token(
        &self,
        workspace_id: &str,
        region: &str,
    ) -> (String, proto::Workspace) {
        self.intercom
            .add_workspace(workspace_id, &format!("Workspace {workspace_id}"), region);
        let token = self.intercom.issue_token(workspace_id, "admin-1");
        let response = self
            .grpc
            .clone()
            .install(install_request(&token))
            .await
            .expect("Install succeeds")
            .into_inner();
        let Some(proto::install_response::Result::Installed(installed)) = response.result else {
            panic!("Install with a token returns the installed workspace");
        };
        (token, installed.workspace.expect("workspace is set"))
    }

    pub async fn installation(&self, workspace_id: &str) -> Option<installation::Model> {
        installation::Entity::find()
            .filter(installation::Column::WorkspaceId.eq(workspace_id))
            .one(&self.db)
            .await
            .unwrap()
    }

    pub async fn installation_count(&self) -> usize {
        installation::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .len()
    }

    /// Event kinds of `workspace_id`, oldest first.
    pub async fn events(&self, workspace_id: &str) -> Vec<installation_event::Model> {
        installation_event::Entity::find()
            .filter(installation_event::Column::WorkspaceId.eq(workspace_id))
            .order_by_asc(installation_event::Column::Id)
            .all(&self.db)
            .await
            .unwrap()
    }

    pub async fn event_kinds(&self, workspace_id: &str) -> Vec<String> {
        self.events(workspace_id)
            .await
            .into_iter()
            .map(|event| event.kind)
            .collect()
    }

    pub async fn oauth_states(&self) -> Vec<oauth_state::Model> {
        oauth_state::Entity::find().all(&self.db).await.unwrap()
    }

    /// Asserts that Intercom has no live token that the database does not
    /// track as the active token of its workspace.
    pub async fn assert_no_untracked_tokens(&self) {
        let stored: HashSet<String> = installation::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|row| row.token_fingerprint)
            .collect();
        for token in self.intercom.live_tokens() {
            let fingerprint = intercom_installs::crypto::fingerprint(token.as_bytes());
            assert!(
                stored.contains(&fingerprint),
                "Intercom holds a live token the service does not track"
            );
        }
    }

    pub fn browser(&self) -> Browser {
        Browser::new()
    }

    /// Walks the OAuth flow from `install_path` (`/install…`) in `browser`,
    /// through the stand-in's authorize page, to the final redirect.
    pub async fn walk_install(&self, browser: &mut Browser, install_path: &str) -> Url {
        let authorize = self.start_install(browser, install_path).await;
        let callback = browser.get_redirect(authorize.as_str()).await;
        browser.get_redirect(callback.as_str()).await
    }

    /// Opens `/install…` and returns Intercom's authorize URL it redirects to.
    pub async fn start_install(&self, browser: &mut Browser, install_path: &str) -> Url {
        let url = if install_path.starts_with("http") {
            install_path.to_owned()
        } else {
            format!("{}{install_path}", self.http_url)
        };
        let authorize = browser.get_redirect(&url).await;
        if let Some(state) = query_value(&authorize, "state") {
            self.seen_states.lock().unwrap().push(state);
        }
        authorize
    }

    /// Follows the authorize URL to the stand-in and returns the callback URL.
    pub async fn authorize(&self, browser: &mut Browser, authorize: &Url) -> Url {
        browser.get_redirect(authorize.as_str()).await
    }
}

pub fn install_request(token: &str) -> proto::InstallRequest {
    proto::InstallRequest {
        method: Some(proto::install_request::Method::AccessToken(
            token.to_owned(),
        )),
    }
}

pub fn query_value(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A browser: one cookie jar, no automatic redirects.
pub struct Browser {
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            client,
            cookies: Vec::new(),
        }
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut request = self.client.get(url);
        if !self.cookies.is_empty() {
            let cookie_header = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(header::COOKIE, cookie_header);
        }
        let response = request
            .send()
            .await
            .expect("the request reaches the server");
        for set_cookie in response.headers().get_all(header::SET_COOKIE) {
            let text = set_cookie.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(existing, _)| existing != name);
            self.cookies.push((name.to_owned(), value.to_owned()));
        }
        response
    }

    /// GETs `url`, asserts a redirect, and returns its target.
    pub async fn get_redirect(&mut self, url: &str) -> Url {
        let response = self.get(url).await;
        assert!(
            response.status().is_redirection(),
            "expected a redirect from {}, got {}",
            Url::parse(url)
                .map(|url| url.path().to_owned())
                .unwrap_or_default(),
            response.status()
        );
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        Url::parse(location).expect("an absolute redirect")
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(existing, _)| existing != name);
        self.cookies.push((name.to_owned(), value.to_owned()));
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, value)| value.clone())
    }
}

/// Asserts that `url` is the App Store's success page.
pub fn assert_app_store_success(app: &TestApp, url: &Url) {
    assert_eq!(
        url.as_str(),
        format!("{}?install_success=true", app.intercom.app_store_url())
    );
}

/// Asserts that `url` is the App Store's failure page and returns its message.
pub fn app_store_failure_message(app: &TestApp, url: &Url) -> String {
    let page = app.intercom.app_store_url();
    assert!(
        url.as_str()
            .starts_with(&format!("{page}?install_success=false&error_message=")),
        "not the App Store failure page: {url}"
    );
    query_value(url, "error_message").expect("an error_message")
}

pub async fn http_status(url: &str) -> StatusCode {
    reqwest::get(url).await.unwrap().status()
}

/// Polls `check` every 200 ms until it returns true or `limit` passes.
/// Returns whether it returned true.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
