//! Taking a pushed sub-log stream (`serve::push`), pure: a push is adopted as the pull of
//! its sub-log only where a subscription would have asked for the same records, and until
//! the neighbour's next advertisement it counts as that neighbour's offer of the sub-log,
//! so that planning sees it whichever of the two arrives first.

use crate::wire::message::{Advertise, Push, StartFrom, SubLogOffer, TopicOffer};

/// Whether `push` serves what subscribing from `from` (of `held_incarnation`, 0: none)
/// would: the same start of the same incarnation, the whole sub-log for a pull that holds
/// nothing, or, for a task starting at a time, a sub-log that was empty then or later.
pub(crate) fn adopts(from: StartFrom, held_incarnation: u64, push: &Push) -> bool {
    let served = &push.subscribed;
    match from {
        StartFrom::Offset(n) => {
            n == served.start_offset
                && (held_incarnation == 0 || held_incarnation == served.incarnation)
        }
        StartFrom::Earliest => true,
        StartFrom::TimestampMs(ms) => ms <= push.empty_at_ms,
        StartFrom::Latest => false,
    }
}

/// `advertise` with the pushed sub-log among its offers (unchanged when it is there).
pub(crate) fn with_pushed(advertise: &Advertise, push: &Push) -> Advertise {
    let asked = &push.subscription;
    let offer = SubLogOffer {
        partition: asked.partition,
        origin: asked.origin.clone(),
        start_offset: push.subscribed.start_offset,
        end_offset: push.subscribed.start_offset,
        bytes: 0,
        path: push.subscribed.path.clone(),
        incarnation: push.subscribed.incarnation,
    };
    let mut merged = advertise.clone();
    let at = match merged.topics.iter().position(|t| t.topic == asked.topic) {
        Some(at) => at,
        None => {
            merged.topics.push(TopicOffer {
                topic: asked.topic.clone(),
                partitions: push.partitions,
                sub_logs: Vec::new(),
                message_type: push.message_type.clone(),
            });
            merged.topics.len() - 1
        }
    };
    let topic = &mut merged.topics[at];
    let held = topic
        .sub_logs
        .iter()
        .any(|s| s.partition == offer.partition && s.origin == offer.origin);
    if !held {
        topic.sub_logs.push(offer);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(start: u64, incarnation: u64, empty_at_ms: i64) -> Push {
        Push::sample(start, incarnation, empty_at_ms)
    }

    #[test]
    fn a_push_is_adopted_only_where_a_subscription_would_start_the_same() {
        let p = push(0, 7, 1_000);
        assert!(adopts(StartFrom::Earliest, 0, &p));
        assert!(adopts(StartFrom::Offset(0), 0, &p));
        assert!(adopts(StartFrom::Offset(0), 7, &p));
        assert!(!adopts(StartFrom::Offset(5), 7, &p), "holds more already");
        assert!(!adopts(StartFrom::Offset(0), 6, &p), "another incarnation");
        assert!(adopts(StartFrom::TimestampMs(1_000), 0, &p));
        assert!(
            !adopts(StartFrom::TimestampMs(1_001), 0, &p),
            "records written before the task started here would be included"
        );
        assert!(!adopts(StartFrom::Latest, 0, &p));
    }

    #[test]
    fn a_pushed_sub_log_joins_the_advertisement_once() {
        let p = push(0, 7, 1_000);
        let merged = with_pushed(&Advertise { topics: Vec::new() }, &p);
        assert_eq!(merged.topics.len(), 1);
        assert_eq!(merged.topics[0].partitions, 2);
        assert_eq!(merged.topics[0].sub_logs[0].partition, 1);
        assert_eq!(merged.topics[0].sub_logs[0].incarnation, 7);
        assert_eq!(with_pushed(&merged, &p), merged, "already offered");
        let mut other = push(0, 7, 1_000);
        other.subscription.partition = 0;
        let both = with_pushed(&merged, &other);
        assert_eq!(both.topics.len(), 1);
        assert_eq!(both.topics[0].sub_logs.len(), 2);
    }
}
