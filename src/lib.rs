//! intercom-installs: owns the app's installations across Intercom workspaces.
//!
//! Internal services use the gRPC API in [`grpc`]; admins' browsers and
//! Intercom reach the HTTP side in [`http`]. Both call the rules in
//! [`installations`], which keep state through [`persistence`] and talk to
//! Intercom through [`intercom`].

pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod http;
pub mod installations;
pub mod intercom;
pub mod metrics;
pub mod oauth;
pub mod persistence;
pub mod startup;
pub mod tasks;
pub mod telemetry;

/// Code generated from `proto/intercom/installs/v1/installs.proto`.
pub mod proto {
    tonic::include_proto!("intercom.installs.v1");

    /// Encoded descriptors of the service and its imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/installs_descriptor.bin"));
}
