//! Replication catch-up through the WAN emulator at several one-way delays:
//! `cargo bench -p georouter-tests --bench wan_catchup -- [RECORDS] [SIZE] [DELAY_MS...]`
//! (defaults: 100000 records of 1024 B, delays 0 and 100 ms). Two in-process regions of a
//! scenario `Cluster`; the target dials the source through the link's WAN relay; the
//! backlog is produced before the target starts, and the time until the target holds it
//! is measured.
//! `WINDOW_MIB=N` sets the connection windows to N MiB (streams N/4).

use std::time::{Duration, Instant};

use router::launch::InProcess;
use scenarios::cluster::{Cluster, ClusterPlan};
use scenarios::wan::Impairment;

/// Source and target; the target dials the source through a WAN relay delaying each
/// datagram by `delay`.
fn plan(delay: Duration) -> ClusterPlan {
    let node_settings = match std::env::var("WINDOW_MIB") {
        Ok(mib) => {
            let mib: u64 = mib.parse().expect("WINDOW_MIB: a number");
            serde_json::json!({"replication": {
                "stream_window_bytes": (mib << 20) / 4,
                "connection_window_bytes": mib << 20,
                "send_window_bytes": mib << 20,
            }})
        }
        Err(_) => serde_json::Value::Null,
    };
    ClusterPlan {
        topology: scenarios::deploy::line(&["source", "target"]),
        residency: Default::default(),
        tasks: vec![replicator::TaskSpec::new(
            "bench",
            &["source"],
            &["target"],
            "bench",
        )],
        impairment: Impairment {
            delay,
            ..Default::default()
        },
        direct_links: false,
        heartbeat_ms: replicator::LinkSettings::default()
            .heartbeat_interval
            .as_millis() as u64,
        node_settings,
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
        let partitions = 4;
        for delay in delays {
            let mut cluster =
                Cluster::start_only(&plan(Duration::from_millis(delay)), &InProcess, &["source"])
                    .await?;
            let client = cluster.region("source").client.clone();
            client.create_topic("bench", partitions, None).await?;
            let body = vec![b'x'; size];
            for i in 0..records / 200 {
                let batch = (0..200)
                    .map(|_| client::pb::Record { body: body.clone(), ..Default::default() })
                    .collect();
                client
                    .produce("bench", batch, client::Partitioning::Partition((i % partitions as u64) as u32))
                    .await?;
            }
            let started = Instant::now();
            cluster.start_regions(&["target"], &InProcess).await?;
            let total = records / 200 * 200;
            // When the first record landed, and when a quarter had: the rate from a quarter
            // on is the transfer once the link is up and the congestion window has grown.
            let (mut first, mut quarter) = (None, None);
            loop {
                let now = cluster.region("target").held("bench", "source").await?;
                if now > 0 {
                    first.get_or_insert_with(|| started.elapsed());
                }
                if now >= total / 4 {
                    quarter.get_or_insert_with(|| started.elapsed());
                }
                if now >= total {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let seconds = started.elapsed().as_secs_f64();
            let after_quarter = seconds - quarter.unwrap_or_default().as_secs_f64();
            let counts = cluster.link("source", "target").wan.counts();
            println!(
                "one-way delay {delay:>4} ms: catch-up of {total} records of {size} B in {seconds:.2} s = {:.0} records/s, {:.1} MB/s; first record after {:.2} s; from a quarter on {:.1} MB/s (relay forwarded {} datagrams, {:.1} MB, dropped {})",
                total as f64 / seconds,
                total as f64 * size as f64 / 1e6 / seconds,
                first.unwrap_or_default().as_secs_f64(),
                total as f64 * 0.75 * size as f64 / 1e6 / after_quarter,
                counts.forwarded,
                counts.bytes as f64 / 1e6,
                counts.overflow + counts.lost
            );
            cluster.stop().await?;
        }
        anyhow::Ok(())
    })
}
