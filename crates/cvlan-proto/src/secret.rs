//! Key material: one type for every secret key the project holds (ESP keys as charon derives
//! them, keys on the charon link). Zeroed on drop, never printed, compared in constant time.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Secret key bytes. `Debug` prints only the length.
#[derive(Clone, Default)]
pub struct SecretKey(Zeroizing<Vec<u8>>);

impl SecretKey {
    /// Takes ownership of `bytes` (no copy is left behind).
    pub fn new(bytes: Vec<u8>) -> SecretKey {
        SecretKey(Zeroizing::new(bytes))
    }

    /// Copies `bytes`; the caller keeps (and should zero) its own copy.
    pub fn from_slice(bytes: &[u8]) -> SecretKey {
        SecretKey::new(bytes.to_vec())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &SecretKey) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for SecretKey {}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_equality_compares_bytes() {
        let k = SecretKey::from_slice(&[0x42; 20]);
        assert_eq!(format!("{k:?}"), "<redacted 20 bytes>");
        assert!(!format!("{k:?}").contains("42"));
        assert_eq!(k, SecretKey::new(vec![0x42; 20]));
        assert_ne!(k, SecretKey::new(vec![0x42; 19]));
        assert_ne!(k, SecretKey::new(vec![0x43; 20]));
        assert!(SecretKey::default().is_empty());
    }
}
