//! Seals on control state: every region signs what it authors (task, group and principal
//! records, and its own link state) with the key of its replication certificate, and
//! every receiver checks the seal before it takes anything, whichever neighbour relayed it.
//!
//! - A seal is the TLS signature scheme of the key (its IANA code), the signature, and the
//!   author's certificate (DER). The certificate must chain to the deployment CA, be valid
//!   now and name the author region (a DNS subject alternative name, as on links), so a
//!   region holding a certificate from the same CA cannot make a record or a link state
//!   that passes as another region's.
//! - What is signed starts with a label naming the format and kind
//!   (`georouter/record/1`, `georouter/link-state/1`), so a signature over one thing can
//!   never be replayed as another.
//! - Certificates once verified are remembered for a few minutes (by their bytes and the
//!   region they were checked for), so steady flooding costs one signature check per frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use broker::catalog::Seal;
use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::sign::SigningKey;

use super::tls::Identity;
use crate::wire::message as msg;

/// Why a seal was not accepted. `reason()` is the label of the refusal metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("it carries no seal")]
    Missing,
    #[error("its seal is not well formed: {0}")]
    Malformed(&'static str),
    #[error("the sealing certificate is not one of this deployment: {0}")]
    Certificate(String),
    #[error("the sealing certificate does not name region \"{0}\"")]
    WrongRegion(String),
    #[error("the signature does not match")]
    Signature,
}

impl SealError {
    pub fn reason(&self) -> &'static str {
        match self {
            SealError::Missing => "unsigned",
            SealError::Malformed(_) => "malformed_seal",
            SealError::Certificate(_) => "unknown_certificate",
            SealError::WrongRegion(_) => "wrong_region",
            SealError::Signature => "bad_signature",
        }
    }
}

/// Signs with this region's key.
#[derive(Clone)]
pub struct Sealer {
    key: Arc<dyn SigningKey>,
    scheme: SignatureScheme,
    certificate: Vec<u8>,
}

/// The schemes a seal may use, with the algorithm that verifies each.
const SCHEMES: &[(
    SignatureScheme,
    &dyn rustls::pki_types::SignatureVerificationAlgorithm,
)] = &[
    (
        SignatureScheme::ECDSA_NISTP256_SHA256,
        webpki::ring::ECDSA_P256_SHA256,
    ),
    (
        SignatureScheme::ECDSA_NISTP384_SHA384,
        webpki::ring::ECDSA_P384_SHA384,
    ),
    (SignatureScheme::ED25519, webpki::ring::ED25519),
    (
        SignatureScheme::RSA_PSS_SHA256,
        webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    ),
];

impl Sealer {
    /// The sealer of the region whose replication identity this is.
    pub fn new(identity: &Identity) -> Result<Self, SealError> {
        let key = rustls::crypto::ring::sign::any_supported_type(&identity.key)
            .map_err(|_| SealError::Malformed("the region's key cannot sign"))?;
        let offered: Vec<SignatureScheme> = SCHEMES.iter().map(|(s, _)| *s).collect();
        let signer = key.choose_scheme(&offered).ok_or(SealError::Malformed(
            "the region's key has no usable scheme",
        ))?;
        let certificate = identity
            .chain
            .first()
            .ok_or(SealError::Malformed("the region has no certificate"))?
            .to_vec();
        Ok(Sealer {
            scheme: signer.scheme(),
            key,
            certificate,
        })
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signer = self
            .key
            .choose_scheme(&[self.scheme])
            .expect("the scheme chosen at start");
        signer.sign(message).expect("signing with the region's key")
    }

    /// The seal of a record's `signed_bytes`.
    pub fn seal(&self, message: &[u8]) -> Seal {
        Seal {
            scheme: u16::from(self.scheme),
            signature: B64.encode(self.sign(message)),
            certificate: B64.encode(&self.certificate),
        }
    }

    /// Seals this region's link state in place.
    pub fn seal_link_state(&self, state: &mut msg::LinkState) {
        state.seal = Some(msg::LinkSeal {
            scheme: u16::from(self.scheme),
            signature: self.sign(&link_state_bytes(state)),
            certificate: self.certificate.clone(),
        });
    }
}

/// What a region signs of its link state: a label, the region, the sequence number and
/// each link in the order sent.
pub fn link_state_bytes(state: &msg::LinkState) -> Vec<u8> {
    let mut text = format!("georouter/link-state/1\n{}\n{}\n", state.region, state.seq);
    for link in &state.links {
        text.push_str(&format!("{} {} {}\n", link.peer, link.up, link.srtt_us));
    }
    text.into_bytes()
}

/// How long a verified certificate is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// Certificates remembered at most (the cache starts over when full).
const REMEMBER_AT_MOST: usize = 1024;

/// Checks seals against the deployment CA.
pub struct Verifier {
    anchors: Vec<CertificateDer<'static>>,
    verified: Mutex<HashMap<(Vec<u8>, String), Instant>>,
}

impl Verifier {
    pub fn new(identity: &Identity) -> Self {
        Verifier {
            anchors: identity.ca.clone(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a record's seal: made by `author` over `message`.
    pub fn check_record(
        &self,
        author: &str,
        message: &[u8],
        seal: Option<&Seal>,
    ) -> Result<(), SealError> {
        let seal = seal.ok_or(SealError::Missing)?;
        let signature = B64
            .decode(&seal.signature)
            .map_err(|_| SealError::Malformed("the signature is not base64"))?;
        let certificate = B64
            .decode(&seal.certificate)
            .map_err(|_| SealError::Malformed("the certificate is not base64"))?;
        self.check(author, message, seal.scheme, &signature, certificate)
    }

    /// Checks a link state's seal: made by the region it is of.
    pub fn check_link_state(&self, state: &msg::LinkState) -> Result<(), SealError> {
        let seal = state.seal.as_ref().ok_or(SealError::Missing)?;
        self.check(
            &state.region,
            &link_state_bytes(state),
            seal.scheme,
            &seal.signature,
            seal.certificate.clone(),
        )
    }

    fn check(
        &self,
        author: &str,
        message: &[u8],
        scheme: u16,
        signature: &[u8],
        certificate: Vec<u8>,
    ) -> Result<(), SealError> {
        let scheme = SignatureScheme::from(scheme);
        let algorithm = SCHEMES
            .iter()
            .find(|(s, _)| *s == scheme)
            .map(|(_, a)| *a)
            .ok_or(SealError::Malformed("unknown signature scheme"))?;
        let der = CertificateDer::from(certificate);
        let leaf = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| SealError::Certificate(e.to_string()))?;
        self.check_certificate(author, &der, &leaf)?;
        leaf.verify_signature(algorithm, message, signature)
            .map_err(|_| SealError::Signature)
    }

    /// The certificate chains to the CA, is valid now and names `author`.
    fn check_certificate(
        &self,
        author: &str,
        der: &CertificateDer<'_>,
        leaf: &webpki::EndEntityCert<'_>,
    ) -> Result<(), SealError> {
        let key = (der.to_vec(), author.to_string());
        let mut verified = self.verified.lock().expect("verified certificates");
        if verified.get(&key).is_some_and(|at| at.elapsed() < REMEMBER) {
            return Ok(());
        }
        let anchors: Vec<TrustAnchor<'_>> = self
            .anchors
            .iter()
            .filter_map(|ca| webpki::anchor_from_trusted_cert(ca).ok())
            .collect();
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| SealError::Certificate(e.to_string()))?;
        let name =
            ServerName::try_from(author).map_err(|_| SealError::WrongRegion(author.to_string()))?;
        leaf.verify_is_valid_for_subject_name(&name)
            .map_err(|_| SealError::WrongRegion(author.to_string()))?;
        if verified.len() >= REMEMBER_AT_MOST {
            verified.clear();
        }
        verified.insert(key, Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::certs::Ca;
    use broker::catalog::record::{Record, signed_bytes};

    fn identity(ca: &Ca, region: &str) -> Identity {
        let cert = ca.issue(region, 30).unwrap();
        Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap()
    }

    fn record(author: &str) -> Record<String> {
        Record {
            spec: "spec".into(),
            version: 3,
            changed_by: author.into(),
            deleted: false,
            by: Some("alice".into()),
            admin: false,
            seal: None,
        }
    }

    #[test]
    fn a_record_sealed_by_its_author_passes_and_any_change_to_it_does_not() {
        let ca = Ca::generate().unwrap();
        let a = identity(&ca, "a");
        let verifier = Verifier::new(&a);
        let mut r = record("a");
        r.seal = Some(Sealer::new(&a).unwrap().seal(&signed_bytes("task", &r)));
        assert_eq!(
            verifier.check_record("a", &signed_bytes("task", &r), r.seal.as_ref()),
            Ok(())
        );
        let mut changed = r.clone();
        changed.version = 4;
        assert_eq!(
            verifier.check_record("a", &signed_bytes("task", &changed), r.seal.as_ref()),
            Err(SealError::Signature)
        );
        assert_eq!(
            verifier.check_record("a", &signed_bytes("group", &r), r.seal.as_ref()),
            Err(SealError::Signature),
            "a seal over a task is not one over a group"
        );
        assert_eq!(
            verifier.check_record("a", &signed_bytes("task", &r), None),
            Err(SealError::Missing)
        );
    }

    #[test]
    fn another_region_of_the_same_ca_cannot_seal_for_a_region() {
        let ca = Ca::generate().unwrap();
        let (a, c) = (identity(&ca, "a"), identity(&ca, "c"));
        let verifier = Verifier::new(&a);
        let forged = record("a");
        let seal = Sealer::new(&c)
            .unwrap()
            .seal(&signed_bytes("task", &forged));
        assert_eq!(
            verifier.check_record("a", &signed_bytes("task", &forged), Some(&seal)),
            Err(SealError::WrongRegion("a".into()))
        );
    }

    #[test]
    fn a_certificate_of_another_ca_is_refused() {
        let (ca, other) = (Ca::generate().unwrap(), Ca::generate().unwrap());
        let verifier = Verifier::new(&identity(&ca, "a"));
        let r = record("a");
        let seal = Sealer::new(&identity(&other, "a"))
            .unwrap()
            .seal(&signed_bytes("task", &r));
        assert!(matches!(
            verifier.check_record("a", &signed_bytes("task", &r), Some(&seal)),
            Err(SealError::Certificate(_))
        ));
    }

    #[test]
    fn a_link_state_is_sealed_by_its_region() {
        let ca = Ca::generate().unwrap();
        let (a, c) = (identity(&ca, "a"), identity(&ca, "c"));
        let verifier = Verifier::new(&c);
        let mut state = msg::LinkState {
            region: "a".into(),
            seq: 7,
            links: vec![msg::LinkHealth {
                peer: "b".into(),
                up: true,
                srtt_us: 900,
            }],
            seal: None,
        };
        Sealer::new(&a).unwrap().seal_link_state(&mut state);
        assert_eq!(verifier.check_link_state(&state), Ok(()));
        let mut forged_seq = state.clone();
        forged_seq.seq = u64::MAX;
        assert_eq!(
            verifier.check_link_state(&forged_seq),
            Err(SealError::Signature)
        );
        let mut by_c = state.clone();
        Sealer::new(&c).unwrap().seal_link_state(&mut by_c);
        assert_eq!(
            verifier.check_link_state(&by_c),
            Err(SealError::WrongRegion("a".into()))
        );
    }
}
