//! Who a region is on its links: mutual-TLS identities from the deployment CA (`tls`),
//! issuing that CA and the region certificates (`certs`, `georouter certs`), and the seals
//! a region puts on the control state it authors (`seal`).

pub mod certs;
pub mod seal;
pub mod tls;
