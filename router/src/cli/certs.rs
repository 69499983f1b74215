//! `georouter certs`: a CA and region certificates for a new deployment.

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct CertsArgs {
    /// Directory for ca.pem/ca.key and <region>.pem/<region>.key. An existing CA there
    /// is reused, so regions can be added later.
    #[arg(long)]
    out: PathBuf,
    /// Region ids, comma-separated: a certificate each for the replication links.
    #[arg(long, value_delimiter = ',', required_unless_present = "server_names")]
    regions: Vec<String>,
    /// Also write server.pem/server.key, a server certificate for the client surfaces
    /// (`[tls]`, `[rocketmq] tls_*`) naming these DNS names or IP addresses.
    #[arg(long, value_delimiter = ',')]
    server_names: Vec<String>,
    /// Validity of the region certificates, in days.
    #[arg(long, default_value_t = 825)]
    days: u32,
}

pub fn run(args: CertsArgs) -> Result<()> {
    for region in &args.regions {
        broker::names::validate("region", region).with_context(|| format!("--regions {region}"))?;
    }
    anyhow::ensure!(args.days > 0, "--days must be positive");
    let mut written = replicator::certs::write_deployment(&args.out, &args.regions, args.days)
        .with_context(|| format!("writing certificates to {}", args.out.display()))?;
    if !args.server_names.is_empty() {
        written.extend(
            replicator::certs::write_server(&args.out, &args.server_names, args.days)
                .with_context(|| {
                    format!("writing the server certificate to {}", args.out.display())
                })?,
        );
    }
    for file in written {
        println!("{file}");
    }
    Ok(())
}
