use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Installations::Table)
                    .col(big_pk_auto(Installations::Id))
                    .col(string_uniq(Installations::WorkspaceId))
                    .col(string(Installations::Name))
                    .col(string(Installations::Region))
                    .col(string(Installations::Status))
                    .col(string(Installations::InstallMethod))
                    .col(string_null(Installations::InstalledByAdminId))
                    .col(blob_null(Installations::TokenCiphertext))
                    .col(string_null(Installations::TokenKeyId))
                    .col(string_null(Installations::TokenFingerprint))
                    .col(timestamp_with_time_zone(Installations::InstalledAt))
                    .col(timestamp_with_time_zone_null(Installations::TokenRotatedAt))
                    .col(timestamp_with_time_zone_null(Installations::RevokedAt))
                    .col(timestamp_with_time_zone_null(Installations::UninstalledAt))
                    .col(timestamp_with_time_zone(Installations::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(InstallationEvents::Table)
                    .col(big_pk_auto(InstallationEvents::Id))
                    .col(string(InstallationEvents::WorkspaceId))
                    .col(string(InstallationEvents::Kind))
                    .col(string(InstallationEvents::Actor))
                    .col(string_null(InstallationEvents::TokenFingerprint))
                    .col(timestamp_with_time_zone(InstallationEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_installation_events_workspace_id")
                    .table(InstallationEvents::Table)
                    .col(InstallationEvents::WorkspaceId)
                    .col(InstallationEvents::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OauthStates::Table)
                    .col(big_pk_auto(OauthStates::Id))
                    .col(string_uniq(OauthStates::StateHash))
                    .col(string(OauthStates::Purpose))
                    .col(string_null(OauthStates::WorkspaceId))
                    .col(string(OauthStates::Origin))
                    .col(string_null(OauthStates::BrowserHash))
                    .col(timestamp_with_time_zone(OauthStates::CreatedAt))
                    .col(timestamp_with_time_zone(OauthStates::ExpiresAt))
                    .col(timestamp_with_time_zone_null(OauthStates::ConsumedAt))
                    .col(blob_null(OauthStates::PendingTokenCiphertext))
                    .col(string_null(OauthStates::PendingTokenKeyId))
                    .col(string_null(OauthStates::PendingTokenFingerprint))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_states_expires_at")
                    .table(OauthStates::Table)
                    .col(OauthStates::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OauthStates::Table.into_iden(),
            InstallationEvents::Table.into_iden(),
            Installations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Installations {
    Table,
    Id,
    WorkspaceId,
    Name,
    Region,
    Status,
    InstallMethod,
    InstalledByAdminId,
    TokenCiphertext,
    TokenKeyId,
    TokenFingerprint,
    InstalledAt,
    TokenRotatedAt,
    RevokedAt,
    UninstalledAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InstallationEvents {
    Table,
    Id,
    WorkspaceId,
    Kind,
    Actor,
    TokenFingerprint,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    Id,
    StateHash,
    Purpose,
    WorkspaceId,
    Origin,
    BrowserHash,
    CreatedAt,
    ExpiresAt,
    ConsumedAt,
    PendingTokenCiphertext,
    PendingTokenKeyId,
    PendingTokenFingerprint,
}
