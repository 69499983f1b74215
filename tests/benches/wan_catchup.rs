//! Replication catch-up through the WAN emulator at several one-way delays:
//! `cargo bench -p georouter-tests --bench wan_catchup -- [RECORDS] [SIZE] [DELAY_MS...]`
//! (defaults: 100000 records of 1024 B, delays 0 and 100 ms). Two in-process regions of a
//! scenario `Cluster`; the target dials the source through the link's WAN relay; the
//! backlog is produced before the target starts, and the time until the target holds it
//! is measured.
//! `WINDOW_MIB=N` sets the connection windows to N MiB (streams N/4).

use std::time::Duration;

use router::launch::InProcess;
use scenarios::catchup::{Backlog, catch_up};
use scenarios::wan::Impairment;
use scenarios::workload::Payload;

/// Both regions' link windows when `WINDOW_MIB` is set.
fn node_settings() -> serde_json::Value {
    match std::env::var("WINDOW_MIB") {
        Ok(mib) => {
            let mib: u64 = mib.parse().expect("WINDOW_MIB: a number");
            serde_json::json!({"replication": {
                "stream_window_bytes": (mib << 20) / 4,
                "connection_window_bytes": mib << 20,
                "send_window_bytes": mib << 20,
            }})
        }
        Err(_) => serde_json::Value::Null,
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let records: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let size: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let mut delays: Vec<u64> = args.iter().skip(2).filter_map(|a| a.parse().ok()).collect();
    if delays.is_empty() {
        delays = vec![0, 100];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        for delay in delays {
            let backlog = Backlog {
                records,
                size,
                payload: Payload::Fill,
                sub_logs: 4,
                impairment: Impairment {
                    delay: Duration::from_millis(delay),
                    ..Default::default()
                },
                node_settings: node_settings(),
            };
            let c = catch_up(&backlog, &InProcess).await?;
            println!(
                "one-way delay {delay:>4} ms: catch-up of {} records of {size} B in {:.2} s = {:.0} records/s, {:.1} MB/s; first record after {:.2} s; from a quarter on {:.1} MB/s ({:.1} MB crossed the link)",
                c.records,
                c.seconds,
                c.records as f64 / c.seconds,
                c.mb_per_s(),
                c.first_s,
                c.from_quarter_mb_s,
                c.wan_bytes as f64 / 1e6,
            );
        }
        anyhow::Ok(())
    })
}
