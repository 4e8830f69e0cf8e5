use reqwest::StatusCode;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::{TestApp, http_status};

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
