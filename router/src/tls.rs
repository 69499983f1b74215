//! TLS on the client surfaces: the own gRPC API and the console with `[tls] cert` and
//! `key`, the RocketMQ access point with `[rocketmq] tls_cert` and `tls_key` or else
//! `[tls]`. A key file readable by anyone but its owner is refused, as are the replication
//! link's. A listener on an address other than loopback speaks TLS, unless `[listen]
//! allow_plaintext` says otherwise (checked with the config).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use console_api::api::certificates::CertificateFile;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server certificate chain and key, read once.
#[derive(Clone)]
pub struct ServerIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl ServerIdentity {
    /// Reads `cert` and `key` (named `what` in errors); the key must be private (0600).
    pub fn load(cert: &Path, key: &Path, what: &str) -> Result<Self> {
        auth::admin::check_private(key).with_context(|| format!("{what} key"))?;
        let read = |path: &Path, part: &str| {
            std::fs::read(path)
                .with_context(|| format!("reading the {what} {part} {}", path.display()))
        };
        Ok(ServerIdentity {
            cert_pem: read(cert, "certificate")?,
            key_pem: read(key, "key")?,
        })
    }

    /// For a tonic server.
    pub fn tonic(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_pem,
            &self.key_pem,
        ))
    }

    /// For the console's HTTP server (rustls with ring, TLS 1.2 and 1.3, HTTP/1.1).
    pub fn rustls(&self) -> Result<Arc<rustls::ServerConfig>> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("the console's certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).context("the console's key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the console's certificate and key")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The certificate files the node uses, each with its expiry: read at start; one that
/// cannot be read is left out (its use fails with a clear error anyway).
pub fn certificate_files(config: &crate::config::NodeConfig) -> Vec<CertificateFile> {
    let named = [
        (
            "replication",
            config
                .replication
                .certificate_files()
                .map(|(_, cert, _)| cert.to_path_buf()),
        ),
        ("tls", config.tls.cert.clone()),
        ("rocketmq", config.rocketmq.tls_cert.clone()),
    ];
    named
        .into_iter()
        .filter_map(|(name, path)| {
            let path = path?;
            let not_after_s = auth::certificate::not_after_pem(&std::fs::read(&path).ok()?)?;
            Some(CertificateFile {
                name: name.to_string(),
                path: path.display().to_string(),
                not_after_s,
            })
        })
        .collect()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CertificateLabels {
    certificate: String,
}

/// `georouter_certificate_expiry_seconds{certificate}`, set now and every hour until `stop`;
/// a certificate within 30 days of expiry is also logged.
pub fn expiry_gauges(
    files: Vec<CertificateFile>,
    registry: &mut prometheus_client::registry::Registry,
    stop: tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> + use<> {
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    let gauges = Family::<CertificateLabels, Gauge>::default();
    registry.register(
        "georouter_certificate_expiry_seconds",
        "Seconds until each certificate of the node expires (negative: expired)",
        gauges.clone(),
    );
    let update = move || {
        let now = broker::record::now_ms().div_euclid(1000);
        for file in &files {
            let left = file.expires_in_s(now);
            gauges
                .get_or_create(&CertificateLabels {
                    certificate: file.name.clone(),
                })
                .set(left);
            if left < console_api::api::certificates::SOON_DAYS * 86_400 {
                tracing::warn!(event = "certificate_expiring", certificate = %file.name, path = %file.path, days = left.div_euclid(86_400), "a certificate expires within 30 days (or has expired)");
            }
        }
    };
    update();
    async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => update(),
                () = stop.cancelled() => return,
            }
        }
    }
}
