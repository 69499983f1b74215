//! Whether a neighbour's subscription is admitted, pure: a running task must let the peer
//! pull this origin's data of this topic from this region (the peer is a target of the
//! task for that origin, or a relay on its route), the request must not come back from
//! its own origin, and the request's relays (`via`) must obey the hop-path rules.

use std::sync::Arc;

use crate::wire::message as msg;

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
    subscribe: &msg::Subscribe,
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

/// Whether a node serving alone (without the region's links and routes,
/// `LinkCtx::alone`) may take `subscribe`: only its own region's sub-logs, whose hop path
/// is the region itself; the planning node serves the rest.
pub(crate) fn alone_may_serve(region: &str, subscribe: &msg::Subscribe) -> Result<(), Refusal> {
    if subscribe.origin == region {
        return Ok(());
    }
    Err(Refusal::new(
        LinkCode::NotAllowed,
        format!(
            "this node serves only {region}'s own sub-logs (not {}'s); the region's planning node serves the rest",
            subscribe.origin
        ),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::fixture::{tasks, triangle, view};
    use crate::tasks::{TaskSpec, TaskState};

    fn subscribe(task: &str, topic: &str, origin: &str, via: &[&str]) -> msg::Subscribe {
        msg::Subscribe {
            task: task.into(),
            topic: topic.into(),
            partition: 0,
            origin: origin.into(),
            from: None,
            via: via.iter().map(|r| r.to_string()).collect(),
            incarnation: 0,
        }
    }

    /// Judges in region b, on the route a - b - c of task `spec`.
    fn admit_in_b(spec: TaskSpec, peer: &str, request: &msg::Subscribe) -> Result<String, Refusal> {
        let topology = triangle("b");
        let tasks = tasks(&topology, &[spec]);
        let view = view(&topology, &tasks);
        let here = Here {
            region: "b",
            hop_limit: 3,
            view: &view,
            pass_through: false,
        };
        let task = tasks.iter().find(|t| t.name() == request.task).cloned();
        admit(&here, task, peer, request).map(|t| t.name().to_string())
    }

    fn a_to_c() -> TaskSpec {
        TaskSpec::new("t", &["a"], &["c"], "orders")
    }

    #[test]
    fn a_target_or_a_relay_on_the_route_is_admitted() {
        let request = subscribe("t", "orders", "a", &[]);
        assert_eq!(admit_in_b(a_to_c(), "c", &request).unwrap(), "t");
    }

    #[test]
    fn a_region_the_task_does_not_carry_the_data_to_is_not_allowed() {
        let request = subscribe("t", "orders", "c", &[]);
        let refusal = admit_in_b(a_to_c(), "a", &request).unwrap_err();
        assert_eq!(refusal.code, LinkCode::NotAllowed);
        let other_topic = subscribe("t", "payments", "a", &[]);
        let refusal = admit_in_b(a_to_c(), "c", &other_topic).unwrap_err();
        assert_eq!(refusal.code, LinkCode::NotAllowed);
        assert!(
            refusal
                .message
                .contains("does not carry topic \"payments\"")
        );
    }

    #[test]
    fn a_node_serving_alone_serves_only_its_regions_own_sub_logs() {
        assert!(alone_may_serve("b", &subscribe("t", "orders", "b", &[])).is_ok());
        let refusal = alone_may_serve("b", &subscribe("t", "orders", "a", &[])).unwrap_err();
        assert_eq!(refusal.code, LinkCode::NotAllowed);
        assert!(
            refusal.message.contains("only b's own"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn unknown_and_paused_tasks_are_not_allowed() {
        let unknown = subscribe("nope", "orders", "a", &[]);
        let refusal = admit_in_b(a_to_c(), "c", &unknown).unwrap_err();
        assert_eq!(refusal.code, LinkCode::NotAllowed);
        assert!(refusal.message.contains("no task \"nope\""));
        let mut paused = a_to_c();
        paused.state = TaskState::Paused;
        let refusal = admit_in_b(paused, "c", &subscribe("t", "orders", "a", &[])).unwrap_err();
        assert!(refusal.message.contains("paused"));
    }

    #[test]
    fn loops_are_refused() {
        let own = subscribe("t", "orders", "c", &[]);
        let refusal = admit_in_b(a_to_c(), "c", &own).unwrap_err();
        assert_eq!(refusal.code, LinkCode::Loop, "{refusal}");
        let back = subscribe("t", "orders", "a", &["b"]);
        assert_eq!(
            admit_in_b(a_to_c(), "c", &back).unwrap_err().code,
            LinkCode::Loop
        );
        let long = subscribe("t", "orders", "a", &["x", "y", "z"]);
        let refusal = admit_in_b(a_to_c(), "c", &long).unwrap_err();
        assert!(refusal.message.contains("hop limit is 3"), "{refusal}");
    }

    #[test]
    fn held_data_is_not_served_back_along_its_path() {
        let topology = triangle("b");
        let view = view(&topology, &[]);
        let here = Here {
            region: "b",
            hop_limit: 3,
            view: &view,
            pass_through: false,
        };
        let path = vec!["a".to_string(), "b".to_string()];
        assert_eq!(may_serve(&here, &path, "c"), Ok(()));
        assert_eq!(
            may_serve(&here, &path, "a").unwrap_err().code,
            LinkCode::Loop
        );
    }
}
