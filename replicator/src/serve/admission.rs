//! Whether a neighbour's subscription is admitted, pure: a running task must let the peer
//! pull this origin's data of this topic from this region (the peer is a target of the
//! task for that origin, or a relay on its route), the request must not come back from
//! its own origin, and the request's relays (`via`) must obey the hop-path rules.

use std::sync::Arc;

use proto::link::v1 as pb;

use crate::routing::{HopPath, Need, RouteView};
use crate::tasks::Task;
use crate::wire::{LinkCode, Refusal};

/// Where a subscription is judged.
pub(crate) struct Here<'a> {
    pub region: &'a str,
    pub hop_limit: usize,
    pub view: &'a RouteView,
    /// This region relays without storing.
    pub pass_through: bool,
}

/// The task `subscribe` names (`task`: as found here), if it admits the request of
/// `peer`.
pub(crate) fn admit(
    here: &Here<'_>,
    task: Option<Arc<Task>>,
    peer: &str,
    subscribe: &pb::Subscribe,
) -> Result<Arc<Task>, Refusal> {
    let task = task.ok_or_else(|| {
        Refusal::new(
            LinkCode::NotAllowed,
            format!("no task \"{}\" here", subscribe.task),
        )
    })?;
    if !task.running() {
        return Err(Refusal::new(
            LinkCode::NotAllowed,
            format!("task \"{}\" is paused", task.name()),
        ));
    }
    if subscribe.origin == peer {
        return Err(Refusal::new(
            LinkCode::Loop,
            format!("{peer} is the origin of these records"),
        ));
    }
    if let Err(e) = HopPath(&subscribe.via).admits(here.region, here.hop_limit) {
        return Err(Refusal::new(
            LinkCode::Loop,
            format!("the request's relays: {e}"),
        ));
    }
    if !task.matches(&subscribe.topic) || here.view.need(&task, &subscribe.origin, peer).is_none() {
        return Err(Refusal::new(
            LinkCode::NotAllowed,
            format!(
                "task \"{}\" does not carry topic \"{}\" of origin {} to {peer} (it is neither a target nor a relay on the route)",
                task.name(),
                subscribe.topic,
                subscribe.origin,
            ),
        ));
    }
    Ok(task)
}

/// Whether this region relays `origin`'s data of `task` without storing it (and so serves
/// a subscription by relaying it upstream).
pub(crate) fn relays_without_storing(here: &Here<'_>, task: &Task, origin: &str) -> bool {
    here.pass_through
        && origin != here.region
        && here.view.need(task, origin, here.region) != Some(Need::Store)
}

/// Whether data of hop path `path` held here may be served to `peer`.
pub(crate) fn may_serve(here: &Here<'_>, path: &[String], peer: &str) -> Result<(), Refusal> {
    HopPath(path)
        .admits(peer, here.hop_limit)
        .map_err(|e| Refusal::new(LinkCode::Loop, format!("these records {e}")))
}
