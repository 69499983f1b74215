//! Replication catch-up through the WAN emulator at several one-way delays:
//! `cargo bench -p georouter-tests --bench wan_catchup -- [RECORDS] [SIZE] [DELAY_MS...]`
//! (defaults: 100000 records of 1024 B, delays 0 and 100 ms). Two in-process regions; the
//! target dials the source through a `scenarios::wan::WanLink`; the backlog is produced
//! before the target starts, and the time until the target holds it is measured.
//! `WINDOW_MIB=N` sets the connection windows to N MiB (streams N/4).

use std::time::{Duration, Instant};

use router::config::NodeConfig;
use router::node::Node;
use scenarios::wan::{Impairment, WanLink};

fn config(
    dir: &std::path::Path,
    certs: &std::path::Path,
    region: &str,
    source: Option<std::net::SocketAddr>,
) -> NodeConfig {
    let mut config = NodeConfig::loopback(region, &dir.join(region));
    config.replication.ca = Some(certs.join("ca.pem"));
    config.replication.cert = Some(certs.join(format!("{region}.pem")));
    config.replication.key = Some(certs.join(format!("{region}.key")));
    config.regions = vec![
        topology::RegionSpec {
            name: "source".into(),
            address: source,
        },
        topology::RegionSpec {
            name: "target".into(),
            address: None,
        },
    ];
    let mut link = topology::LinkSpec::new("source", "target", 10);
    link.dial = Some("target".into());
    config.links = vec![link];
    if let Ok(mib) = std::env::var("WINDOW_MIB") {
        let mib: u64 = mib.parse().expect("WINDOW_MIB: a number");
        config.replication.stream_window_bytes = (mib << 20) / 4;
        config.replication.connection_window_bytes = mib << 20;
        config.replication.send_window_bytes = mib << 20;
    }
    config.tasks = vec![replicator::TaskSpec::new(
        "bench",
        &["source"],
        &["target"],
        "bench",
    )];
    config
}

fn held(target: &Node, partitions: u32) -> u64 {
    (0..partitions)
        .filter_map(|p| target.broker.partition("bench", p).ok())
        .filter_map(|p| p.sub_log("source"))
        .map(|s| s.durable_end)
        .sum()
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
            let temp = tempfile::tempdir()?;
            let certs = temp.path().join("certs");
            replicator::certs::write_deployment(&certs, &["source".into(), "target".into()], 1)?;
            let source = Node::start(config(temp.path(), &certs, "source", None)).await?;
            let client = client::Client::connect(&source.bound.grpc.to_string()).await?;
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
            let wan = WanLink::start_with(
                source.bound.replication,
                Impairment { delay: Duration::from_millis(delay), ..Default::default() },
            )?;
            let started = Instant::now();
            let target = Node::start(config(temp.path(), &certs, "target", Some(wan.address()))).await?;
            let total = records / 200 * 200;
            // When the first record landed, and when a quarter had: the rate from a quarter
            // on is the transfer once the link is up and the congestion window has grown.
            let (mut first, mut quarter) = (None, None);
            loop {
                let now = held(&target, partitions);
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
            let counts = wan.counts();
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
            target.shut_down().await?;
            source.shut_down().await?;
        }
        anyhow::Ok(())
    })
}
