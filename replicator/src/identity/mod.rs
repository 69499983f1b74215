//! Who a region is on its links: mutual-TLS identities from the deployment CA (`tls`),
//! and issuing that CA and the region certificates (`certs`, `georouter certs`).

pub mod certs;
pub mod tls;
