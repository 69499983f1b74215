//! The recovery point of a region: per origin, what it has not yet received (records,
//! bytes, an upper bound on the age of the oldest missing record), from per-sub-log status.
//! It is what a forced failover to this region would lose now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::status::SubLogStatus;

/// What this region has not yet received of one origin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OriginRpo {
    pub origin: String,
    pub records: u64,
    pub bytes: u64,
    /// Time since this region last held everything the origin's sub-logs were known to
    /// hold: an upper bound on the age of the oldest record not yet received.
    pub seconds: f64,
    /// Some sub-log's end at the origin was never advertised to this region: `records`
    /// and `bytes` cannot count what is missing there.
    #[serde(default)]
    pub unknown: bool,
    /// Offsets this region knew the origin's sub-logs to reach, summed (`records` is this
    /// minus `held`).
    #[serde(default)]
    pub known_end: u64,
    /// Offsets this region held of them, summed.
    #[serde(default)]
    pub held: u64,
}

/// Per origin, from per-sub-log status (a sub-log pulled for several tasks counts once).
pub fn rpo_by_origin<'a>(status: impl IntoIterator<Item = &'a SubLogStatus>) -> Vec<OriginRpo> {
    let mut per_sub_log: BTreeMap<(&str, u32, &str), &SubLogStatus> = BTreeMap::new();
    for s in status {
        let key = (s.topic.as_str(), s.partition, s.origin.as_str());
        let keep = per_sub_log
            .get(&key)
            .is_none_or(|held| s.lag_records > held.lag_records);
        if keep {
            per_sub_log.insert(key, s);
        }
    }
    let mut origins: BTreeMap<String, OriginRpo> = BTreeMap::new();
    for ((_, _, origin), s) in per_sub_log {
        let o = origins
            .entry(origin.to_string())
            .or_insert_with(|| OriginRpo {
                origin: origin.to_string(),
                ..Default::default()
            });
        o.records += s.lag_records;
        o.bytes += s.lag_bytes;
        o.seconds = o.seconds.max(s.lag_seconds);
        o.unknown |= s.source_end.is_none();
        o.known_end += s.source_end.map_or(s.local_end, |e| e.max(s.local_end));
        o.held += s.local_end;
    }
    origins.into_values().collect()
}
