//! sea-orm entities for the tables created in `migrations/`.

pub mod installation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "installations")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub workspace_id: String,
        pub name: String,
        pub region: String,
        pub status: String,
        pub install_method: String,
        pub installed_by_admin_id: Option<String>,
        /// `nonce || AES-256-GCM(token)`; `None` once revoked or uninstalled.
        pub token_ciphertext: Option<Vec<u8>>,
        pub token_key_id: Option<String>,
        pub token_fingerprint: Option<String>,
        pub installed_at: DateTimeUtc,
        pub token_rotated_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
        pub uninstalled_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod installation_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "installation_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub workspace_id: String,
        pub kind: String,
        pub actor: String,
        pub token_fingerprint: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod oauth_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_states")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// SHA-256 of the state value; the value itself is never stored.
        #[sea_orm(unique)]
        pub state_hash: String,
        pub purpose: String,
        pub workspace_id: Option<String>,
        pub origin: String,
        /// SHA-256 of the browser id cookie of the browser that started the
        /// flow; `None` until a browser opens the flow's `/install` link.
        pub browser_hash: Option<String>,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub consumed_at: Option<DateTimeUtc>,
        /// A token from this flow's code exchange whose workspace is not
        /// known yet because `GET /me` failed; sealed like installation
        /// tokens, with `oauth_state:<id>` as associated data.
        pub pending_token_ciphertext: Option<Vec<u8>>,
        pub pending_token_key_id: Option<String>,
        pub pending_token_fingerprint: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
