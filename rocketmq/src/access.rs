//! Who calls the access point, and whether they may: every request is signed by the SDK
//! with its principal's secret (`authorization: MQv2-HMAC-SHA1 ...` over `x-mq-date-time`)
//! and checked by the region's [`auth::Authority`]. A request without a signature, with a
//! wrong one, or with a stale date answers `UNAUTHORIZED`; one the principal has no grant
//! for answers `FORBIDDEN`, naming principal, action and resource. A namespace is part of
//! the names checked (`topic:shop.*` covers namespace `shop`).

use auth::{Action, Denial, Resource};
use proto::rocketmq::v2::Code;

use crate::names::ClientMeta;
use crate::service::AccessPoint;
use crate::status::Refusal;

impl AccessPoint {
    /// Whether the signer of the request of `meta` may do each of `wants`.
    pub(crate) fn allow(
        &self,
        meta: &ClientMeta,
        wants: &[(Action, Resource<'_>)],
    ) -> Result<(), Refusal> {
        let credential = meta.credential.as_ref();
        let allowed = match credential {
            Some(c) if c.algorithm != auth::signature::ALGORITHM => {
                Err(Denial::Unauthenticated(format!(
                    "authorization algorithm {:?}: expected {}",
                    c.algorithm,
                    auth::signature::ALGORITHM
                )))
            }
            _ => self.authority.signed(
                credential.map(|c| {
                    (
                        c.access_key.as_str(),
                        c.signature.as_str(),
                        c.date_time.as_str(),
                    )
                }),
                broker::record::now_ms().div_euclid(1000),
            ),
        }
        .and_then(|caller| {
            wants.iter().try_for_each(|(action, resource)| {
                self.authority.authorize(&caller, *action, resource)
            })
        });
        allowed.map_err(|denial| {
            self.authority.refused("rocketmq", &denial);
            let code = match denial {
                Denial::Unauthenticated(_) => Code::Unauthorized,
                Denial::Forbidden { .. } => Code::Forbidden,
            };
            Refusal::new(code, denial.to_string())
        })
    }

    /// The status of an RPC that needs only a signed caller: OK once `then` ran, or the
    /// refusal.
    pub(crate) fn signed(
        &self,
        meta: &ClientMeta,
        then: impl FnOnce(),
    ) -> proto::rocketmq::v2::Status {
        match self.allow(meta, &[]) {
            Ok(()) => {
                then();
                crate::status::ok()
            }
            Err(refusal) => refusal.status(),
        }
    }

    /// What consuming `topic` in `group` needs.
    pub(crate) fn allow_consume(
        &self,
        meta: &ClientMeta,
        group: &str,
        topic: &str,
    ) -> Result<(), Refusal> {
        self.allow(
            meta,
            &[
                (Action::Consume, Resource::Topic(topic)),
                (Action::Consume, Resource::Group(group)),
            ],
        )
    }
}
