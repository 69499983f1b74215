//! Certificates for a deployment: one CA, and one certificate per region that names the
//! region (DNS SAN) and serves both ends of a link (server and client auth). Used by
//! `georouter certs`, the demo and tests.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub use rcgen::Error as CertError;
pub use rcgen::date_time_ymd;

/// The CA's distinguished name. Fixed, so that a CA key on disk can sign more regions
/// later without parsing the CA certificate.
const CA_NAME: &str = "georouter deployment CA";

/// A CA certificate and key, PEM.
#[derive(Clone, Debug)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A region's certificate and key, PEM.
#[derive(Clone, Debug)]
pub struct RegionCert {
    pub region: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca_params() -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2025, 1, 1);
    params.not_after = date_time_ymd(2045, 1, 1);
    Ok(params)
}

impl Ca {
    pub fn generate() -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for `region`, valid for `days` from now.
    pub fn issue(&self, region: &str, days: u32) -> Result<RegionCert, CertError> {
        let now = std::time::SystemTime::now();
        let not_before = now - std::time::Duration::from_secs(3600);
        let not_after = now + std::time::Duration::from_secs(u64::from(days) * 86_400);
        self.issue_between(region, not_before.into(), not_after.into())
    }

    /// A server certificate naming `names` (an IP address becomes an IP SAN), valid for
    /// `days` from now.
    pub fn issue_server(&self, names: &[String], days: u32) -> Result<RegionCert, CertError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for name in names {
            params
                .subject_alt_names
                .push(match name.parse::<std::net::IpAddr>() {
                    Ok(ip) => rcgen::SanType::IpAddress(ip),
                    Err(_) => rcgen::SanType::DnsName(name.clone().try_into()?),
                });
        }
        params.distinguished_name.push(
            DnType::CommonName,
            format!(
                "georouter server {}",
                names.first().map_or("", String::as_str)
            ),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(3600)).into();
        params.not_after = (now + std::time::Duration::from_secs(u64::from(days) * 86_400)).into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(RegionCert {
            region: names.join(","),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A certificate for `region` valid in `[not_before, not_after]` (tests use this for
    /// expired certificates).
    pub fn issue_between(
        &self,
        region: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Result<RegionCert, CertError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let mut params = CertificateParams::new(vec![region.to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("georouter region {region}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(RegionCert {
            region: region.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The CA in `dir` (`ca.pem`/`ca.key`), made and written there when missing; and the
/// path of its certificate.
fn deployment_ca(dir: &Path) -> std::io::Result<(Ca, std::path::PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let ca = if ca_cert.exists() && ca_key.exists() {
        Ca {
            cert_pem: std::fs::read_to_string(&ca_cert)?,
            key_pem: std::fs::read_to_string(&ca_key)?,
        }
    } else {
        let ca = Ca::generate().map_err(std::io::Error::other)?;
        std::fs::write(&ca_cert, &ca.cert_pem)?;
        write_private(&ca_key, &ca.key_pem)?;
        ca
    };
    Ok((ca, ca_cert))
}

/// Writes `server.pem`/`server.key` into `dir`: a server certificate for the client
/// surfaces (gRPC API, console, RocketMQ access point) naming `names` (DNS names, or IP
/// addresses), signed by the deployment CA there (made when missing). The key is 0600.
pub fn write_server(dir: &Path, names: &[String], days: u32) -> std::io::Result<Vec<String>> {
    let (ca, ca_cert) = deployment_ca(dir)?;
    let cert = ca
        .issue_server(names, days)
        .map_err(std::io::Error::other)?;
    let cert_path = dir.join("server.pem");
    std::fs::write(&cert_path, &cert.cert_pem)?;
    write_private(&dir.join("server.key"), &cert.key_pem)?;
    Ok(vec![
        ca_cert.display().to_string(),
        cert_path.display().to_string(),
    ])
}

/// Writes `ca.pem`/`ca.key` (made when missing, reused otherwise) and `<region>.pem`/
/// `<region>.key` for each region into `dir`. Keys are written mode 0600.
pub fn write_deployment(dir: &Path, regions: &[String], days: u32) -> std::io::Result<Vec<String>> {
    let (ca, ca_cert) = deployment_ca(dir)?;
    let mut written = vec![ca_cert.display().to_string()];
    for region in regions {
        let cert = ca.issue(region, days).map_err(std::io::Error::other)?;
        let cert_path = dir.join(format!("{region}.pem"));
        std::fs::write(&cert_path, &cert.cert_pem)?;
        write_private(&dir.join(format!("{region}.key")), &cert.key_pem)?;
        written.push(cert_path.display().to_string());
    }
    Ok(written)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
