//! What a region takes of the control state its neighbours send: peers speak only for
//! themselves. Before the last-writer-wins rule applies, a shared record from a neighbour
//! must
//!
//! 1. carry a valid seal of the region it names as author (`changed_by`), whichever
//!    neighbour relayed it (`identity::seal`);
//! 2. follow the version held by at most `MAX_VERSION_STEP` (no jump to a version nothing
//!    could supersede, no wrap);
//! 3. come from a region entitled to make it: a task record from a region of that task
//!    (before and after the change), or from a change a cluster administrator asked for
//!    (`admin`, with the principal named in `by`); a principal record only from an
//!    administrator's change; a group's settings from any region.
//!
//! A link state must carry its own region's seal and a sequence number no further ahead of
//! this region's clock than `MAX_SEQ_AHEAD_MS` (sequence numbers start from the clock, so
//! a larger one could pin a region's state). Refusals are counted
//! (`control_refused{kind,reason}`) and logged with the neighbour and the author.

use broker::catalog::record::{MAX_VERSION_STEP, Record, signed_bytes, version_fits};
use broker::catalog::{GroupSpec, Shared};
use serde::Serialize;

use crate::identity::seal::{SealError, Verifier};
use crate::tasks::TaskSpec;
use crate::tasks::catalog::may_change_task;
use crate::wire::message as msg;

/// How far a link state's sequence number may be ahead of this region's clock.
pub(crate) const MAX_SEQ_AHEAD_MS: u64 = 3_600_000;

/// Who asked for a change made here: the principal (none: the region itself, such as a
/// failover) and whether they are a cluster administrator. Carried in the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorship {
    pub principal: Option<String>,
    pub admin: bool,
}

impl Authorship {
    /// The region itself (a failover, its configuration's own tasks).
    pub fn region() -> Self {
        Authorship::default()
    }

    pub fn principal(name: &str, admin: bool) -> Self {
        Authorship {
            principal: Some(name.to_string()),
            admin,
        }
    }
}

/// Why control state from a neighbour was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("region \"{author}\" may not make it: {why}")]
    NotEntitled { author: String, why: String },
    #[error("version {version} is more than {MAX_VERSION_STEP} past the {held} held")]
    VersionJump { version: u64, held: u64 },
    #[error(
        "sequence {seq} is more than {MAX_SEQ_AHEAD_MS} ms ahead of this region's clock ({now})"
    )]
    SeqAhead { seq: u64, now: u64 },
}

impl Refusal {
    /// The label of the refusal metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Seal(e) => e.reason(),
            Refusal::NotEntitled { .. } => "not_entitled",
            Refusal::VersionJump { .. } => "version_jump",
            Refusal::SeqAhead { .. } => "seq_ahead",
        }
    }
}

/// A kind of record regions author and share.
pub trait Authored: Serialize + Clone {
    /// The kind, as sealed and counted ("task").
    const KIND: &'static str;
    /// Why the author of `record` may not make it over `held` (the live record held).
    fn not_entitled(record: &Record<Self>, held: Option<&Record<Self>>) -> Option<String>;
}

impl Authored for TaskSpec {
    const KIND: &'static str = "task";

    fn not_entitled(record: &Record<Self>, held: Option<&Record<Self>>) -> Option<String> {
        (!record.admin && !may_change_task(&record.changed_by, &record.spec, held.map(|r| &r.spec)))
            .then(|| {
                format!(
                    "it is not a region of task \"{}\" and no cluster administrator asked for the change",
                    record.spec.name
                )
            })
    }
}

impl Authored for GroupSpec {
    const KIND: &'static str = <GroupSpec as Shared>::NOUN;

    fn not_entitled(_: &Record<Self>, _: Option<&Record<Self>>) -> Option<String> {
        None
    }
}

impl Authored for auth::PrincipalSpec {
    const KIND: &'static str = <auth::PrincipalSpec as Shared>::NOUN;

    fn not_entitled(record: &Record<Self>, _: Option<&Record<Self>>) -> Option<String> {
        (!record.admin)
            .then(|| "principals change only at a cluster administrator's request".into())
    }
}

/// The checks of the module documentation on a record from a neighbour, given the record
/// held of that name (tombstones included).
pub(crate) fn judge<S: Authored>(
    record: &Record<S>,
    held: Option<&Record<S>>,
    verifier: &Verifier,
) -> Result<(), Refusal> {
    let held_version = held.map_or(0, |h| h.version);
    if !version_fits(record.version, held_version) {
        return Err(Refusal::VersionJump {
            version: record.version,
            held: held_version,
        });
    }
    verifier.check_record(
        &record.changed_by,
        &signed_bytes(S::KIND, record),
        record.seal.as_ref(),
    )?;
    if let Some(why) = S::not_entitled(record, held.filter(|h| !h.deleted)) {
        return Err(Refusal::NotEntitled {
            author: record.changed_by.clone(),
            why,
        });
    }
    Ok(())
}

/// The checks on a link state from a neighbour, at `now_ms` on this region's clock.
pub(crate) fn judge_link_state(
    state: &msg::LinkState,
    now_ms: u64,
    verifier: &Verifier,
) -> Result<(), Refusal> {
    if state.seq > now_ms.saturating_add(MAX_SEQ_AHEAD_MS) {
        return Err(Refusal::SeqAhead {
            seq: state.seq,
            now: now_ms,
        });
    }
    verifier.check_link_state(state)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::certs::Ca;
    use crate::identity::seal::Sealer;
    use crate::identity::tls::Identity;
    use broker::catalog::record::Author;

    struct Regions {
        ca: Ca,
        verifier: Verifier,
    }

    impl Regions {
        fn new() -> Self {
            let ca = Ca::generate().unwrap();
            let verifier = Verifier::new(&Self::identity(&ca, "x"));
            Regions { ca, verifier }
        }

        fn identity(ca: &Ca, region: &str) -> Identity {
            let cert = ca.issue(region, 30).unwrap();
            Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap()
        }

        /// A record of `spec` at `version` made and sealed by `region`.
        fn made<S: Authored>(&self, region: &str, spec: S, version: u64, admin: bool) -> Record<S> {
            let sealer = Sealer::new(&Self::identity(&self.ca, region)).unwrap();
            let seal = |b: &[u8]| sealer.seal(b);
            let author = Author {
                region,
                principal: admin.then_some("root"),
                admin,
                sealer: Some(&seal),
            };
            author.record(S::KIND, spec, version, false)
        }
    }

    fn task(sources: &[&str], targets: &[&str]) -> TaskSpec {
        TaskSpec::new("t", sources, targets, "orders")
    }

    #[test]
    fn a_task_changes_only_from_its_regions_unless_an_administrator_asked() {
        let r = Regions::new();
        let ab = task(&["a"], &["b"]);
        assert_eq!(
            judge(&r.made("a", ab.clone(), 1, false), None, &r.verifier),
            Ok(())
        );
        let refused = judge(&r.made("c", ab.clone(), 1, false), None, &r.verifier).unwrap_err();
        assert_eq!(refused.reason(), "not_entitled", "{refused}");
        assert_eq!(
            judge(&r.made("c", ab.clone(), 1, true), None, &r.verifier),
            Ok(())
        );

        // A region cannot take over a task by adding itself to it.
        let held = r.made("a", ab, 1, false);
        let with_c = r.made("c", task(&["a"], &["b", "c"]), 2, false);
        assert_eq!(
            judge(&with_c, Some(&held), &r.verifier)
                .unwrap_err()
                .reason(),
            "not_entitled"
        );
    }

    #[test]
    fn a_record_in_another_regions_name_is_refused() {
        let r = Regions::new();
        // c seals a record that names a as its author: c's certificate does not name a.
        let mut forged = r.made("c", task(&["a"], &["b"]), 1, true);
        forged.changed_by = "a".into();
        let sealer = Sealer::new(&Regions::identity(&r.ca, "c")).unwrap();
        forged.seal = Some(sealer.seal(&signed_bytes("task", &forged)));
        assert_eq!(
            judge(&forged, None, &r.verifier).unwrap_err().reason(),
            "wrong_region"
        );
        // a's own record, changed on the way (made an administrator's): a's seal no longer
        // matches.
        let mut altered = r.made("a", task(&["a"], &["b"]), 1, false);
        altered.admin = true;
        assert_eq!(
            judge(&altered, None, &r.verifier).unwrap_err().reason(),
            "bad_signature"
        );
    }

    #[test]
    fn versions_may_not_jump() {
        let r = Regions::new();
        let held = r.made("a", task(&["a"], &["b"]), 5, false);
        let next = r.made("a", task(&["a"], &["b"]), 5 + MAX_VERSION_STEP, false);
        assert_eq!(judge(&next, Some(&held), &r.verifier), Ok(()));
        let jump = r.made("a", task(&["a"], &["b"]), 6 + MAX_VERSION_STEP, false);
        assert_eq!(
            judge(&jump, Some(&held), &r.verifier).unwrap_err().reason(),
            "version_jump"
        );
        let wrap = r.made("a", task(&["a"], &["b"]), u64::MAX, false);
        assert_eq!(
            judge(&wrap, None, &r.verifier).unwrap_err().reason(),
            "version_jump"
        );
    }

    #[test]
    fn principals_change_only_at_an_administrators_request() {
        let r = Regions::new();
        let spec = auth::PrincipalSpec {
            name: "app".into(),
            access_key: "app".into(),
            secret: "a-long-enough-secret".into(),
            grants: vec![],
        };
        assert_eq!(
            judge(&r.made("a", spec.clone(), 1, false), None, &r.verifier)
                .unwrap_err()
                .reason(),
            "not_entitled"
        );
        assert_eq!(
            judge(&r.made("a", spec, 1, true), None, &r.verifier),
            Ok(())
        );
    }

    #[test]
    fn a_link_state_far_ahead_of_the_clock_is_refused() {
        let r = Regions::new();
        let mut state = msg::LinkState {
            region: "a".into(),
            seq: 1_000 + MAX_SEQ_AHEAD_MS + 1,
            links: vec![],
            seal: None,
        };
        Sealer::new(&Regions::identity(&r.ca, "a"))
            .unwrap()
            .seal_link_state(&mut state);
        assert_eq!(
            judge_link_state(&state, 1_000, &r.verifier)
                .unwrap_err()
                .reason(),
            "seq_ahead"
        );
        assert_eq!(judge_link_state(&state, 2_000, &r.verifier), Ok(()));
    }
}
