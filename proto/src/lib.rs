//! The public wire types of georouter's client API: the gRPC service `georouter.v1.Broker`
//! generated from `georouter/v1/broker.proto`. The `.proto` file is the contract; these
//! types stay at the edges (the gRPC service and the client library).
//! It also holds the replication link's control messages (`georouter.link.v1`).

#![allow(clippy::all, missing_docs)]

pub mod codec;
pub mod error_code;
pub mod stable_code;

pub mod v1 {
    tonic::include_proto!("georouter.v1");
}

/// The RocketMQ 5 gRPC protocol (`apache/rocketmq/v2/*.proto`), served by the access point
/// so that the official RocketMQ 5 SDKs work unchanged.
pub mod rocketmq {
    pub mod v2 {
        tonic::include_proto!("apache.rocketmq.v2");
    }
}

/// The replication link's control messages (`georouter/link/v1/link.proto`).
pub mod link {
    pub mod v1 {
        tonic::include_proto!("georouter.link.v1");
    }
}
