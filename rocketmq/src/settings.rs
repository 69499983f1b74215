//! The server's answer to a client's `Settings` on the Telemetry stream: the client's own
//! settings, filled in with what this access point enforces (the SDKs adopt these values:
//! a producer's body limit and type check, a consumer's long-polling timeout and batch).

use std::time::Duration;

use proto::rocketmq::v2::settings::PubSub;
use proto::rocketmq::v2::{CustomizedBackoff, RetryPolicy, Settings, retry_policy::Strategy};

/// What the access point enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest message body accepted.
    pub max_body: usize,
    /// How long a receive waits for messages at most.
    pub long_polling: Duration,
    pub receive_batch: i32,
    /// Deliveries of a message before it is dead-lettered.
    pub max_attempts: u32,
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A consumer group's settings in this region: those it was created with, or the region's
/// defaults (not FIFO, the configured max attempts) for a group nobody created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    pub fifo: bool,
    pub max_attempts: u32,
}

impl GroupSettings {
    pub fn of(spec: Option<&broker::catalog::GroupSpec>, limits: &Limits) -> Self {
        match spec {
            Some(spec) => GroupSettings {
                fifo: spec.fifo,
                max_attempts: spec.max_attempts,
            },
            None => GroupSettings {
                fifo: false,
                max_attempts: limits.max_attempts,
            },
        }
    }
}

/// The settings to answer `client` with. `group`: the consumer group's settings (for a
/// consumer); `fifo_topic`: a topic it subscribes to is a FIFO topic. Its messages are
/// consumed in order when both the group and the topic are FIFO.
pub fn answer(
    mut client: Settings,
    limits: Limits,
    group: GroupSettings,
    fifo_topic: bool,
) -> Settings {
    match client.pub_sub.as_mut() {
        Some(PubSub::Publishing(p)) => {
            p.max_body_size = i32::try_from(limits.max_body).unwrap_or(i32::MAX);
            p.validate_message_type = true;
        }
        Some(PubSub::Subscription(s)) => {
            s.long_polling_timeout = Some(duration(limits.long_polling));
            s.receive_batch_size = Some(limits.receive_batch);
            s.fifo = Some(group.fifo && fifo_topic);
        }
        None => {}
    }
    if client.backoff_policy.is_none() {
        client.backoff_policy = Some(RetryPolicy {
            max_attempts: i32::try_from(group.max_attempts).unwrap_or(i32::MAX),
            strategy: Some(Strategy::CustomizedBackoff(CustomizedBackoff {
                next: [1, 5, 10, 30, 60]
                    .map(|s| duration(Duration::from_secs(s)))
                    .to_vec(),
            })),
        });
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rocketmq::v2::{Publishing, Subscription};

    const LIMITS: Limits = Limits {
        max_body: 4 << 20,
        long_polling: Duration::from_secs(20),
        receive_batch: 32,
        max_attempts: 16,
    };

    #[test]
    fn a_producer_learns_the_body_limit() {
        let client = Settings {
            pub_sub: Some(PubSub::Publishing(Publishing {
                max_body_size: 128 << 20,
                ..Default::default()
            })),
            ..Default::default()
        };
        let group = GroupSettings::of(None, &LIMITS);
        let Some(PubSub::Publishing(p)) = answer(client, LIMITS, group, false).pub_sub else {
            panic!("publishing settings")
        };
        assert_eq!((p.max_body_size, p.validate_message_type), (4 << 20, true));
    }

    #[test]
    fn a_consumer_learns_the_long_polling_timeout() {
        let client = Settings {
            pub_sub: Some(PubSub::Subscription(Subscription::default())),
            ..Default::default()
        };
        let fifo_group = GroupSettings {
            fifo: true,
            max_attempts: 3,
        };
        let answered = answer(client.clone(), LIMITS, fifo_group, true);
        let Some(PubSub::Subscription(s)) = answered.pub_sub else {
            panic!("subscription settings")
        };
        assert_eq!(s.long_polling_timeout.unwrap().seconds, 20);
        assert_eq!((s.receive_batch_size, s.fifo), (Some(32), Some(true)));
        assert_eq!(answered.backoff_policy.unwrap().max_attempts, 3);
        for (group, fifo_topic) in [
            (fifo_group, false),
            (GroupSettings::of(None, &LIMITS), true),
        ] {
            let Some(PubSub::Subscription(s)) =
                answer(client.clone(), LIMITS, group, fifo_topic).pub_sub
            else {
                panic!("subscription settings")
            };
            assert_eq!(
                s.fifo,
                Some(false),
                "in order only when group and topic are FIFO"
            );
        }
    }
}
