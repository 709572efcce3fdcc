//! The DPoP key (RFC 9449) and the proofs it signs: ES256 over the P-256
//! key, a fresh `jti` and the current time in each proof. The claims are
//! the core's ([`oauth::proof_signing_input`]); this adds what the core
//! cannot have: the key, the clock and randomness.
//!
//! Tokens bound to a key are worthless without it, so the key is kept with
//! the tokens it bound (PKCS#8 in [`crate::oauth::StoredTokens`]): a new
//! process refreshes and presents them with the same key.

use mcp_recovery_core::oauth::{self, ProofRequest};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Mutex;

/// One DPoP key, and the nonce the resource server last gave for it.
pub(crate) struct DpopKey {
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    jwk: Value,
    rng: SystemRandom,
    /// The MCP server's latest nonce (RFC 9449 §9), for the next proofs.
    nonce: Mutex<Option<String>>,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DpopKey(<redacted>)")
    }
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "no randomness for a DPoP key".to_owned())?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// The key stored as base64 PKCS#8 ([`DpopKey::stored`]).
    pub fn from_stored(b64: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| "the stored DPoP key is not base64".to_owned())?;
        Self::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| "the DPoP key is not a P-256 PKCS#8 key".to_owned())?;
        // An uncompressed point: 0x04, x, y (32 bytes each).
        let point = key.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .filter(|xy| point.len() == 65 && xy.len() == 64)
            .map(|xy| xy.split_at(32))
            .ok_or("unexpected public key form")?;
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": oauth::base64(x, true),
            "y": oauth::base64(y, true),
        });
        Ok(DpopKey {
            key,
            pkcs8: der.to_vec(),
            jwk,
            rng,
            nonce: Mutex::new(None),
        })
    }

    /// The key as stored with the tokens it bound.
    pub fn stored(&self) -> String {
        oauth::base64(&self.pkcs8, true)
    }

    /// The public key's JWK thumbprint (RFC 7638), what a bound token's
    /// `cnf.jkt` names.
    #[cfg(test)]
    pub fn thumbprint(&self) -> String {
        // Required members only, in lexicographic order, no spaces.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap_or_default(),
            self.jwk["y"].as_str().unwrap_or_default()
        );
        oauth::base64(&Sha256::digest(canonical.as_bytes()), true)
    }

    /// A signed proof for `request`, now.
    pub fn prove(&self, request: &ProofRequest<'_>) -> Result<String, String> {
        let iat = crate::oauth::now_unix();
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| format!("no randomness: {e}"))?;
        let jti = oauth::base64(&jti, true);
        let ath = request
            .access_token
            .map(|t| oauth::base64(&Sha256::digest(t.as_bytes()), true));
        let input =
            oauth::proof_signing_input(&self.jwk, "ES256", request, iat, &jti, ath.as_deref());
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing failed".to_owned())?;
        Ok(format!(
            "{input}.{}",
            oauth::base64(signature.as_ref(), true)
        ))
    }

    /// The resource server's latest nonce.
    pub fn nonce(&self) -> Option<String> {
        self.nonce
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps `nonce` for the next proofs to the resource server.
    pub fn set_nonce(&self, nonce: String) {
        *self
            .nonce
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn decode(s: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    }

    #[test]
    fn a_proof_verifies_with_its_jwk_and_names_the_request() {
        let key = DpopKey::generate().unwrap();
        let mut r = ProofRequest::new("POST", "https://rs.example/mcp?x=1");
        r.access_token = Some("the-token");
        r.nonce = Some("n");
        let proof = key.prove(&r).unwrap();
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "no private part");
        assert_eq!(claims["htu"], "https://rs.example/mcp");
        assert_eq!(claims["nonce"], "n");
        assert_eq!(
            claims["ath"],
            oauth::base64(&Sha256::digest(b"the-token"), true)
        );
        let mut point = vec![4u8];
        point.extend(decode(header["jwk"]["x"].as_str().unwrap()));
        point.extend(decode(header["jwk"]["y"].as_str().unwrap()));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &decode(parts[2]),
            )
            .expect("the proof verifies with the key it names");
        // Each proof is new.
        let again = key.prove(&r).unwrap();
        let claims2: Value =
            serde_json::from_slice(&decode(again.split('.').nth(1).unwrap())).unwrap();
        assert_ne!(claims["jti"], claims2["jti"]);
        // Stored and loaded: the same key (same thumbprint).
        let back = DpopKey::from_stored(&key.stored()).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert!(DpopKey::from_stored("not a key").is_err());
        assert!(!format!("{key:?}").contains(&key.stored()));
    }
}
