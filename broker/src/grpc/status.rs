//! The one mapping from [`BrokerError`] to a gRPC [`Status`]. The message is the error's
//! text (it names what was wrong); metadata `georouter-error-code` carries the stable code.

use tonic::{Code, Status};

use crate::error::BrokerError;

pub const ERROR_CODE_KEY: &str = "georouter-error-code";

pub fn to_status(error: BrokerError) -> Status {
    let code = match &error {
        BrokerError::UnknownTopic { .. } | BrokerError::TopicDeleted { .. } => Code::NotFound,
        BrokerError::TopicExists { .. } => Code::AlreadyExists,
        BrokerError::InvalidName { .. }
        | BrokerError::InvalidPartitionCount { .. }
        | BrokerError::InvalidMessageType { .. }
        | BrokerError::UnknownPartition { .. }
        | BrokerError::EmptyProduce { .. }
        | BrokerError::InvalidCursor { .. }
        | BrokerError::InvalidFilter { .. }
        | BrokerError::InvalidHold { .. }
        | BrokerError::MalformedBatch(_) => Code::InvalidArgument,
        BrokerError::RecordTooLarge { .. }
        | BrokerError::BatchTooLarge { .. }
        | BrokerError::InvalidTimestamp { .. }
        | BrokerError::RepairRefused { .. } => Code::InvalidArgument,
        BrokerError::OwnOrigin { .. }
        | BrokerError::StaleIncarnation { .. }
        | BrokerError::ReadOnly { .. }
        | BrokerError::OffsetGap { .. }
        | BrokerError::OverlappingBatch { .. } => Code::FailedPrecondition,
        BrokerError::CorruptBatch { .. } => Code::DataLoss,
        BrokerError::Fenced { .. } | BrokerError::ShuttingDown | BrokerError::Engine { .. } => {
            Code::Unavailable
        }
        BrokerError::Io { .. } | BrokerError::Meta(_) => Code::Internal,
    };
    if code == Code::Internal || code == Code::DataLoss {
        tracing::error!(event = "grpc_request_failed", error = %error, "request failed");
    }
    let mut status = Status::new(code, error.to_string());
    status.metadata_mut().insert(
        ERROR_CODE_KEY,
        error.code().parse().expect("codes are ASCII"),
    );
    status
}

/// The status of a refused request: `UNAUTHENTICATED` or `PERMISSION_DENIED`, with the
/// stable code.
pub fn denial_status(denial: &auth::Denial) -> Status {
    let (code, stable) = match denial {
        auth::Denial::Unauthenticated(_) => (
            Code::Unauthenticated,
            proto::error_code::ErrorCode::Unauthenticated,
        ),
        auth::Denial::Forbidden { .. } => (
            Code::PermissionDenied,
            proto::error_code::ErrorCode::Forbidden,
        ),
    };
    let mut status = Status::new(code, denial.to_string());
    status.metadata_mut().insert(
        ERROR_CODE_KEY,
        stable.as_str().parse().expect("codes are ASCII"),
    );
    status
}

impl From<BrokerError> for Status {
    fn from(error: BrokerError) -> Self {
        to_status(error)
    }
}
