//! Token encryption, fingerprints, random values and signature checks.

use std::{io::Write, path::Path};

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// Encrypts tokens with AES-256-GCM. Each ciphertext is `nonce || sealed
/// token`, and the workspace id is bound in as associated data, so a
/// ciphertext copied to another row fails to decrypt.
pub struct TokenCipher {
    cipher: Aes256Gcm,
    key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "TOKEN_ENCRYPTION_KEY is not valid base64; generate one with `openssl rand -base64 32`"
    )]
    NotBase64,
    #[error("TOKEN_ENCRYPTION_KEY decodes to {0} bytes; it must be base64 of exactly 32 bytes")]
    WrongLength(usize),
    #[error("failed to read or create the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("token was encrypted with key {stored}, but the configured key is {configured}")]
    WrongKey { stored: String, configured: String },
    #[error("token ciphertext failed authentication")]
    Corrupt,
}

impl TokenCipher {
    pub fn from_base64(encoded: &SecretString) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(encoded.expose_secret().trim())
            .map_err(|_| KeyError::NotBase64)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::WrongLength(bytes.len()));
        }
        let cipher =
            Aes256Gcm::new_from_slice(bytes).map_err(|_| KeyError::WrongLength(bytes.len()))?;
        // The key id is a public name for the key: a short hash that shows
        // which key sealed a row without revealing anything about the key.
        let key_id = fingerprint(&Sha256::digest(
            [b"intercom-installs key id:".as_slice(), bytes].concat(),
        ));
        Ok(Self { cipher, key_id })
    }

    /// Reads the key in `path`, or creates the file with a new random key,
    /// readable only by its owner. Returns the cipher and whether it created the file.
    pub fn load_or_create_key_file(path: &Path) -> Result<(Self, bool), KeyError> {
        let key_file_error = |source| KeyError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(contents) => {
                let cipher = Self::from_base64(&SecretString::from(contents))?;
                return Ok((cipher, false));
            }
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(key_file_error(error));
            }
            Err(_) => {}
        }

        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(key_file_error)?;
        file.write_all(STANDARD.encode(key).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(key_file_error)?;
        Ok((Self::from_bytes(&key)?, true))
    }

    /// Creates a cipher with a random key that lives as long as the process.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::from_bytes(&key).expect("32 bytes is a valid AES-256 key")
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn encrypt(&self, workspace_id: &str, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: workspace_id.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM encryption fails only for inputs over 64 GiB");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn decrypt(
        &self,
        workspace_id: &str,
        key_id: &str,
        ciphertext: &[u8],
    ) -> Result<SecretString, DecryptError> {
        if key_id != self.key_id {
            return Err(DecryptError::WrongKey {
                stored: key_id.to_owned(),
                configured: self.key_id.clone(),
            });
        }
        if ciphertext.len() < NONCE_LEN {
            return Err(DecryptError::Corrupt);
        }
        let (nonce, sealed) = ciphertext.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: workspace_id.as_bytes(),
        };
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| DecryptError::Corrupt)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| DecryptError::Corrupt)
    }
}

/// First 12 hex digits of SHA-256 of `bytes`.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..6])
}

/// Full SHA-256 in hex, for looking up single-use values (OAuth states,
/// browser ids) without storing them.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Returns a random URL-safe value with 256 bits of entropy.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks `X-Body-Signature`: hex HMAC-SHA256 of the raw body keyed with the
/// client secret, compared in constant time.
pub fn verify_body_signature(secret: &SecretString, body: &[u8], signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Checks `X-Hub-Signature`: `sha1=` and the hex HMAC-SHA1 of the raw body
/// keyed with the client secret, compared in constant time.
pub fn verify_hub_signature(secret: &SecretString, body: &[u8], header: &str) -> bool {
    let Some(signature_hex) = header.trim().strip_prefix("sha1=") else {
        return false;
    };
    let Ok(expected) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_is_bound_to_workspace() {
        let cipher = TokenCipher::ephemeral();
        let sealed = cipher.encrypt("ws1", "secret-token");

        let opened = cipher.decrypt("ws1", cipher.key_id(), &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "secret-token");
        assert!(cipher.decrypt("ws2", cipher.key_id(), &sealed).is_err());
    }

    #[test]
    fn decrypt_with_other_key_names_both_keys() {
        let sealer = TokenCipher::ephemeral();
        let other = TokenCipher::ephemeral();
        let sealed = sealer.encrypt("ws1", "secret-token");

        let error = other.decrypt("ws1", sealer.key_id(), &sealed).unwrap_err();
        assert!(error.to_string().contains(sealer.key_id()));
        assert!(error.to_string().contains(other.key_id()));
    }

    #[test]
    fn key_of_wrong_length_is_rejected() {
        let result = TokenCipher::from_base64(&SecretString::from(STANDARD.encode([1u8; 16])));
        assert!(matches!(result, Err(KeyError::WrongLength(16))));
    }
}
