//! Routing decisions, pure: the hop-path rules (`hop_path`), the link-state database
//! (`link_states`) and the route view with the relay duties it gives each region (`view`).

pub mod hop_path;
pub mod link_states;
pub mod view;

pub(crate) use hop_path::{HopError, HopPath};
pub(crate) use link_states::LinkStateDb;
pub(crate) use view::{Need, RouteView};

#[cfg(test)]
pub(crate) mod fixture;
