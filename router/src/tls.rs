//! TLS on the client surfaces: the own gRPC API and the console with `[tls] cert` and
//! `key`, the RocketMQ access point with `[rocketmq] tls_cert` and `tls_key` or else
//! `[tls]`. A key file readable by anyone but its owner is refused, as are the replication
//! link's. A listener on an address other than loopback speaks TLS, unless `[listen]
//! allow_plaintext` says otherwise (checked with the config).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
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
