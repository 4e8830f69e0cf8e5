//! A stand-in for the Intercom endpoints that intercom-installs calls, for
//! tests and local runs on loopback. It behaves as Intercom's docs describe:
//! the authorize page redirects back with `code` and `state` (or
//! `error=access_denied`), codes are single-use and expire after five
//! minutes, `/me` returns the admin and the workspace under `app`, and
//! errors come as `{"type":"error.list","errors":[…]}`.
//!
//! Tests steer it through [`StandIn`]: which workspace the signed-in admin
//! belongs to, whether the admin approves, and faults per endpoint.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Form, Json, Router,
    extract::{OriginalUri, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use rand::{Rng, distr::Alphanumeric};
use serde::Deserialize;
use serde_json::json;
use tokio::{net::TcpListener, task::JoinHandle};
use url::Url;

/// How long an authorization code stays valid, as Intercom documents.
const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// An endpoint whose behaviour a test can change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    TokenExchange,
    Me,
    Uninstall,
}

/// A fault an endpoint shows instead of its normal response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A 502 with an HTML page, as a failing load balancer sends.
    BadGateway,
    /// A 200 whose body is an HTML page, not JSON.
    NotJson,
    /// A 429 `rate_limit_exceeded` whose window resets after the given
    /// seconds; `remaining_times` is how many calls get it before it clears.
    RateLimited {
        reset_after_secs: u64,
        remaining_times: u32,
    },
    /// A 401 with an empty body and no error code.
    BareUnauthorized,
    /// Waits this long, then responds normally.
    Delay(Duration),
    /// Decides the response at once but sends it this much later, so the
    /// state it reports can change before the caller reads it.
    SlowResponse(Duration),
}

/// Choice the signed-in admin makes on the authorize page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

#[derive(Clone, Debug)]
pub struct Workspace {
    pub id_code: String,
    pub name: String,
    pub region: String,
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub intercom_version: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// Whether the redirect back percent-encodes `code`; `false` sends it raw.
    pub encode_redirect_query: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client_id: "stand-in-client".into(),
            client_secret: "stand-in-secret".into(),
            encode_redirect_query: true,
        }
    }
}

struct IssuedCode {
    workspace_id: String,
    admin_id: String,
    issued_at: Instant,
    used: bool,
}

struct IssuedToken {
    workspace_id: String,
    admin_id: String,
    live: bool,
}

struct World {
    config: Config,
    workspaces: HashMap<String, Workspace>,
    signed_in: Option<(String, String)>,
    decision: Decision,
    codes: HashMap<String, IssuedCode>,
    tokens: HashMap<String, IssuedToken>,
    faults: HashMap<Endpoint, Fault>,
    requests: Vec<RecordedRequest>,
}

type Shared = Arc<Mutex<World>>;

/// A running stand-in, stopped when dropped.
pub struct StandIn {
    addr: SocketAddr,
    world: Shared,
    server: JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StandIn {
    /// Starts on `127.0.0.1` with a free port.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World {
            config,
            workspaces: HashMap::new(),
            signed_in: None,
            decision: Decision::Approve,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            faults: HashMap::new(),
            requests: Vec::new(),
        }));
        let server = tokio::spawn({
            let app = router(world.clone());
            async move {
                let _ = axum::serve(listener, app).await;
            }
        });
        Ok(Self {
            addr,
            world,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL for the API of `region` (`US`, `EU`, `AU`): the US host at
    /// the root, the others under `/eu` and `/au`, so requests show which
    /// regional host they went to.
    pub fn api_url(&self, region: &str) -> String {
        match region {
            "EU" => format!("{}/eu", self.url()),
            "AU" => format!("{}/au", self.url()),
            _ => self.url(),
        }
    }

    pub fn oauth_url(&self) -> String {
        format!("{}/oauth", self.url())
    }

    pub fn app_store_url(&self) -> String {
        format!("{}/appstore/redirect", self.url())
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    pub fn add_workspace(&self, id_code: &str, name: &str, region: &str) {
        let workspace = Workspace {
            id_code: id_code.into(),
            name: name.into(),
            region: region.into(),
        };
        self.world().workspaces.insert(id_code.into(), workspace);
    }

    /// Signs an admin of `workspace_id` in: the authorize page installs there.
    pub fn sign_in(&self, workspace_id: &str, admin_id: &str) {
        self.world().signed_in = Some((workspace_id.into(), admin_id.into()));
    }

    pub fn set_decision(&self, decision: Decision) {
        self.world().decision = decision;
    }

    pub fn set_fault(&self, endpoint: Endpoint, fault: Option<Fault>) {
        let mut world = self.world();
        match fault {
            Some(fault) => world.faults.insert(endpoint, fault),
            None => world.faults.remove(&endpoint),
        };
    }

    /// Issues a token as the Developer Hub does for a workspace we belong to.
    pub fn issue_token(&self, workspace_id: &str, admin_id: &str) -> String {
        let token = new_token();
        self.world().tokens.insert(
            token.clone(),
            IssuedToken {
                workspace_id: workspace_id.into(),
                admin_id: admin_id.into(),
                live: true,
            },
        );
        token
    }

    /// Uninstalls the app from the workspace, as an admin does in Intercom:
    /// every token of the workspace stops working.
    pub fn uninstall_app(&self, workspace_id: &str) {
        for token in self.world().tokens.values_mut() {
            if token.workspace_id == workspace_id {
                token.live = false;
            }
        }
    }

    pub fn is_live(&self, token: &str) -> bool {
        self.world()
            .tokens
            .get(token)
            .is_some_and(|issued| issued.live)
    }

    /// Returns every token issued so far, live or not.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.world().tokens.keys().cloned().collect()
    }

    pub fn live_tokens(&self) -> Vec<String> {
        self.world()
            .tokens
            .iter()
            .filter(|(_, issued)| issued.live)
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// Returns every authorization code issued so far.
    pub fn issued_codes(&self) -> Vec<String> {
        self.world().codes.keys().cloned().collect()
    }

    /// Makes every issued code older than its lifetime.
    pub fn expire_codes(&self) {
        for code in self.world().codes.values_mut() {
            code.issued_at = Instant::now() - CODE_LIFETIME - Duration::from_secs(1);
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.world().requests.clone()
    }

    pub fn client_secret(&self) -> String {
        self.world().config.client_secret.clone()
    }
}

fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn router(world: Shared) -> Router {
    let api = Router::new()
        .route("/auth/eagle/token", post(exchange_code))
        .route("/me", get(me))
        .route("/auth/uninstall", post(uninstall));
    Router::new()
        .route("/oauth", get(authorize))
        .route("/appstore/redirect", get(app_store_redirect))
        .merge(api.clone())
        .nest("/eu", api.clone())
        .nest("/au", api)
        .with_state(world)
}

fn new_token() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    format!("dG9rOj{body}=")
}

/// Returns a code shaped to trip naive parsers: it has `+` and `/` and ends in `=`.
fn new_code() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{}+/{}==", &body[..12], &body[12..])
}

fn error_list(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "type": "error.list",
        "request_id": "stand-in-request",
        "errors": [{ "code": code, "message": message }],
    });
    (status, Json(body)).into_response()
}

fn record(world: &mut World, method: &str, path: &str, headers: &HeaderMap) {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    world.requests.push(RecordedRequest {
        method: method.into(),
        path: path.into(),
        intercom_version: header_text("intercom-version"),
        authorization: header_text("authorization"),
    });
}

/// Applies the fault set for `endpoint`: `Some` is the response to send in
/// place of the endpoint's own.
async fn apply_fault(world: &Shared, endpoint: Endpoint) -> Option<Response> {
    let fault = {
        let mut world = lock(world);
        let fault = world.faults.get(&endpoint).copied();
        if let Some(Fault::RateLimited {
            reset_after_secs,
            remaining_times,
        }) = fault
        {
            if remaining_times <= 1 {
                world.faults.remove(&endpoint);
            } else {
                world.faults.insert(
                    endpoint,
                    Fault::RateLimited {
                        reset_after_secs,
                        remaining_times: remaining_times - 1,
                    },
                );
            }
        }
        fault
    };
    match fault? {
        Fault::BadGateway => Some(
            (
                StatusCode::BAD_GATEWAY,
                Html("<html><body><h1>502 Bad Gateway</h1></body></html>"),
            )
                .into_response(),
        ),
        Fault::NotJson => Some(
            (
                StatusCode::OK,
                Html("<html><body>Maintenance</body></html>"),
            )
                .into_response(),
        ),
        Fault::BareUnauthorized => Some(StatusCode::UNAUTHORIZED.into_response()),
        Fault::RateLimited {
            reset_after_secs, ..
        } => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let mut response = error_list(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Exceeded rate limit",
            );
            let headers = response.headers_mut();
            headers.insert("x-ratelimit-limit", "1000".parse().expect("valid header"));
            headers.insert("x-ratelimit-remaining", "0".parse().expect("valid header"));
            headers.insert(
                "x-ratelimit-reset",
                (now + reset_after_secs)
                    .to_string()
                    .parse()
                    .expect("valid header"),
            );
            Some(response)
        }
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Fault::SlowResponse(_) => None,
    }
}

/// Waits before a response leaves when `endpoint` has a `SlowResponse` fault.
async fn delay_response(world: &Shared, endpoint: Endpoint) {
    let fault = lock(world).faults.get(&endpoint).copied();
    if let Some(Fault::SlowResponse(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    state: Option<String>,
    redirect_uri: Option<String>,
}

/// Serves the authorize page. The signed-in admin decides at once, so scripts and
/// `curl -L` can walk the flow.
async fn authorize(State(world): State<Shared>, Query(query): Query<AuthorizeQuery>) -> Response {
    let mut world = lock(&world);
    if query.client_id.as_deref() != Some(world.config.client_id.as_str()) {
        return (StatusCode::BAD_REQUEST, Html("<p>Unknown client_id.</p>")).into_response();
    }
    let Some(redirect_uri) = query
        .redirect_uri
        .as_deref()
        .and_then(|uri| Url::parse(uri).ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>Missing or invalid redirect_uri.</p>"),
        )
            .into_response();
    };
    let Some((workspace_id, admin_id)) = world.signed_in.clone() else {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<p>No admin is signed in.</p>"),
        )
            .into_response();
    };
    let state = query.state.unwrap_or_default();

    let mut target = redirect_uri;
    if world.decision == Decision::Deny {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &state);
        return Redirect::to(target.as_str()).into_response();
    }
    let code = new_code();
    world.codes.insert(
        code.clone(),
        IssuedCode {
            workspace_id,
            admin_id,
            issued_at: Instant::now(),
            used: false,
        },
    );
    if world.config.encode_redirect_query {
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state);
    } else {
        let encoded_state: String =
            url::form_urlencoded::byte_serialize(state.as_bytes()).collect();
        target.set_query(Some(&format!("code={code}&state={encoded_state}")));
    }
    Redirect::to(target.as_str()).into_response()
}

async fn app_store_redirect(Query(query): Query<HashMap<String, String>>) -> Html<String> {
    let success = query.get("install_success").map(String::as_str) == Some("true");
    let message = query.get("error_message").cloned().unwrap_or_default();
    Html(format!(
        "<html><body><p>install_success={success}</p><p>{}</p></body></html>",
        message.replace('<', "&lt;")
    ))
}

#[derive(Deserialize)]
struct ExchangeForm {
    code: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn exchange_code(
    State(world): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Form(form): Form<ExchangeForm>,
) -> Response {
    record(&mut lock(&world), "POST", uri.path(), &headers);
    if let Some(response) = apply_fault(&world, Endpoint::TokenExchange).await {
        return response;
    }

    let mut world = lock(&world);
    let credentials_match = form.client_id.as_deref() == Some(world.config.client_id.as_str())
        && form.client_secret.as_deref() == Some(world.config.client_secret.as_str());
    if !credentials_match {
        return error_list(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid client credentials",
        );
    }
    let Some(issued) = form
        .code
        .as_deref()
        .and_then(|code| world.codes.get_mut(code))
    else {
        return error_list(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid code");
    };
    if issued.used || issued.issued_at.elapsed() > CODE_LIFETIME {
        return error_list(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Code expired or already used",
        );
    }

    issued.used = true;
    let (workspace_id, admin_id) = (issued.workspace_id.clone(), issued.admin_id.clone());
    let token = new_token();
    world.tokens.insert(
        token.clone(),
        IssuedToken {
            workspace_id,
            admin_id,
            live: true,
        },
    );
    Json(json!({ "token_type": "Bearer", "token": token, "access_token": token })).into_response()
}

/// Returns the token of a `Bearer` Authorization header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn me(
    State(world): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    record(&mut lock(&world), "GET", uri.path(), &headers);
    if let Some(response) = apply_fault(&world, Endpoint::Me).await {
        return response;
    }
    let response = me_response(&lock(&world), &headers);
    delay_response(&world, Endpoint::Me).await;
    response
}

fn me_response(world: &World, headers: &HeaderMap) -> Response {
    let Some(issued) = bearer(headers).and_then(|token| world.tokens.get(token)) else {
        return error_list(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Access Token Invalid",
        );
    };
    if !issued.live {
        return error_list(StatusCode::UNAUTHORIZED, "token_revoked", "Token revoked");
    }
    let workspace = world
        .workspaces
        .get(&issued.workspace_id)
        .cloned()
        .unwrap_or(Workspace {
            id_code: issued.workspace_id.clone(),
            name: format!("Workspace {}", issued.workspace_id),
            region: "US".into(),
        });
    Json(json!({
        "type": "admin",
        "id": issued.admin_id,
        "email": format!("admin-{}@example.com", issued.admin_id),
        "email_verified": true,
        "app": {
            "type": "app",
            "id_code": workspace.id_code,
            "name": workspace.name,
            "region": workspace.region,
            "timezone": "Europe/Dublin",
            "identity_verification": false,
        },
    }))
    .into_response()
}

async fn uninstall(
    State(world): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    record(&mut lock(&world), "POST", uri.path(), &headers);
    if let Some(response) = apply_fault(&world, Endpoint::Uninstall).await {
        return response;
    }
    let response = uninstall_response(&mut lock(&world), &headers);
    // The uninstall has taken effect; a SlowResponse fault only holds back
    // the reply.
    delay_response(&world, Endpoint::Uninstall).await;
    response
}

fn uninstall_response(world: &mut World, headers: &HeaderMap) -> Response {
    let Some(token) = bearer(headers).map(str::to_owned) else {
        return error_list(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Access Token Invalid",
        );
    };
    let Some(workspace_id) = world
        .tokens
        .get(&token)
        .filter(|issued| issued.live)
        .map(|issued| issued.workspace_id.clone())
    else {
        return error_list(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Access Token Invalid",
        );
    };
    for issued in world.tokens.values_mut() {
        if issued.workspace_id == workspace_id {
            issued.live = false;
        }
    }
    Json(json!({})).into_response()
}
