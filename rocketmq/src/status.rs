//! The access point's one mapping of errors to the protocol's status codes. Every answer
//! carries a `Status` in its body (the gRPC status stays OK, as the SDKs expect), with a
//! message that says what was wrong and where.

use broker::BrokerError;
use proto::rocketmq::v2::{Code, Status};

/// A refusal: the protocol's code and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> Status {
        Status {
            code: self.code as i32,
            message: self.message.clone(),
        }
    }

    /// An RPC this access point does not serve yet.
    pub fn not_implemented(rpc: &str) -> Self {
        Refusal::new(
            Code::NotImplemented,
            format!("{rpc} is not served by this georouter access point yet"),
        )
    }
}

pub fn ok() -> Status {
    Status {
        code: Code::Ok as i32,
        message: "OK".into(),
    }
}

impl From<BrokerError> for Refusal {
    fn from(e: BrokerError) -> Self {
        use BrokerError as E;
        let code = match &e {
            E::UnknownTopic { .. } | E::TopicDeleted { .. } => Code::TopicNotFound,
            E::InvalidName { .. } => Code::IllegalTopic,
            E::UnknownPartition { .. } => Code::BadRequest,
            E::RecordTooLarge { .. } => Code::MessageBodyTooLarge,
            E::BatchTooLarge { .. } => Code::PayloadTooLarge,
            E::InvalidTimestamp { .. } => Code::IllegalDeliveryTime,
            E::EmptyProduce { .. } => Code::MessageBodyEmpty,
            E::ReadOnly { .. } => Code::Forbidden,
            E::ShuttingDown | E::Fenced { .. } => Code::InternalServerError,
            _ => Code::InternalError,
        };
        Refusal::new(code, format!("{} [{}]", e, e.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_map_to_the_codes_the_sdks_know() {
        let unknown = BrokerError::UnknownTopic {
            topic: "orders".into(),
        };
        let refusal = Refusal::from(unknown);
        assert_eq!(refusal.code, Code::TopicNotFound);
        assert!(refusal.message.contains("orders"), "{}", refusal.message);
        assert!(
            refusal.message.contains("[unknown-topic]"),
            "{}",
            refusal.message
        );
        let large = BrokerError::RecordTooLarge {
            index: 0,
            size: 10,
            limit: 5,
        };
        assert_eq!(Refusal::from(large).code, Code::MessageBodyTooLarge);
        assert_eq!(
            Refusal::not_implemented("PullMessage").status().code,
            Code::NotImplemented as i32
        );
    }
}
