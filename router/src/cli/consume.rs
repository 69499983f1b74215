//! `georouter consume TOPIC`: reads from a start position or a group's committed cursors,
//! prints records as text (the body) or JSON (one object per line). Without `--count` or
//! `--follow` it stops once it has read everything durable; with `--count N` it waits for N
//! records. With `--group`, the exact position after the last printed record is committed.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use base64::Engine;
use client::pb;

use super::{BrokerArg, connect};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Consumer group: resume from its committed cursors and commit as records are printed.
    #[arg(long)]
    group: Option<String>,
    /// Where to start partitions without a committed cursor: earliest, latest or an
    /// RFC 3339 time.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Stop after this many records (waiting for them to arrive).
    #[arg(long)]
    count: Option<u64>,
    /// Only records with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Keep waiting for new records.
    #[arg(long)]
    follow: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    broker: BrokerArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn parse_start(from: &str) -> Result<pb::StartPosition> {
    Ok(match from {
        "earliest" => client::earliest(),
        "latest" => client::latest(),
        time => {
            let t = humantime::parse_rfc3339_weak(time).with_context(|| {
                format!("--from '{time}' is not earliest, latest or an RFC 3339 time")
            })?;
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .context("--from is before 1970")?
                .as_millis();
            client::at_time(ms as i64)
        }
    })
}

pub async fn run(args: ConsumeArgs) -> Result<()> {
    match consume(args).await {
        // A closed stdout (`consume | head`) is how a reader says it has enough.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn consume(args: ConsumeArgs) -> Result<()> {
    let start = parse_start(&args.from)?;
    let client = connect(&args.broker).await?;
    let committed = match &args.group {
        Some(group) => client.group_cursors(group, &args.topic).await?,
        None => Vec::new(),
    };
    let request = pb::FetchRequest {
        topic: args.topic.clone(),
        start: Some(start),
        cursors: committed,
        tag: args.tag.clone(),
        follow: args.follow || args.count.is_some(),
        ..Default::default()
    };
    let mut stream = client.fetch(request).await?;
    let mut positions: BTreeMap<u32, pb::Cursor> = BTreeMap::new();
    let mut printed = 0u64;
    let mut last_commit = std::time::Instant::now();
    let stdout = std::io::stdout();
    'stream: while let Some(response) = stream.message().await? {
        let mut out = stdout.lock();
        let mut stopped_at = None;
        for (i, record) in response.records.iter().enumerate() {
            if args.count.is_some_and(|c| printed >= c) {
                stopped_at = Some(i);
                break;
            }
            print_record(&mut out, record, args.format)?;
            printed += 1;
        }
        out.flush()?;
        drop(out);
        for pc in &response.cursors {
            let mut cursor = pc.cursor.clone().unwrap_or_default();
            if let Some(i) = stopped_at {
                // Roll the cursor back to the first record not printed, per origin.
                for record in response.records[i..]
                    .iter()
                    .filter(|r| r.partition == pc.partition)
                {
                    let next = cursor
                        .next
                        .entry(record.origin.clone())
                        .or_insert(record.offset);
                    *next = (*next).min(record.offset);
                }
            }
            positions.insert(pc.partition, cursor);
        }
        let done = response.end_of_stream || args.count.is_some_and(|c| printed >= c);
        if let Some(group) = &args.group
            && (done || last_commit.elapsed().as_secs() >= 1)
        {
            commit(&client, group, &args.topic, &positions).await?;
            last_commit = std::time::Instant::now();
        }
        if done {
            break 'stream;
        }
    }
    if let Some(group) = &args.group {
        commit(&client, group, &args.topic, &positions).await?;
    }
    Ok(())
}

async fn commit(
    client: &client::Client,
    group: &str,
    topic: &str,
    positions: &BTreeMap<u32, pb::Cursor>,
) -> Result<()> {
    if positions.is_empty() {
        return Ok(());
    }
    let cursors = positions
        .iter()
        .map(|(p, c)| pb::PartitionCursor {
            partition: *p,
            cursor: Some(c.clone()),
        })
        .collect();
    client
        .commit(group, topic, cursors)
        .await
        .context("committing the group's cursors")?;
    Ok(())
}

fn print_record(out: &mut impl Write, r: &pb::FetchedRecord, format: Format) -> Result<()> {
    let record = r.record.clone().unwrap_or_default();
    match format {
        Format::Text => {
            out.write_all(&record.body)?;
            out.write_all(b"\n")?;
        }
        Format::Json => {
            let mut object = serde_json::json!({
                "partition": r.partition,
                "origin": r.origin,
                "offset": r.offset,
                "key": record.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "tag": record.tag,
                "properties": record.properties,
                "timestamp": humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.timestamp_ms.max(0) as u64)
                ).to_string(),
                "timestamp_ms": record.timestamp_ms,
            });
            // Bodies that are not UTF-8 are printed in base64, so nothing is lost.
            match String::from_utf8(record.body) {
                Ok(text) => object["body"] = text.into(),
                Err(e) => {
                    object["body_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(e.into_bytes())
                        .into()
                }
            }
            serde_json::to_writer(&mut *out, &object)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}
