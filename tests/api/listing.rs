use intercom_installs::proto::{self, InstallMethod, Region, WorkspaceStatus};
use tonic::Code;

use crate::helpers::TestApp;

fn list_request(page_size: i32, page_token: &str) -> proto::ListWorkspacesRequest {
    proto::ListWorkspacesRequest {
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    }
}

/// Lists every page of `request` and returns the workspace ids in order.
async fn list_all(app: &TestApp, request: proto::ListWorkspacesRequest) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut request = request;
    loop {
        let page = app
            .grpc
            .clone()
            .list_workspaces(request.clone())
            .await
            .unwrap()
            .into_inner();
        app.assert_no_secrets_in(&format!("{page:?}"));
        pages += 1;
        assert!(page.workspaces.len() as i32 <= request.page_size.max(1));
        ids.extend(
            page.workspaces
                .into_iter()
                .map(|workspace| workspace.workspace_id),
        );
        if page.next_page_token.is_empty() {
            return (ids, pages);
        }
        request.page_token = page.next_page_token;
    }
}

/// Installs seven workspaces: ws1 to ws5 with tokens (ws2 in EU, ws3 in AU,
/// ws4 revoked), then ws6 and ws7 through OAuth.
async fn seed(app: &TestApp) {
    for (id, region) in [
        ("ws1", "US"),
        ("ws2", "EU"),
        ("ws3", "AU"),
        ("ws4", "US"),
        ("ws5", "EU"),
    ] {
        app.install_with_token(id, region).await;
    }
    app.grpc
        .clone()
        .revoke(proto::RevokeRequest {
            workspace_id: "ws4".into(),
        })
        .await
        .unwrap();
    for id in ["ws6", "ws7"] {
        app.intercom.add_workspace(id, id, "US");
        app.intercom.sign_in(id, "admin-1");
        let mut browser = app.browser();
        app.walk_install(&mut browser, "/install").await;
    }
}

#[tokio::test]
async fn list_pages_in_install_order() {
    let app = TestApp::spawn().await;
    seed(&app).await;

    let (ids, pages) = list_all(&app, list_request(3, "")).await;

    assert_eq!(ids, ["ws1", "ws2", "ws3", "ws4", "ws5", "ws6", "ws7"]);
    assert_eq!(pages, 3);
    app.finish().await;
}

#[tokio::test]
async fn list_default_page_size_is_50() {
    let app = TestApp::spawn().await;
    for index in 0..51 {
        let id = format!("w{index:02}");
        app.intercom.add_workspace(&id, &id, "US");
        let token = app.intercom.issue_token(&id, "admin-1");
        app.grpc
            .clone()
            .install(crate::helpers::install_request(&token))
            .await
            .unwrap();
    }

    let first = app
        .grpc
        .clone()
        .list_workspaces(list_request(0, ""))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(first.workspaces.len(), 50);
    assert!(!first.next_page_token.is_empty());
    let second = app
        .grpc
        .clone()
        .list_workspaces(list_request(0, &first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.workspaces.len(), 1);
    assert_eq!(second.workspaces[0].workspace_id, "w50");
    assert!(second.next_page_token.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn list_filters_each_field() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let cases = [
        (
            proto::ListWorkspacesRequest {
                status: WorkspaceStatus::Revoked as i32,
                ..list_request(2, "")
            },
            vec!["ws4"],
        ),
        (
            proto::ListWorkspacesRequest {
                status: WorkspaceStatus::Active as i32,
                ..list_request(2, "")
            },
            vec!["ws1", "ws2", "ws3", "ws5", "ws6", "ws7"],
        ),
        (
            proto::ListWorkspacesRequest {
                region: Region::Eu as i32,
                ..list_request(1, "")
            },
            vec!["ws2", "ws5"],
        ),
        (
            proto::ListWorkspacesRequest {
                region: Region::Au as i32,
                ..list_request(2, "")
            },
            vec!["ws3"],
        ),
        (
            proto::ListWorkspacesRequest {
                install_method: InstallMethod::Oauth as i32,
                ..list_request(1, "")
            },
            vec!["ws6", "ws7"],
        ),
        (
            proto::ListWorkspacesRequest {
                install_method: InstallMethod::DeveloperHub as i32,
                region: Region::Us as i32,
                ..list_request(5, "")
            },
            vec!["ws1", "ws4"],
        ),
    ];

    for (request, expected) in cases {
        let (ids, _) = list_all(&app, request.clone()).await;
        assert_eq!(ids, expected, "{request:?}");
    }
    app.finish().await;
}

#[tokio::test]
async fn list_stays_stable_while_rows_are_added() {
    let app = TestApp::spawn().await;
    for id in ["ws1", "ws2", "ws3"] {
        app.install_with_token(id, "US").await;
    }
    let first = app
        .grpc
        .clone()
        .list_workspaces(list_request(2, ""))
        .await
        .unwrap()
        .into_inner();

    app.install_with_token("ws0", "US").await;
    let (rest, _) = list_all(&app, list_request(2, &first.next_page_token)).await;

    let first_ids: Vec<_> = first
        .workspaces
        .iter()
        .map(|workspace| workspace.workspace_id.as_str())
        .collect();
    assert_eq!(first_ids, ["ws1", "ws2"]);
    assert_eq!(rest, ["ws3", "ws0"]);
    app.finish().await;
}

#[tokio::test]
async fn list_rejects_bad_requests() {
    let app = TestApp::spawn().await;
    for id in ["ws1", "ws2"] {
        app.install_with_token(id, "US").await;
    }
    let first = app
        .grpc
        .clone()
        .list_workspaces(list_request(1, ""))
        .await
        .unwrap()
        .into_inner();
    let cases = [
        (list_request(-1, ""), "page_size: -1 is negative"),
        (
            list_request(1001, ""),
            "page_size: 1001 is above the maximum of 1000",
        ),
        (
            list_request(1, "garbage"),
            "page_token: is not a token this service issued",
        ),
        (
            list_request(1, "djE6eHl6Og"),
            "page_token: is not a token this service issued",
        ),
        (
            proto::ListWorkspacesRequest {
                region: Region::Eu as i32,
                ..list_request(1, &first.next_page_token)
            },
            "page_token: was issued for other filters",
        ),
        (
            proto::ListWorkspacesRequest {
                status: 9,
                ..list_request(1, "")
            },
            "status: 9 is not a known value",
        ),
        (
            proto::ListWorkspacesRequest {
                region: -2,
                ..list_request(1, "")
            },
            "region: -2 is not a known value",
        ),
        (
            proto::ListWorkspacesRequest {
                install_method: 3,
                ..list_request(1, "")
            },
            "install_method: 3 is not a known value",
        ),
    ];

    for (request, expected) in cases {
        let status = app.grpc.clone().list_workspaces(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(expected),
            "{}",
            status.message()
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn get_workspace_cases() {
    let app = TestApp::spawn().await;
    let (_, installed) = app.install_with_token("ws1", "AU").await;

    let found = app
        .grpc
        .clone()
        .get_workspace(proto::GetWorkspaceRequest {
            workspace_id: "ws1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let missing = app
        .grpc
        .clone()
        .get_workspace(proto::GetWorkspaceRequest {
            workspace_id: "ws2".into(),
        })
        .await
        .unwrap_err();
    let invalid = app
        .grpc
        .clone()
        .get_workspace(proto::GetWorkspaceRequest {
            workspace_id: "x".repeat(65),
        })
        .await
        .unwrap_err();

    assert_eq!(found, installed);
    app.assert_no_secrets_in(&format!("{found:?}"));
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid
            .message()
            .starts_with("workspace_id: is 65 characters long; the maximum is 64")
    );
    app.finish().await;
}
