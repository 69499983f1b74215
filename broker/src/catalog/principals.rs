//! Principals changed at run time (the console API), shared with every region like tasks
//! and groups, beside those of the config. Their secrets travel between regions on the
//! mutually authenticated replication links and are stored in the region's metadata, as
//! they are in the config file; they are never shown by the API.

use auth::PrincipalSpec;

use super::book::{Book, Shared};
use super::record::{Record, Spec};
use crate::meta::SharedKind;

impl Spec for PrincipalSpec {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Shared for PrincipalSpec {
    const KIND: SharedKind = SharedKind::Principals;
    const NOUN: &'static str = "principal";

    fn validate(&self) -> Result<(), (&'static str, String)> {
        self.check().map(|_| ()).map_err(|e| (e.field, e.reason))
    }
}

pub type PrincipalRecord = Record<PrincipalSpec>;

/// The principals changed at run time.
pub type PrincipalBook = Book<PrincipalSpec>;
