//! Signed, expiring approval links. When an action starts waiting for
//! approval, the receivers its incident's alert routes to get a message
//! with two links (approve, reject), each signed for that receiver with a
//! key only this data folder holds (`remediation/link.key`, owner-only,
//! made on first use). Opening a link shows what it approves and asks for
//! one more press (a mail scanner's prefetch decides nothing); the press
//! is recorded as `NAME (signed link)`. A link past its time, altered, or
//! for an action already decided is refused.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};

/// What a link decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The action's key.
    pub key: String,
    /// Its incident.
    pub incident: String,
    /// Approve (or reject).
    pub approve: bool,
    /// Until when it works.
    pub expires: DateTime<Utc>,
    /// Who it was sent to (the receiver's target), for the audit log.
    pub to: String,
}

/// Why a link is refused or a key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The signature does not match (altered, or another data folder's).
    #[error("this link is not valid (its signature does not match)")]
    BadSignature,
    /// Past its time.
    #[error("this link expired at {0}")]
    Expired(DateTime<Utc>),
    /// The key file.
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// Signs and checks links with the data folder's key.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

/// Where the key is kept.
pub fn key_path(data: &Path) -> PathBuf {
    data.join("remediation").join("link.key")
}

impl LinkSigner {
    /// The data folder's key, made (32 random bytes, owner-only) when
    /// there is none.
    pub fn open(data: &Path) -> Result<LinkSigner, LinkError> {
        let path = key_path(data);
        let err = |reason: String| LinkError::Key {
            path: path.clone(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = text.trim();
                if key.len() < 32 {
                    return Err(err(
                        "too short to be a link key: delete it to have one made".into(),
                    ));
                }
                return Ok(LinkSigner {
                    key: key.as_bytes().to_vec(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e.to_string())),
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| err(format!("no random numbers from the OS: {e}")))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                use std::io::Write as _;
                file.write_all(hex.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                Ok(LinkSigner {
                    key: hex.into_bytes(),
                })
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => LinkSigner::open(data),
            Err(e) => Err(err(e.to_string())),
        }
    }

    fn mac(&self, link: &Link) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        // Fields cannot run into each other: each ends with a newline and
        // none may hold one (they are checked when a link is read).
        for part in [
            "relive-approval-link-v1",
            &link.key,
            &link.incident,
            if link.approve { "approve" } else { "reject" },
            &link.expires.timestamp().to_string(),
            &link.to,
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// The link's signature, hex.
    pub fn sign(&self, link: &Link) -> String {
        self.mac(link)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `signature` is this key's for `link` and it has not expired.
    pub fn verify(
        &self,
        link: &Link,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LinkError> {
        let any_newline = [&link.key, &link.incident, &link.to]
            .iter()
            .any(|f| f.contains('\n'));
        let bytes = decode_hex(signature).ok_or(LinkError::BadSignature)?;
        if any_newline || self.mac(link).verify_slice(&bytes).is_err() {
            return Err(LinkError::BadSignature);
        }
        if now >= link.expires {
            return Err(LinkError::Expired(link.expires));
        }
        Ok(())
    }

    /// The link's address under `base` (the web UI's external URL).
    pub fn url(&self, base: &str, link: &Link) -> String {
        format!(
            "{}/approve?key={}&incident={}&do={}&exp={}&to={}&sig={}",
            base.trim_end_matches('/'),
            query_value(&link.key),
            query_value(&link.incident),
            if link.approve { "approve" } else { "reject" },
            link.expires.timestamp(),
            query_value(&link.to),
            self.sign(link)
        )
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Percent-encodes everything but unreserved characters.
fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            key: "3f2a9c1d0b7e4a55/fix/1/1".into(),
            incident: "3f2a9c1d0b7e4a55".into(),
            approve: true,
            expires: Utc::now() + chrono::Duration::hours(1),
            to: "oncall-email".into(),
        }
    }

    #[test]
    fn a_link_works_until_it_expires_and_not_once_altered() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LinkSigner::open(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let l = link();
        let sig = signer.sign(&l);
        assert!(signer.verify(&l, &sig, Utc::now()).is_ok());
        // The same folder's key after a restart.
        let again = LinkSigner::open(dir.path()).unwrap();
        assert!(again.verify(&l, &sig, Utc::now()).is_ok());
        assert!(matches!(
            signer.verify(&l, &sig, l.expires),
            Err(LinkError::Expired(_))
        ));
        for altered in [
            Link {
                approve: false,
                ..l.clone()
            },
            Link {
                key: "3f2a9c1d0b7e4a55/fix/3/1".into(),
                ..l.clone()
            },
            Link {
                expires: l.expires + chrono::Duration::days(30),
                ..l.clone()
            },
            Link {
                to: "someone-else".into(),
                ..l.clone()
            },
            Link {
                incident: "ffffffffffffffff".into(),
                ..l.clone()
            },
        ] {
            assert!(matches!(
                signer.verify(&altered, &sig, Utc::now()),
                Err(LinkError::BadSignature)
            ));
        }
        assert!(signer.verify(&l, "zz", Utc::now()).is_err());
        // Another data folder's key signs differently.
        let other = tempfile::tempdir().unwrap();
        let stranger = LinkSigner::open(other.path()).unwrap();
        assert!(stranger.verify(&l, &sig, Utc::now()).is_err());
        let url = signer.url("http://127.0.0.1:7300/", &l);
        assert!(
            url.starts_with("http://127.0.0.1:7300/approve?key=3f2a9c1d0b7e4a55%2Ffix%2F1%2F1&")
        );
        assert!(url.ends_with(&sig));
    }
}
