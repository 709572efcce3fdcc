//! DPoP, sender-constrained tokens (RFC 9449), as data: what a proof
//! claims, the unsigned JWT a signer signs, and when a server's answer asks
//! for the request again with its nonce. The core holds no key and reads
//! no clock: the caller signs (ES256 in the clients) and supplies the time
//! and the random `jti` through a [`DpopProver`].

use super::*;

/// The header a proof travels in.
pub const DPOP_HEADER: &str = "DPoP";

/// The header a server names its nonce in.
pub const DPOP_NONCE_HEADER: &str = "DPoP-Nonce";

/// What one proof is for.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct ProofRequest<'a> {
    /// The request's method (`htm`).
    pub method: &'a str,
    /// The request's URL; the proof names it without query and fragment
    /// (`htu`, see [`htu`]).
    pub url: &'a str,
    /// The server's nonce, once it gave one (`nonce`).
    pub nonce: Option<&'a str>,
    /// The access token the request presents, for a resource request: the
    /// proof carries its hash (`ath`). `None` at the token endpoint.
    pub access_token: Option<&'a str>,
}

impl<'a> ProofRequest<'a> {
    /// A proof for `method` `url`.
    pub fn new(method: &'a str, url: &'a str) -> Self {
        ProofRequest {
            method,
            url,
            nonce: None,
            access_token: None,
        }
    }
}

impl fmt::Debug for ProofRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofRequest")
            .field("method", &self.method)
            .field("url", &crate::error::redact_url(self.url))
            .field("nonce", &self.nonce.is_some())
            .finish_non_exhaustive()
    }
}

/// Makes a signed proof (a compact JWT, `typ` `dpop+jwt`) for a request,
/// or says why it cannot. The caller makes it: it needs the key, a clock
/// and randomness.
pub type DpopProver = dyn Fn(&ProofRequest<'_>) -> Result<String, String> + Send + Sync;

/// A URL as a proof's `htu` names it: without query and fragment (RFC 9449
/// §4.2).
pub fn htu(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// The unsigned proof, `base64url(header).base64url(claims)`, for the
/// public key `jwk` (no private member) signing with `alg`, issued at
/// `iat` (Unix seconds) with the unique `jti`; `ath` is the base64url
/// SHA-256 of the access token when the request presents one. The signer
/// appends `.` and its signature.
pub fn proof_signing_input(
    jwk: &Value,
    alg: &str,
    request: &ProofRequest<'_>,
    iat: u64,
    jti: &str,
    ath: Option<&str>,
) -> String {
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
    let mut claims = serde_json::json!({
        "jti": jti,
        "htm": request.method,
        "htu": htu(request.url),
        "iat": iat,
    });
    if let Some(n) = request.nonce {
        claims["nonce"] = Value::from(n);
    }
    if let Some(a) = ath {
        claims["ath"] = Value::from(a);
    }
    format!(
        "{}.{}",
        base64(header.to_string().as_bytes(), true),
        base64(claims.to_string().as_bytes(), true)
    )
}

/// The nonce to send the request again with, when an answer asks for one:
/// a token endpoint's 400 `use_dpop_nonce` (RFC 9449 §8) or a resource's
/// 401 whose challenge says `use_dpop_nonce` (§9), each naming the nonce in
/// `DPoP-Nonce`. A nonce that is not a plain visible-ASCII string (§8.1's
/// syntax, at most 1 KiB) is not one: nothing to send again.
pub fn nonce_challenge(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Option<String> {
    let nonce = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(DPOP_NONCE_HEADER))
        .map(|(_, v)| v.trim())?;
    let asked = match status {
        400 => json_object(body)
            .ok()
            .and_then(|m| string(&m, "error"))
            .is_some_and(|e| e == "use_dpop_nonce"),
        401 => headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
            .flat_map(|(_, v)| parse_www_authenticate(v))
            .any(|c| c.param("error") == Some("use_dpop_nonce")),
        _ => false,
    };
    (asked && valid_nonce(nonce)).then(|| nonce.to_owned())
}

/// A fresh nonce a server names on any answer (RFC 9449 §8.2, §9: it may
/// give the next one with a success), if well formed.
pub fn offered_nonce(headers: &[(&str, &str)]) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(DPOP_NONCE_HEADER))
        .map(|(_, v)| v.trim())
        .filter(|n| valid_nonce(n))
        .map(str::to_owned)
}

/// RFC 9449 §8.1: `nonce = 1*NQCHAR` (visible ASCII but `"` and `\`);
/// bounded so a server cannot make every proof huge.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 1024
        && n.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// `request` with a proof in its `DPoP` header (any earlier one replaced).
pub fn with_proof(mut request: HttpRequest, proof: String) -> HttpRequest {
    request
        .headers
        .retain(|(k, _)| !k.as_str().eq_ignore_ascii_case(DPOP_HEADER));
    request
        .headers
        .push((Text::Static(DPOP_HEADER), Text::Secret(Token::raw(&proof))));
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_drops_query_and_fragment() {
        assert_eq!(
            htu("https://a.example/token?x=1#f"),
            "https://a.example/token"
        );
        assert_eq!(htu("https://a.example/mcp#f"), "https://a.example/mcp");
        assert_eq!(htu("https://a.example/mcp"), "https://a.example/mcp");
    }

    #[test]
    fn the_signing_input_names_the_request() {
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "X", "y": "Y"});
        let mut r = ProofRequest::new("POST", "https://rs.example/mcp?q");
        r.nonce = Some("n-1");
        let input = proof_signing_input(&jwk, "ES256", &r, 1_700_000_000, "j-1", Some("h"));
        let (h, c) = input.split_once('.').unwrap();
        let decode = |s: &str| -> Value {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap();
            serde_json::from_slice(&b).unwrap()
        };
        let (h, c) = (decode(h), decode(c));
        assert_eq!(h["typ"], "dpop+jwt");
        assert_eq!(h["jwk"]["x"], "X");
        assert_eq!(c["htu"], "https://rs.example/mcp");
        assert_eq!(c["htm"], "POST");
        assert_eq!(c["nonce"], "n-1");
        assert_eq!(c["ath"], "h");
        assert_eq!(c["iat"], 1_700_000_000);
        assert!(!format!("{r:?}").contains("n-1"));
    }

    #[test]
    fn nonce_challenges_from_either_server() {
        let as_body = br#"{"error":"use_dpop_nonce"}"#;
        let h = [("DPoP-Nonce", "abc")];
        assert_eq!(nonce_challenge(400, &h, as_body).as_deref(), Some("abc"));
        // Another error, or no nonce: nothing to retry with.
        assert_eq!(
            nonce_challenge(400, &h, br#"{"error":"invalid_grant"}"#),
            None
        );
        assert_eq!(nonce_challenge(400, &[], as_body), None);
        let rs = [
            (
                "www-authenticate",
                r#"DPoP error="use_dpop_nonce", resource_metadata="x""#,
            ),
            ("dpop-nonce", "n2"),
        ];
        assert_eq!(nonce_challenge(401, &rs, b"").as_deref(), Some("n2"));
        let other = [
            ("www-authenticate", r#"DPoP error="invalid_token""#),
            ("dpop-nonce", "n2"),
        ];
        assert_eq!(nonce_challenge(401, &other, b""), None);
        // A nonce that would break the proof or the header: refused.
        for bad in ["", "a\"b", "a b", "é", &"x".repeat(2000)] {
            assert_eq!(nonce_challenge(400, &[("DPoP-Nonce", bad)], as_body), None);
        }
        assert_eq!(
            offered_nonce(&[("DPoP-Nonce", "n3")]).as_deref(),
            Some("n3")
        );
    }

    #[test]
    fn a_proof_replaces_the_last_one_and_never_shows() {
        let r = metadata_request("https://as.example/x");
        let r = with_proof(r, "first".into());
        let r = with_proof(r, "second".into());
        assert_eq!(r.header("dpop"), Some("second"));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k.as_str() == "DPoP")
                .count(),
            1
        );
        assert!(!format!("{r:?}").contains("second"));
    }
}
