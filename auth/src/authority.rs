//! The [`Authority`]: who a caller is (a bearer credential, or a RocketMQ signature) and
//! whether it may do what it asks. Every refusal is counted (by surface and reason) and
//! logged with the principal and the resource, never with a secret.
//!
//! Bearer credentials are `<access key>:<secret>`, or a console token alone (a principal
//! whose secret is that token). In open mode (`[auth] mode = "open"`, for development
//! only) a caller without credentials is let through as `anonymous`; a caller that
//! presents credentials is still checked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::permission::{Action, Resource};
use crate::principal::Principal;
use crate::signature;

/// How far a signed request's date may be from the node's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No credentials, let in by open mode.
    Anonymous,
    Principal(Arc<Principal>),
}

impl Caller {
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Principal(p) => &p.name,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No credentials, or wrong ones.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("principal {principal} may not {action} {resource}")]
    Forbidden {
        principal: String,
        action: &'static str,
        resource: String,
    },
}

impl Denial {
    fn reason(&self) -> &'static str {
        match self {
            Denial::Unauthenticated(_) => "unauthenticated",
            Denial::Forbidden { .. } => "forbidden",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    surface: &'static str,
    reason: &'static str,
}

type ByAccessKey = HashMap<String, Arc<Principal>>;

pub struct Authority {
    /// The config's principals (and the console tokens, and the generated admin).
    by_access_key: ByAccessKey,
    /// Principals changed at run time, replaced whole by `set_shared`; the config's win
    /// over them on the same access key.
    shared: std::sync::RwLock<Arc<ByAccessKey>>,
    anonymous: bool,
    denials: Family<DenialLabels, Counter>,
}

impl Authority {
    /// `principals`; `anonymous`: callers without credentials are let in (open mode).
    pub fn new(principals: Vec<Principal>, anonymous: bool) -> Self {
        Authority {
            by_access_key: principals
                .into_iter()
                .map(|p| (p.access_key.clone(), Arc::new(p)))
                .collect(),
            shared: Default::default(),
            anonymous,
            denials: Family::default(),
        }
    }

    /// The principals changed at run time, all of them from now on.
    pub fn set_shared(&self, principals: Vec<Principal>) {
        let map = principals
            .into_iter()
            .map(|p| (p.access_key.clone(), Arc::new(p)))
            .collect();
        *self.shared.write().expect("principals") = Arc::new(map);
    }

    fn principal(&self, access_key: &str) -> Option<Arc<Principal>> {
        self.by_access_key.get(access_key).cloned().or_else(|| {
            self.shared
                .read()
                .expect("principals")
                .get(access_key)
                .cloned()
        })
    }

    /// Everyone may do everything (tests of other things, and development).
    pub fn open() -> Self {
        Authority::new(Vec::new(), true)
    }

    pub fn anonymous_allowed(&self) -> bool {
        self.anonymous
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "georouter_auth_denied",
            "Requests refused: unauthenticated (no or wrong credentials) or forbidden, by surface",
            self.denials.clone(),
        );
    }

    fn missing(&self, what: &str) -> Result<Caller, Denial> {
        if self.anonymous {
            Ok(Caller::Anonymous)
        } else {
            Err(Denial::Unauthenticated(format!("{what} required")))
        }
    }

    /// The caller of an `authorization` header value `Bearer <access key>:<secret>` (or
    /// `Bearer <console token>`).
    pub fn bearer(&self, authorization: Option<&str>) -> Result<Caller, Denial> {
        let Some(value) = authorization else {
            return self.missing("credentials (authorization: Bearer <access key>:<secret>) are");
        };
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                Denial::Unauthenticated("authorization must be Bearer <access key>:<secret>".into())
            })?;
        let wrong = || Denial::Unauthenticated("unknown access key or wrong secret".into());
        if let Some((key, secret)) = token.split_once(':')
            && let Some(p) = self.principal(key)
        {
            return if p.secret_is(secret) {
                Ok(Caller::Principal(p))
            } else {
                Err(wrong())
            };
        }
        // A console token: the principal whose secret it is (every one compared).
        let shared = self.shared.read().expect("principals").clone();
        let mut found = None;
        for p in self.by_access_key.values().chain(shared.values()) {
            if p.secret_is(token) {
                found = Some(p.clone());
            }
        }
        found.map(Caller::Principal).ok_or_else(wrong)
    }

    /// The caller of a RocketMQ request signed by `access_key` over `date_time`, at
    /// `now_s` (seconds since the epoch); `None`: the request was not signed.
    pub fn signed(
        &self,
        credential: Option<(&str, &str, &str)>,
        now_s: i64,
    ) -> Result<Caller, Denial> {
        let Some((access_key, signature, date_time)) = credential else {
            return self.missing("a signed request (the SDK's credentials) is");
        };
        let p = self
            .principal(access_key)
            .ok_or_else(|| Denial::Unauthenticated(format!("unknown access key {access_key:?}")))?;
        if !signature::verify(p.secret(), date_time, signature) {
            return Err(Denial::Unauthenticated(format!(
                "the signature of access key {access_key:?} does not match its secret"
            )));
        }
        if !signature::fresh(date_time, now_s, MAX_CLOCK_SKEW) {
            return Err(Denial::Unauthenticated(format!(
                "x-mq-date-time {date_time:?} is more than {} s from this node's clock (UTC)",
                MAX_CLOCK_SKEW.as_secs()
            )));
        }
        Ok(Caller::Principal(p))
    }

    /// Whether `caller` may do `action` on `resource`.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource<'_>,
    ) -> Result<(), Denial> {
        match caller {
            Caller::Anonymous => Ok(()),
            Caller::Principal(p) if p.may(action, resource) => Ok(()),
            Caller::Principal(p) => Err(Denial::Forbidden {
                principal: p.name.clone(),
                action: action.as_str(),
                resource: resource.to_string(),
            }),
        }
    }

    /// Counts and logs a refusal on `surface`.
    pub fn refused(&self, surface: &'static str, denial: &Denial) {
        self.denials
            .get_or_create(&DenialLabels {
                surface,
                reason: denial.reason(),
            })
            .inc();
        tracing::warn!(event = "request_refused", %surface, %denial, "request refused");
    }

    /// How many refusals `surface` counted for `reason` (for tests and status).
    pub fn denied(&self, surface: &'static str, reason: &'static str) -> u64 {
        self.denials
            .get_or_create(&DenialLabels { surface, reason })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::GrantSpec;
    use crate::principal::PrincipalSpec;

    fn authority() -> Authority {
        let shop = PrincipalSpec {
            name: "shop".into(),
            access_key: "AK1".into(),
            secret: "shop-secret-123".into(),
            grants: vec![GrantSpec {
                resource: "topic:shop.*".into(),
                actions: vec![Action::Produce],
            }],
        };
        Authority::new(vec![shop.check().unwrap()], false)
    }

    #[test]
    fn bearer_credentials_are_checked() {
        let a = authority();
        assert!(a.bearer(Some("Bearer AK1:shop-secret-123")).is_ok());
        assert!(
            a.bearer(Some("Bearer shop-secret-123")).is_ok(),
            "a token alone"
        );
        for bad in [
            None,
            Some("Bearer AK1:wrong"),
            Some("Basic x"),
            Some("Bearer AK9:x"),
        ] {
            assert!(
                matches!(a.bearer(bad), Err(Denial::Unauthenticated(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Authority::open().bearer(None),
            Ok(Caller::Anonymous)
        ));
    }

    #[test]
    fn signed_requests_are_checked_with_their_date() {
        let a = authority();
        let date = "20261203T101500Z";
        let now = signature::parse_date_time(date).unwrap();
        let good = signature::sign("shop-secret-123", date);
        assert!(a.signed(Some(("AK1", &good, date)), now).is_ok());
        let bad = signature::sign("other-secret-123", date);
        let refused = a.signed(Some(("AK1", &bad, date)), now).unwrap_err();
        assert!(refused.to_string().contains("does not match"), "{refused}");
        assert!(a.signed(Some(("AK1", &good, date)), now + 3600).is_err());
        assert!(a.signed(None, now).is_err());
    }

    #[test]
    fn authorization_follows_grants_and_refusals_are_counted() {
        let a = authority();
        let caller = a.bearer(Some("Bearer AK1:shop-secret-123")).unwrap();
        assert!(
            a.authorize(&caller, Action::Produce, &Resource::Topic("shop.x"))
                .is_ok()
        );
        let denial = a
            .authorize(&caller, Action::Delete, &Resource::Topic("shop.x"))
            .unwrap_err();
        assert_eq!(
            denial.to_string(),
            "principal shop may not delete topic:shop.x"
        );
        a.refused("grpc", &denial);
        assert_eq!(a.denied("grpc", "forbidden"), 1);
    }
}
