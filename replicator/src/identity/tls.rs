//! Mutual TLS for links: every region's certificate is signed by the deployment's CA and
//! names the region (a DNS subject alternative name equal to the region id). The dialer
//! checks the name it expects; the acceptor reads the region from the client certificate.
//! Only TLS 1.3 with the ring provider (AES-GCM preferred; docs/performance.md has the
//! cipher measurements).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

use crate::wire::{ALPN, DATA_ALPN};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} {path} holds no certificate")]
    Empty { what: &'static str, path: PathBuf },
    #[error("PEM text of the {what}: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the configuration (a CA, certificate or key it cannot use).
    #[error("TLS configuration, {what}: {source}")]
    Rustls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS configuration, client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC cannot use this TLS configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// This region's certificate chain and key, and the CA that signs every region.
#[derive(Clone, Debug)]
pub struct Identity {
    pub ca: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    /// Loads PEM files: the CA certificate(s), this region's certificate chain and its key.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certs = |what, path: &Path| -> Result<Vec<CertificateDer<'static>>, TlsError> {
            let read = |source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(read)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(read)?;
            if certs.is_empty() {
                return Err(TlsError::Empty {
                    what,
                    path: path.to_path_buf(),
                });
            }
            Ok(certs)
        };
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Read {
            what: "key",
            path: key.to_path_buf(),
            source,
        })?;
        Ok(Identity {
            ca: certs("CA certificate", ca)?,
            chain: certs("certificate", cert)?,
            key: Arc::new(key_der),
        })
    }

    /// From PEM text (tests and the embedded demo).
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Self, TlsError> {
        let pem = |what| move |source| TlsError::Pem { what, source };
        Ok(Identity {
            ca: CertificateDer::pem_slice_iter(ca.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(pem("CA certificate"))?,
            chain: CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(pem("certificate"))?,
            key: Arc::new(PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(pem("key"))?),
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.ca {
            roots
                .add(ca.clone())
                .map_err(rustls_error("CA certificate"))?;
        }
        Ok(Arc::new(roots))
    }

    /// The acceptor's side: client certificates are required and checked against the CA.
    /// Links and data-only connections are both taken.
    pub fn server_config(&self) -> Result<QuicServerConfig, TlsError> {
        self.server_config_for(&[ALPN, DATA_ALPN])
    }

    /// The acceptor's side of a node that takes data-only connections alone.
    pub fn data_only_server_config(&self) -> Result<QuicServerConfig, TlsError> {
        self.server_config_for(&[DATA_ALPN])
    }

    fn server_config_for(&self, protocols: &[&[u8]]) -> Result<QuicServerConfig, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone()).build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_error("protocol versions"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_error("certificate and key"))?;
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Ok(QuicServerConfig::try_from(config)?)
    }

    /// The dialer's side: the server must present a CA-signed certificate naming the
    /// region dialled (rustls checks the name given to `connect`). A link is asked for
    /// first; a node that takes only data-only connections answers with that protocol
    /// ([`negotiated_data_only`]), and the dialer moves on.
    pub fn client_config(&self) -> Result<QuicClientConfig, TlsError> {
        self.client_config_for(&[ALPN, DATA_ALPN])
    }

    /// The dialer's side of a node that opens data-only connections alone.
    pub fn data_only_client_config(&self) -> Result<QuicClientConfig, TlsError> {
        self.client_config_for(&[DATA_ALPN])
    }

    fn client_config_for(&self, protocols: &[&[u8]]) -> Result<QuicClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_error("protocol versions"))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_error("certificate and key"))?;
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Ok(QuicClientConfig::try_from(config)?)
    }
}

fn rustls_error(what: &'static str) -> impl Fn(rustls::Error) -> TlsError {
    move |source| TlsError::Rustls { what, source }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which of `regions` the peer's (already CA-verified) certificate names, if any.
pub fn region_of(connection: &quinn::Connection, regions: &[String]) -> Option<String> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let leaf = webpki::EndEntityCert::try_from(certs.first()?).ok()?;
    regions
        .iter()
        .find(|region| {
            ServerName::try_from(region.as_str())
                .is_ok_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_ok())
        })
        .cloned()
}

/// Whether `connection` is a data-only connection by its handshake (ALPN
/// [`DATA_ALPN`]).
pub fn negotiated_data_only(connection: &quinn::Connection) -> bool {
    connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .is_some_and(|protocol| protocol == DATA_ALPN)
}

/// The refusal reason of a node that does not replicate for its region now.
pub const NOT_REPLICATING: &str = "not_replicating";

/// A short, stable reason for a refused handshake, for logs and the refusal metric.
pub fn refusal_reason(error: &quinn::ConnectionError) -> &'static str {
    // A node of a region of several that does not replicate now refuses every connection
    // at once (`Replicator::refuse_links`): the dialler moves on to the region's next
    // address. (One that pulls and serves its share answers with the data-only protocol
    // instead: `negotiated_data_only`.)
    if let quinn::ConnectionError::ConnectionClosed(close) = error
        && close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED
    {
        return NOT_REPLICATING;
    }
    // rustls reports verification failures in text only ("certificate expired: ...",
    // "UnknownIssuer", "certificate not valid for name ..."), across versions in both
    // spellings; match case-insensitively on the words.
    let text = error.to_string().to_ascii_lowercase().replace(' ', "");
    if text.contains("expired") || text.contains("notvalidyet") {
        "certificate_expired"
    } else if text.contains("unknownissuer") || text.contains("badsignature") {
        "unknown_ca"
    } else if text.contains("notvalidforname") {
        "wrong_region"
    } else if text.contains("certificate") {
        "bad_certificate"
    } else if text.contains("alpn") || text.contains("applicationprotocol") {
        "protocol_version"
    } else {
        "handshake"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_does_not_replicate_is_told_apart_from_a_bad_handshake() {
        let refused = quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: quinn::TransportErrorCode::CONNECTION_REFUSED,
            frame_type: None,
            reason: Default::default(),
        });
        assert_eq!(refusal_reason(&refused), NOT_REPLICATING);
        assert_eq!(
            refusal_reason(&quinn::ConnectionError::TimedOut),
            "handshake"
        );
    }
}
