//! Secret sealing (adapter layer): implements the `SecretSealer` port with ChaCha20-Poly1305
//! under a 256-bit key from the server's configuration, a fresh random nonce per value and
//! the value's location as associated data.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use aether_domain::{Error, Result};
use aether_ports::store::SecretSealer;

const NONCE: usize = 12;
/// Leading byte of a sealed value: the format, so a later one can be told apart.
const FORMAT: u8 = 1;

pub struct KeySealer {
    cipher: ChaCha20Poly1305,
}

impl KeySealer {
    /// From 64 hex digits (32 bytes).
    pub fn from_hex(hex_key: &str) -> Result<KeySealer> {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| Error::invalid("a secrets key must be 64 hex digits (32 bytes)"))?;
        Ok(KeySealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }

    /// From a key file holding 64 hex digits, created (0600, random) if it does not exist.
    pub fn from_file(path: &Path) -> Result<KeySealer> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if !path.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| Error::internal(format!("no randomness for a secrets key: {e}")))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| {
                    Error::internal(format!("cannot create secrets key {}: {e}", path.display()))
                })?;
            f.write_all(hex::encode(key).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| {
                    Error::internal(format!("cannot write secrets key {}: {e}", path.display()))
                })?;
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!("cannot read secrets key {}: {e}", path.display()))
        })?;
        KeySealer::from_hex(&text)
            .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message)))
    }
}

impl SecretSealer for KeySealer {
    fn seal(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::internal(format!("no randomness for a nonce: {e}")))?;
        let body = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .map_err(|_| Error::internal("sealing a secret failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE + body.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let unreadable = || {
            Error::internal(
                "a stored secret cannot be opened (wrong secrets key, or the value was tampered with)",
            )
        };
        if sealed.len() < 1 + NONCE || sealed[0] != FORMAT {
            return Err(unreadable());
        }
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed[1..1 + NONCE]),
                Payload {
                    msg: &sealed[1 + NONCE..],
                    aad: context,
                },
            )
            .map_err(|_| unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn seals_opens_and_binds_the_context() {
        let s = KeySealer::from_hex(KEY).unwrap();
        let a = s.seal(b"hunter2", b"t|s|db").unwrap();
        let b = s.seal(b"hunter2", b"t|s|db").unwrap();
        assert_ne!(a, b, "a fresh nonce every time");
        assert!(!a.windows(7).any(|w| w == b"hunter2"), "not in the clear");
        assert_eq!(s.open(&a, b"t|s|db").unwrap(), b"hunter2");
        assert!(s.open(&a, b"t|s|other").is_err(), "bound to its place");
        let other = KeySealer::from_hex(&KEY.replace("00", "ff")).unwrap();
        assert!(other.open(&a, b"t|s|db").is_err(), "bound to the key");
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(s.open(&tampered, b"t|s|db").is_err());
        assert!(KeySealer::from_hex("abc").is_err());
    }

    #[test]
    fn a_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("aether-crypto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secrets.key");
        let _ = std::fs::remove_file(&path);
        let first = KeySealer::from_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.seal(b"v", b"c").unwrap();
        let again = KeySealer::from_file(&path).unwrap();
        assert_eq!(again.open(&sealed, b"c").unwrap(), b"v");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
