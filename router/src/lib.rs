//! The georouter node and CLI: the composition root that wires broker, replicator,
//! topology and console together. No business logic lives here.

pub mod cli;
pub mod config;
pub mod crew;
pub mod launch;
pub mod node;
pub mod otlp;
pub mod replication;
pub mod security;
pub mod tls;
