//! Principals: who may call. A principal has a name, an access key and a secret (its
//! credential), and grants. The secret is never logged nor shown: `Debug` redacts it, and
//! the node's runtime file leaves it out. It is kept as given (not hashed) because the
//! RocketMQ SDKs sign with it (HMAC-SHA1 needs the key on both ends); it is compared in
//! constant time.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::permission::{Action, Grant, GrantSpec, Resource};

/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 12;

/// A principal as configured (`[[auth.principals]]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSpec {
    pub name: String,
    pub access_key: String,
    pub secret: String,
    #[serde(default)]
    pub grants: Vec<GrantSpec>,
}

impl fmt::Debug for PrincipalSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrincipalSpec")
            .field("name", &self.name)
            .field("access_key", &self.access_key)
            .field("secret", &"<redacted>")
            .field("grants", &self.grants)
            .finish()
    }
}

/// What is wrong with a principal: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principal {name:?}: {field}: {reason}")]
pub struct PrincipalError {
    pub name: String,
    pub field: &'static str,
    pub reason: String,
}

fn plain_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl PrincipalSpec {
    /// The checked principal, or what is wrong.
    pub fn check(&self) -> Result<Principal, PrincipalError> {
        let fail = |field, reason: String| PrincipalError {
            name: self.name.clone(),
            field,
            reason,
        };
        if !plain_word(&self.name) {
            return Err(fail(
                "name",
                "must be ASCII letters, digits, '.', '_' or '-', and not empty".into(),
            ));
        }
        if !plain_word(&self.access_key) {
            return Err(fail(
                "access_key",
                "must be ASCII letters, digits, '.', '_' or '-', and not empty".into(),
            ));
        }
        // Sent in headers (a bearer credential, the SDKs' signature): printable ASCII.
        let printable = self.secret.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if self.secret.len() < MIN_SECRET_LEN
            || !printable
            || self.secret.starts_with(' ')
            || self.secret.ends_with(' ')
        {
            return Err(fail(
                "secret",
                format!(
                    "must be at least {MIN_SECRET_LEN} printable ASCII characters, without surrounding spaces"
                ),
            ));
        }
        let grants = self
            .grants
            .iter()
            .map(Grant::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| fail("grants", reason))?;
        Ok(Principal {
            name: self.name.clone(),
            access_key: self.access_key.clone(),
            secret: self.secret.clone(),
            grants,
        })
    }
}

/// A checked principal.
#[derive(Clone)]
pub struct Principal {
    pub name: String,
    pub access_key: String,
    secret: String,
    grants: Vec<Grant>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl Principal {
    /// A principal whose credential is a bare bearer token (the console's `admin_tokens`
    /// and `read_tokens`): any length, but not empty or whitespace.
    pub fn token(name: String, token: &str, grants: &[GrantSpec]) -> Result<Self, PrincipalError> {
        let fail = |field, reason: &str| PrincipalError {
            name: name.clone(),
            field,
            reason: reason.into(),
        };
        if token.trim().is_empty() || token.trim() != token || token.contains(':') {
            return Err(fail(
                "token",
                "must not be empty, hold ':' or have surrounding whitespace",
            ));
        }
        let grants = grants
            .iter()
            .map(Grant::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| fail("grants", &reason))?;
        Ok(Principal {
            access_key: name.clone(),
            name,
            secret: token.to_string(),
            grants,
        })
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is this principal's secret (constant time in the secret).
    pub fn secret_is(&self, presented: &str) -> bool {
        crate::same(self.secret.as_bytes(), presented.as_bytes())
    }

    pub fn may(&self, action: Action, resource: &Resource<'_>) -> bool {
        self.grants.iter().any(|g| g.allows(action, resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PrincipalSpec {
        PrincipalSpec {
            name: "shop".into(),
            access_key: "AK-shop".into(),
            secret: "s3cret-s3cret".into(),
            grants: vec![GrantSpec {
                resource: "topic:shop.*".into(),
                actions: vec![Action::Produce],
            }],
        }
    }

    #[test]
    fn a_principal_is_checked_field_by_field() {
        let p = spec().check().unwrap();
        assert!(p.may(Action::Produce, &Resource::Topic("shop.orders")));
        assert!(p.secret_is("s3cret-s3cret") && !p.secret_is("s3cret-s3creT"));
        for (change, field) in [
            (
                PrincipalSpec {
                    name: "".into(),
                    ..spec()
                },
                "name",
            ),
            (
                PrincipalSpec {
                    access_key: "a b".into(),
                    ..spec()
                },
                "access_key",
            ),
            (
                PrincipalSpec {
                    secret: "   ".into(),
                    ..spec()
                },
                "secret",
            ),
            (
                PrincipalSpec {
                    secret: "short".into(),
                    ..spec()
                },
                "secret",
            ),
            (
                PrincipalSpec {
                    grants: vec![GrantSpec {
                        resource: "x".into(),
                        actions: vec![],
                    }],
                    ..spec()
                },
                "grants",
            ),
        ] {
            assert_eq!(change.check().unwrap_err().field, field);
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?} {:?}", spec(), spec().check().unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
