//! An operator's redelivery of one message to a group: it is handed out again at the
//! group's next receive in this region (with its attempts so far counted, so a message
//! past the group's last attempt goes to the dead-letter topic), whether the group had
//! acknowledged it or not. Stored before it takes effect, like every change of the state.

use proto::rocketmq::v2::Code;

use super::{Consumption, now_ms, read_one, storage};
use crate::status::Refusal;

impl Consumption {
    pub fn redeliver(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        origin: &str,
        offset: u64,
    ) -> Result<(), Refusal> {
        let p = self.broker.partition(topic, partition).map_err(storage)?;
        if read_one(&p, origin, offset)?.is_none() {
            return Err(Refusal::new(
                Code::MessageNotFound,
                format!("topic {topic} holds no message {origin}-{partition}-{offset}"),
            ));
        }
        let part = Self::partition_state(&*self.group(group, topic)?, partition);
        let mut current = part.lock().expect("partition state lock");
        let mut copy = current.clone();
        copy.redeliver(origin, offset, now_ms());
        self.persist(group, topic, [(partition, &copy)])?;
        *current = copy;
        Ok(())
    }
}
