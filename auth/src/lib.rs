//! The security model every surface enforces (the own gRPC API, the RocketMQ access point,
//! the console): principals with credentials (`principal`), permissions by resource
//! pattern (`permission`), the request signatures of the RocketMQ SDKs (`signature`), the
//! admin credential a node makes for itself when it is given none (`admin`), and the
//! [`Authority`] that answers "who is this" and "may they" (`authority`).
//! docs/security.md states the threat model.

pub mod admin;
pub mod authority;
pub mod certificate;
pub mod permission;
pub mod principal;
pub mod signature;

pub use authority::{Authority, Caller, Denial};

/// Whether `a` and `b` are equal, in time that depends on their lengths only, not on
/// where the first difference is.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
pub use permission::{Action, GrantSpec, Resource};
pub use principal::{Principal, PrincipalSpec};
