//! The multi-region harness: regions on loopback joined through an emulated WAN.

pub mod wan;
