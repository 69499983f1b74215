//! The embedded partition behind the storage seam (`crate::storage::store`): each method
//! is the partition's own.

use std::sync::Arc;

use tokio::sync::watch;

use super::{GapPolicy, Partition, ReplicatedRun, SubLogInfo};
use crate::batch::{Batch, PendingBatch};
use crate::cursor::Cursor;
use crate::error::Result;
use crate::storage::reader::PartitionReader;
use crate::storage::segment::Damage;
use crate::storage::store::{BoxFuture, PartitionRead, PartitionStore, RecordFilter, SubLogRead};
use crate::storage::sublog_reader::SubLogReader;

impl PartitionStore for Partition {
    fn index(&self) -> u32 {
        Partition::index(self)
    }

    fn topic(&self) -> &str {
        Partition::topic(self)
    }

    fn incarnation(&self) -> u64 {
        Partition::incarnation(self)
    }

    fn incarnation_of(&self, origin: &str) -> u64 {
        Partition::incarnation_of(self, origin)
    }

    fn is_fenced(&self) -> bool {
        Partition::is_fenced(self)
    }

    fn is_open(&self) -> Result<()> {
        Partition::is_open(self)
    }

    fn append_local(&self, pending: PendingBatch) -> BoxFuture<'_, Result<(u64, u64)>> {
        Box::pin(Partition::append_local(self, pending))
    }

    fn append_replicated_run_in<'a>(
        &'a self,
        origin: &'a str,
        incarnation: u64,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> BoxFuture<'a, Result<ReplicatedRun>> {
        Box::pin(Partition::append_replicated_run_in(
            self,
            origin,
            incarnation,
            batches,
            gap,
        ))
    }

    fn set_bell(&self, bell: Arc<watch::Sender<u64>>) {
        Partition::set_bell(self, bell)
    }

    fn sub_logs(&self) -> Vec<SubLogInfo> {
        Partition::sub_logs(self)
    }

    fn damage(&self) -> Vec<Damage> {
        Partition::damage(self)
    }

    fn sub_log_offset_for_time(&self, origin: &str, timestamp_ms: i64) -> Result<Option<u64>> {
        Partition::sub_log_offset_for_time(self, origin, timestamp_ms)
    }

    fn latest_cursor(&self) -> Cursor {
        Partition::latest_cursor(self)
    }

    fn cursor_for_time(&self, timestamp_ms: i64) -> Result<Cursor> {
        Partition::cursor_for_time(self, timestamp_ms)
    }

    fn apply_retention(&self, max_bytes: u64, max_age_ms: u64, now_ms: i64) -> Result<usize> {
        Partition::apply_retention(self, max_bytes, max_age_ms, now_ms)
    }

    fn shut_down(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Partition::shut_down(self))
    }

    fn mark_deleted(&self) {
        Partition::mark_deleted(self)
    }

    fn subscribe_durable(&self) -> watch::Receiver<u64> {
        Partition::subscribe_durable(self)
    }

    fn reader(self: Arc<Self>, cursor: Cursor, filter: RecordFilter) -> Box<dyn PartitionRead> {
        Box::new(PartitionReader::new(self, cursor, filter))
    }

    fn sub_log_reader(self: Arc<Self>, origin: &str, from: u64) -> Box<dyn SubLogRead> {
        Box::new(SubLogReader::new(self, origin, from))
    }
}
