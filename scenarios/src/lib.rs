//! The multi-region harness: regions on loopback joined through an emulated WAN, the named
//! scenarios that run workloads and failures across them, and their reports.
//!
//! Layout: `wan` (the emulator), `launch` (how nodes start: the router provides in-process
//! and process launchers), `deploy` (certificates, node configs, start order), `cluster`
//! (regions + links wired through the emulator),
//! `workload` (record format, producers), `observe` (followers measuring lag), `verify`
//! (invariants), `report`, and `scenario` (the five scenarios and their shared runner).

pub mod catchup;
pub mod cluster;
pub mod deploy;
pub mod launch;
pub mod observe;
pub mod report;
pub mod scenario;
pub mod soak;
pub mod verify;
pub mod wan;
pub mod workload;
