//! Secure by default: a node that is given no principal and no console token makes an
//! admin credential at its first start, stores it in `<data_dir>/admin.credential` (JSON
//! `{access_key, secret}`, mode 0600), and prints it once; later starts read it back. A
//! file readable by others is refused.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::permission::{Action, GrantSpec};
use crate::principal::PrincipalSpec;

pub const FILE: &str = "admin.credential";
/// The generated admin's access key.
pub const ACCESS_KEY: &str = "admin";

#[derive(Serialize, Deserialize)]
struct Stored {
    access_key: String,
    secret: String,
}

/// The admin credential of a node.
pub struct Admin {
    pub spec: PrincipalSpec,
    pub path: PathBuf,
    /// Made by this start (to be shown once).
    pub new: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{path}: mode {mode:o} lets others read the admin credential; chmod 600 it")]
    Permissions { path: String, mode: u32 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an admin credential: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
}

/// Fails when `path` is readable or writable by anyone but its owner.
pub fn check_private(path: &Path) -> Result<(), AdminError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| AdminError::Io {
            path: path.display().to_string(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(AdminError::Permissions {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

fn admin_spec(stored: Stored) -> PrincipalSpec {
    PrincipalSpec {
        name: "admin".into(),
        access_key: stored.access_key,
        secret: stored.secret,
        grants: vec![GrantSpec {
            resource: "cluster".into(),
            actions: vec![Action::Admin],
        }],
    }
}

/// The admin credential stored in `data_dir`, made (and stored) if there is none.
pub fn admin_credential(data_dir: &Path) -> Result<Admin, AdminError> {
    let path = data_dir.join(FILE);
    let io = |source| AdminError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        check_private(&path)?;
        let bytes = std::fs::read(&path).map_err(io)?;
        let stored: Stored =
            serde_json::from_slice(&bytes).map_err(|source| AdminError::Decode {
                path: path.display().to_string(),
                source,
            })?;
        return Ok(Admin {
            spec: admin_spec(stored),
            path,
            new: false,
        });
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let stored = Stored {
        access_key: ACCESS_KEY.into(),
        secret,
    };
    let text = serde_json::to_vec(&stored).expect("a credential encodes");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    file.write_all(&text).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Admin {
        spec: admin_spec(stored),
        path,
        new: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = admin_credential(dir.path()).unwrap();
        assert!(first.new);
        assert!(first.spec.check().is_ok());
        let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = admin_credential(dir.path()).unwrap();
        assert!(!again.new);
        assert_eq!(again.spec, first.spec);
        std::fs::set_permissions(&first.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = admin_credential(dir.path()).err().unwrap();
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
    }
}
