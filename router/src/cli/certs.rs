//! `georouter certs`: a CA and region certificates for a new deployment.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct CertsArgs {
    /// Directory for ca.pem/ca.key and <region>.pem/<region>.key. An existing CA there
    /// is reused, so regions can be added later.
    #[arg(long)]
    out: PathBuf,
    /// Region ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    regions: Vec<String>,
    /// Validity of the region certificates, in days.
    #[arg(long, default_value_t = 825)]
    days: u32,
}

pub fn run(args: CertsArgs) -> Result<()> {
    for region in &args.regions {
        broker::names::validate("region", region).with_context(|| format!("--regions {region}"))?;
    }
    anyhow::ensure!(args.days > 0, "--days must be positive");
    let written = replicator::certs::write_deployment(&args.out, &args.regions, args.days)
        .with_context(|| format!("writing certificates to {}", args.out.display()))?;
    for file in written {
        println!("{file}");
    }
    Ok(())
}
