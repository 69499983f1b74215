//! The invariants every scenario checks once replication has settled, from a full read of
//! every running region:
//! - **lost**: an acknowledged record a region should hold and does not (a record of a
//!   killed origin that the region never received counts as RPO instead, unless the
//!   region holds later records of that sub-log: then it is a hole, and lost);
//! - **duplicated**: a record held more than once in one region;
//! - **order violations**: a sub-log whose sequence numbers do not rise with its offsets,
//!   or a record held at another offset than the one its producer was acknowledged;
//! - **unexpected**: a record held where the scenario says it must not be (a filter or a
//!   residency rule broken, a pass-through relay that stored);
//! - **converged**: every region that should hold (part of) a sub-log holds exactly the
//!   origin's records that it should — the same offsets and the same CRC-32C of each
//!   record's key, tag, properties and body.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Result;

use crate::workload::{Acked, Stream, header};

/// One record as held by a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub offset: u64,
    pub seq: u64,
    pub crc: u32,
}

/// Everything a region holds of the scenario topics, per sub-log in offset order.
pub type Holdings = BTreeMap<Stream, Vec<Held>>;

/// Whether `region` should hold record `seq` of `stream`.
pub type Expectation = Arc<dyn Fn(&str, &Stream, u64) -> bool + Send + Sync>;

/// Every region holds everything.
pub fn everywhere() -> Expectation {
    Arc::new(|_, _, _| true)
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Invariants {
    pub lost: u64,
    pub duplicated: u64,
    pub order_violations: u64,
    pub unexpected: u64,
    pub converged: bool,
    /// The first problems found, in words.
    pub problems: Vec<String>,
}

impl Invariants {
    pub fn hold(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.order_violations == 0
            && self.unexpected == 0
            && self.converged
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < 20 {
            self.problems.push(text);
        }
    }
}

/// Reads every record of `topics` that a region holds.
pub async fn read_region(client: &client::Client, topics: &[String]) -> Result<Holdings> {
    let mut holdings = Holdings::new();
    for topic in topics {
        let request = client::pb::FetchRequest {
            topic: topic.clone(),
            start: Some(client::earliest()),
            ..Default::default()
        };
        let mut stream = client.fetch(request).await?;
        while let Some(response) = stream.message().await? {
            for fetched in response.records {
                let record = fetched.record.unwrap_or_default();
                let key = Stream {
                    topic: topic.clone(),
                    partition: fetched.partition,
                    origin: fetched.origin,
                };
                holdings.entry(key).or_default().push(Held {
                    offset: fetched.offset,
                    seq: header(&record.body).map_or(u64::MAX, |(seq, _)| seq),
                    crc: record_crc(&record),
                });
            }
        }
    }
    Ok(holdings)
}

fn record_crc(record: &client::pb::Record) -> u32 {
    let mut crc = crc32c::crc32c(record.key.as_deref().unwrap_or_default());
    crc = crc32c::crc32c_append(crc, record.tag.as_deref().unwrap_or_default().as_bytes());
    let properties: BTreeMap<_, _> = record.properties.iter().collect();
    for (k, v) in properties {
        crc = crc32c::crc32c_append(crc, k.as_bytes());
        crc = crc32c::crc32c_append(crc, v.as_bytes());
    }
    crc32c::crc32c_append(crc, &record.body)
}

/// The outcome of the checks: the invariants and the records a killed origin had
/// acknowledged that no survivor received (the RPO).
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub invariants: Invariants,
    pub rpo_records: u64,
}

/// Checks what the running regions hold (`held`: region → holdings) against what the
/// producers had acknowledged.
pub fn check(
    acked: &[Acked],
    held: &BTreeMap<String, Holdings>,
    expect: &Expectation,
    killed: &[String],
) -> Verdict {
    let mut v = Verdict {
        invariants: Invariants {
            converged: true,
            ..Default::default()
        },
        rpo_records: 0,
    };
    let acked_of: BTreeMap<&Stream, &Acked> = acked.iter().map(|a| (&a.stream, a)).collect();
    let empty = Vec::new();
    for (region, holdings) in held {
        for (stream, records) in holdings {
            if !acked_of.contains_key(stream) {
                v.invariants.unexpected += records.len() as u64;
                v.invariants.problem(format!(
                    "{region} holds {} records of {} that no producer wrote",
                    records.len(),
                    describe(stream)
                ));
            }
        }
    }
    for a in acked {
        let stream = &a.stream;
        let origin_killed = killed.contains(&stream.origin);
        // The RPO counts what no survivor received: the smallest missing tail.
        let mut rpo_here: Option<u64> = None;
        for (region, holdings) in held {
            let records = holdings.get(stream).unwrap_or(&empty);
            let tail = check_sub_log(&mut v.invariants, region, a, records, expect, origin_killed);
            // Only regions meant to hold the stream count (not a relay or a filtered mirror).
            let holder = || (0..a.offsets.len() as u64).any(|seq| expect(region, stream, seq));
            if origin_killed && holder() {
                rpo_here = Some(rpo_here.map_or(tail, |r| r.min(tail)));
            }
        }
        v.rpo_records += rpo_here.unwrap_or(0);
        check_converged(&mut v.invariants, stream, held, expect);
    }
    v
}

fn check_sub_log(
    inv: &mut Invariants,
    region: &str,
    acked: &Acked,
    records: &[Held],
    expect: &Expectation,
    origin_killed: bool,
) -> u64 {
    let stream = &acked.stream;
    let name = describe(stream);
    let mut seen = HashSet::with_capacity(records.len());
    let mut previous: Option<Held> = None;
    for held in records {
        if !seen.insert(held.seq) {
            inv.duplicated += 1;
            inv.problem(format!("{region}: {name}: record {} held twice", held.seq));
        }
        if let Some(p) = previous
            && (held.offset <= p.offset || held.seq <= p.seq)
        {
            inv.order_violations += 1;
            inv.problem(format!(
                "{region}: {name}: record {} at offset {} follows record {} at offset {}",
                held.seq, held.offset, p.seq, p.offset
            ));
        }
        if let Some(&offset) = acked.offsets.get(held.seq as usize)
            && offset != held.offset
        {
            inv.order_violations += 1;
            inv.problem(format!(
                "{region}: {name}: record {} held at offset {}, acknowledged at {offset}",
                held.seq, held.offset
            ));
        }
        if !expect(region, stream, held.seq) {
            inv.unexpected += 1;
            inv.problem(format!(
                "{region}: {name}: holds record {} which must not be there",
                held.seq
            ));
        }
        previous = Some(*held);
    }
    let held_end = records.last().map_or(0, |h| h.offset + 1);
    let mut missing_tail = 0;
    for (seq, &offset) in acked.offsets.iter().enumerate() {
        let seq = seq as u64;
        if !expect(region, stream, seq) || seen.contains(&seq) {
            continue;
        }
        if origin_killed && offset >= held_end {
            missing_tail += 1;
        } else {
            inv.lost += 1;
            inv.problem(format!(
                "{region}: {name}: acknowledged record {seq} (offset {offset}) is missing"
            ));
        }
    }
    missing_tail
}

/// Every region that should hold some of `stream` holds exactly the reference's records
/// that it should: the origin's when it runs, else the survivor holding the most.
fn check_converged(
    inv: &mut Invariants,
    stream: &Stream,
    held: &BTreeMap<String, Holdings>,
    expect: &Expectation,
) {
    let empty = Vec::new();
    let of = |region: &str| {
        held.get(region)
            .and_then(|h| h.get(stream))
            .unwrap_or(&empty)
    };
    let reference_region = if held.contains_key(&stream.origin) {
        stream.origin.clone()
    } else {
        match held.keys().max_by_key(|r| of(r).len()) {
            Some(r) => r.clone(),
            None => return,
        }
    };
    let reference = of(&reference_region);
    for region in held.keys().filter(|r| **r != reference_region) {
        let wanted: Vec<&Held> = reference
            .iter()
            .filter(|h| expect(region, stream, h.seq))
            .collect();
        let got: Vec<&Held> = of(region).iter().collect();
        if wanted != got {
            inv.converged = false;
            let at = wanted.iter().zip(&got).position(|(a, b)| a != b);
            inv.problem(format!(
                "{region}: {}: holds {} records where {reference_region} has {} for it{}",
                describe(stream),
                got.len(),
                wanted.len(),
                at.map(|i| format!("; they first differ at record {i}"))
                    .unwrap_or_default()
            ));
        }
    }
}

fn describe(stream: &Stream) -> String {
    format!(
        "{}/{} from {}",
        stream.topic, stream.partition, stream.origin
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(origin: &str) -> Stream {
        Stream {
            topic: "t".into(),
            partition: 0,
            origin: origin.into(),
        }
    }

    fn acked(origin: &str, n: u64) -> Acked {
        Acked {
            stream: stream(origin),
            offsets: (0..n).collect(),
            bytes: 0,
            stopped_by: None,
        }
    }

    fn holding(origin: &str, seqs: &[u64]) -> Holdings {
        let records = seqs
            .iter()
            .map(|&s| Held {
                offset: s,
                seq: s,
                crc: s as u32,
            })
            .collect();
        BTreeMap::from([(stream(origin), records)])
    }

    fn run(held: &[(&str, &[u64])], n: u64, killed: &[String]) -> Verdict {
        let held = held
            .iter()
            .map(|(r, seqs)| (r.to_string(), holding("eu", seqs)))
            .collect();
        check(&[acked("eu", n)], &held, &everywhere(), killed)
    }

    #[test]
    fn identical_regions_pass() {
        let v = run(&[("eu", &[0, 1, 2]), ("us", &[0, 1, 2])], 3, &[]);
        assert!(v.invariants.hold(), "{:?}", v.invariants);
    }

    #[test]
    fn a_missing_record_is_lost_and_not_converged() {
        let v = run(&[("eu", &[0, 1, 2]), ("us", &[0, 2])], 3, &[]);
        assert_eq!(v.invariants.lost, 1);
        assert!(!v.invariants.converged);
    }

    #[test]
    fn duplicates_and_reordering_are_counted() {
        let v = run(&[("eu", &[0, 1, 2]), ("us", &[0, 1, 1, 2])], 3, &[]);
        assert_eq!(v.invariants.duplicated, 1);
        assert!(v.invariants.order_violations >= 1);
        let v = run(&[("eu", &[0, 1, 2]), ("us", &[0, 2, 1])], 3, &[]);
        assert!(v.invariants.order_violations >= 1);
    }

    #[test]
    fn the_unreplicated_tail_of_a_killed_origin_is_rpo_but_a_hole_is_lost() {
        let killed = vec!["eu".to_string()];
        let v = run(&[("us", &[0, 1])], 4, &killed);
        assert!(v.invariants.hold(), "{:?}", v.invariants);
        assert_eq!(v.rpo_records, 2);
        let v = run(&[("us", &[0, 2])], 4, &killed);
        assert_eq!(v.invariants.lost, 1);
        assert_eq!(v.rpo_records, 1);
    }

    #[test]
    fn a_record_outside_the_expectation_is_unexpected() {
        let expect: Expectation = Arc::new(|region, _, seq| region == "eu" || seq % 2 == 0);
        let held = BTreeMap::from([
            ("eu".to_string(), holding("eu", &[0, 1, 2])),
            ("audit".to_string(), holding("eu", &[0, 1, 2])),
        ]);
        let v = check(&[acked("eu", 3)], &held, &expect, &[]);
        assert_eq!(v.invariants.unexpected, 1);
        assert!(!v.invariants.converged);
        let held = BTreeMap::from([
            ("eu".to_string(), holding("eu", &[0, 1, 2])),
            ("audit".to_string(), holding("eu", &[0, 2])),
        ]);
        assert!(
            check(&[acked("eu", 3)], &held, &expect, &[])
                .invariants
                .hold()
        );
    }
}
