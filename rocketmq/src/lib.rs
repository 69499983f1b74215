//! The RocketMQ 5 access point of a region: `apache.rocketmq.v2.MessagingService`, so that
//! applications written against the official RocketMQ 5 SDKs use georouter unchanged.
//! docs/rocketmq.md describes how georouter's model appears on the wire.
//!
//! - `names`: request metadata and how resources (with namespaces) map to topic names;
//! - `route`: a topic's message queues (one broker per origin region), pure;
//! - `send`: a sent message as a record, pure;
//! - `settings`: the answer to a client's settings on the Telemetry stream, pure;
//! - `status`: the one mapping of errors to the protocol's status codes;
//! - `pop`: PoP consumption (durable group state, receipt handles, filters, delivery),
//!   and `consume`: its RPCs; `renew`: push consumers' invisibility renewed by the server;
//! - `service`: the gRPC service over the broker.

mod access;
mod consume;
pub mod names;
pub mod pop;
pub mod renew;
pub mod route;
pub mod send;
pub mod service;
pub mod settings;
pub mod status;
mod telemetry;
pub mod transactions;

pub use service::AccessPoint;
pub use settings::Limits;

/// The tonic service for `access_point`, ready to add to a server.
pub fn server(
    access_point: AccessPoint,
) -> proto::rocketmq::v2::messaging_service_server::MessagingServiceServer<AccessPoint> {
    proto::rocketmq::v2::messaging_service_server::MessagingServiceServer::new(access_point)
}
