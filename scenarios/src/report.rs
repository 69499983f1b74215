//! The scenario report: one serde structure written as JSON (`--json FILE`) and printed as
//! tables for people.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::verify::Invariants;

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LagMs {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LagMs {
    pub fn of(h: &Histogram<u64>) -> LagMs {
        if h.is_empty() {
            return LagMs::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LagMs {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// `p50 … ms  p99 … ms  p99.9 … ms  max … ms`.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms",
            self.p50, self.p99, self.p999, self.max
        )
    }
}

/// What one region received from another.
#[derive(Clone, Debug, Serialize)]
pub struct PairReport {
    pub origin: String,
    pub target: String,
    pub records: u64,
    pub mb_per_s: f64,
    pub lag_ms: LagMs,
    /// From the end of production until the target held all it should of the origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup_s: Option<f64>,
}

/// What crossed one emulated link (both ways).
#[derive(Clone, Debug, Serialize)]
pub struct LinkReport {
    pub link: String,
    pub bytes: u64,
    pub datagrams: u64,
    pub lost: u64,
    pub dropped_while_cut: u64,
    pub overflow: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Wan {
    pub delay_ms: u64,
    pub jitter_ms: u64,
    pub loss_pct: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<f64>,
}

/// A consumer that moved regions (dr-failover, consumer-failover).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerReport {
    pub before_failover: u64,
    pub after_failover: u64,
    pub delivered_twice: u64,
    /// Acknowledged records the standby holds that the consumer never received.
    pub never_delivered: u64,
    pub resumed_in: String,
    /// From the kill of the primary to the consumer's first message in the standby.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub takeover_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    /// `in-process` or `processes`.
    pub mode: String,
    /// What holds each region's data, and on how many nodes: `embedded`, or `jetstream`
    /// with `, N nodes per region` when more than one.
    #[serde(default)]
    pub storage: String,
    pub regions: usize,
    pub region_names: Vec<String>,
    pub records_produced: u64,
    pub bytes_produced: u64,
    pub record_bytes: usize,
    pub produce_s: f64,
    pub wan: Wan,
    pub invariants: Invariants,
    pub lag_ms: LagMs,
    /// Lag of the records produced in the first second of the run.
    pub first_lag_ms: LagMs,
    /// Lag of the records produced after the first second.
    pub steady_lag_ms: LagMs,
    pub pairs: Vec<PairReport>,
    pub links: Vec<LinkReport>,
    pub wan_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_records: Option<u64>,
    /// The RPO the failover itself reported (dr-failover), to compare with `rpo_records`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_reported_records: Option<u64>,
    /// Records of the lost origin the standby held when the failover reported its RPO
    /// (records still in flight from the origin may arrive after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_reported_held: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_records: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup_s: Option<f64>,
    /// From the heal until replication resumed (partition-heal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catchup_mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<ConsumerReport>,
    /// Events of the run in order (cuts, heals, kills), with seconds since the start.
    pub events: Vec<String>,
    pub passed: bool,
}

impl Report {
    /// The report as people read it.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "\n== scenario {} · {} regions ({}) · {} · {} ==",
            self.scenario,
            self.regions,
            self.region_names.join(", "),
            self.mode,
            self.storage
        );
        let mut wan = format!("WAN: {} ms one-way", self.wan.delay_ms);
        if self.wan.jitter_ms > 0 {
            let _ = write!(wan, " ± {} ms", self.wan.jitter_ms);
        }
        if self.wan.loss_pct > 0.0 {
            let _ = write!(wan, ", {}% loss", self.wan.loss_pct);
        }
        if let Some(b) = self.wan.bandwidth_mbps {
            let _ = write!(wan, ", {b} Mbit/s");
        }
        let _ = writeln!(w, "{wan}");
        let _ = writeln!(
            w,
            "produced {} records of {} B ({:.1} MB) in {:.1} s",
            self.records_produced,
            self.record_bytes,
            self.bytes_produced as f64 / 1e6,
            self.produce_s
        );
        let _ = writeln!(
            w,
            "\n{:<16} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9}",
            "origin → target", "records", "MB/s", "lag p50", "p99", "p99.9", "max", "catch-up"
        );
        for p in &self.pairs {
            let _ = writeln!(
                w,
                "{:<16} {:>10} {:>9.1} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>9}",
                format!("{} → {}", p.origin, p.target),
                p.records,
                p.mb_per_s,
                p.lag_ms.p50,
                p.lag_ms.p99,
                p.lag_ms.p999,
                p.lag_ms.max,
                p.catchup_s.map_or("-".into(), |s| format!("{s:.2}s"))
            );
        }
        let _ = writeln!(
            w,
            "{:<16} {:>10} {:>9} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms",
            "all", "", "", self.lag_ms.p50, self.lag_ms.p99, self.lag_ms.p999, self.lag_ms.max
        );
        for (name, lag) in [
            ("  first second", &self.first_lag_ms),
            ("  steady state", &self.steady_lag_ms),
        ] {
            let _ = writeln!(
                w,
                "{:<16} {:>10} {:>9} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms",
                name, "", "", lag.p50, lag.p99, lag.p999, lag.max
            );
        }
        let _ = writeln!(
            w,
            "\n{:<16} {:>12} {:>11} {:>8} {:>10} {:>9}",
            "link", "WAN MB", "datagrams", "lost", "cut-drop", "overflow"
        );
        for l in &self.links {
            let _ = writeln!(
                w,
                "{:<16} {:>12.1} {:>11} {:>8} {:>10} {:>9}",
                l.link,
                l.bytes as f64 / 1e6,
                l.datagrams,
                l.lost,
                l.dropped_while_cut,
                l.overflow
            );
        }
        if !self.events.is_empty() {
            let _ = writeln!(w, "\nevents:");
            for e in &self.events {
                let _ = writeln!(w, "  {e}");
            }
        }
        if let (Some(r), Some(b)) = (self.backlog_records, self.backlog_bytes) {
            let _ = writeln!(w, "backlog: {r} records ({:.1} MB)", b as f64 / 1e6);
        }
        if let Some(s) = self.catchup_s {
            let _ = write!(w, "catch-up: {s:.2} s");
            if let Some(r) = self.resume_s {
                let _ = write!(w, " (replication resumed after {r:.2} s)");
            }
            if let Some(rate) = self.catchup_mb_per_s {
                let _ = write!(w, " at {rate:.1} MB/s");
            }
            let _ = writeln!(w);
        }
        if let Some(rpo) = self.rpo_records {
            let _ = write!(
                w,
                "RPO: {rpo} acknowledged records had not reached the standby"
            );
            if let Some(reported) = self.rpo_reported_records {
                let _ = write!(w, " (the failover reported {reported})");
            }
            let _ = writeln!(w);
        }
        if let Some(c) = &self.consumer {
            let _ = writeln!(
                w,
                "consumer: {} records before the failover, {} after (in {}); delivered twice: {}; never delivered: {}",
                c.before_failover,
                c.after_failover,
                c.resumed_in,
                c.delivered_twice,
                c.never_delivered
            );
            if let Some(ms) = c.takeover_ms {
                let _ = writeln!(
                    w,
                    "takeover: the consumer's first message in {} {ms:.0} ms after the kill",
                    c.resumed_in
                );
            }
        }
        let i = &self.invariants;
        let _ = writeln!(w, "\ninvariants:");
        let counts = [
            ("lost", i.lost),
            ("duplicated", i.duplicated),
            ("order violations", i.order_violations),
            ("unexpected", i.unexpected),
        ];
        let rows = counts
            .map(|(name, n)| (name, n.to_string(), n == 0))
            .into_iter()
            .chain([("converged", i.converged.to_string(), i.converged)]);
        for (name, value, ok) in rows {
            let mark = if ok { "ok" } else { "FAILED" };
            let _ = writeln!(w, "  {name:<18} {value:>8}  {mark}");
        }
        for p in &i.problems {
            let _ = writeln!(w, "  - {p}");
        }
        let _ = writeln!(w, "\n{}", if self.passed { "PASSED" } else { "FAILED" });
        out
    }
}
