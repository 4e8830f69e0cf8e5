use reqwest::StatusCode;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use std::time::Duration;

use crate::helpers::{TestApp, eventually, http_status};

async fn channel(app: &TestApp) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn http_health_endpoints_answer() {
    let app = TestApp::spawn().await;

    assert_eq!(
        http_status(&format!("{}/healthz", app.http_url)).await,
        StatusCode::OK
    );
    assert_eq!(
        http_status(&format!("{}/readyz", app.http_url)).await,
        StatusCode::OK
    );
    assert_eq!(
        http_status(&format!("{}/nope", app.http_url)).await,
        StatusCode::NOT_FOUND
    );
    app.finish().await;
}

#[tokio::test]
async fn grpc_health_reports_serving() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(channel(&app).await);

    for service in ["", "intercom.installs.v1.InstallationService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn reflection_lists_services() {
    let app = TestApp::spawn().await;
    let mut reflection = ServerReflectionClient::new(channel(&app).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();

    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    assert!(
        names.contains(&"intercom.installs.v1.InstallationService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    app.finish().await;
}

/// Runs `sql` on the PostgreSQL server as the admin user of `TEST_DATABASE_URL`.
async fn admin_execute(admin_url: &str, sql: &str) {
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect(admin_url).await.unwrap();
    admin.execute_unprepared(sql).await.unwrap();
    admin.close().await.ok();
}

async fn grpc_health(app: &TestApp) -> i32 {
    let mut health = HealthClient::new(channel(app).await);
    let request = HealthCheckRequest {
        service: "intercom.installs.v1.InstallationService".into(),
    };
    health.check(request).await.unwrap().into_inner().status
}

#[tokio::test]
async fn database_outage_reports_unavailable() {
    let app = TestApp::spawn().await;
    let crate::helpers::DatabaseKind::Postgres { admin_url, name } = &app.database.kind else {
        // Only a server database can be cut off from outside the process.
        eprintln!("database_outage_reports_unavailable runs only with TEST_DATABASE_URL");
        app.finish().await;
        return;
    };
    let (admin_url, name) = (admin_url.clone(), name.clone());
    app.install_with_token("ws1", "US").await;

    admin_execute(
        &admin_url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    )
    .await;
    admin_execute(
        &admin_url,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    )
    .await;

    let readyz = format!("{}/readyz", app.http_url);
    assert_eq!(http_status(&readyz).await, StatusCode::SERVICE_UNAVAILABLE);
    let status = app
        .grpc
        .clone()
        .get_workspace(intercom_installs::proto::GetWorkspaceRequest {
            workspace_id: "ws1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{}",
        status.message()
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            grpc_health(&app).await == ServingStatus::NotServing as i32
        })
        .await
    );

    admin_execute(
        &admin_url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            http_status(&readyz).await == StatusCode::OK
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            grpc_health(&app).await == ServingStatus::Serving as i32
        })
        .await
    );
    app.finish().await;
}

#[tokio::test]
async fn metrics_count_requests() {
    let app = TestApp::spawn().await;
    app.install_with_token("ws1", "US").await;
    let notification = reqwest::Client::new()
        .post(format!("{}/webhooks/uninstall", app.http_url))
        .body(r#"{"app_id":"nobody"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(notification.status(), StatusCode::OK);

    let response = reqwest::get(format!("{}/metrics", app.http_url))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let expected = [
        r#"intercom_installs_rpc_requests_total{rpc="Install",outcome="ok"} 1"#,
        r#"intercom_installs_rpc_duration_seconds_count{rpc="Install"} 1"#,
        r#"intercom_installs_intercom_requests_total{endpoint="me",status="200"} 1"#,
        r#"intercom_installs_uninstall_notifications_total{outcome="unknown_workspace"} 1"#,
    ];
    for line in expected {
        assert!(
            text.lines().any(|candidate| candidate == line),
            "missing {line} in\n{text}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let mut app = TestApp::spawn().await;
    app.intercom.add_workspace("ws1", "Acme", "US");
    let token = app.intercom.issue_token("ws1", "admin-1");
    app.intercom.set_fault(
        intercom_stand_in::Endpoint::Me,
        Some(intercom_stand_in::Fault::Delay(
            std::time::Duration::from_millis(1500),
        )),
    );
    let mut client = app.grpc.clone();
    let in_flight = tokio::spawn(async move {
        client
            .install(crate::helpers::install_request(&token))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    app.begin_shutdown();
    let response = in_flight.await.unwrap();

    assert!(response.is_ok(), "{response:?}");
    assert_eq!(app.installation("ws1").await.unwrap().status, "active");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        reqwest::get(format!("{}/healthz", app.http_url))
            .await
            .is_err(),
        "the HTTP listener is closed"
    );
    app.finish().await;
}
