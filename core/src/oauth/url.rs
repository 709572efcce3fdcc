//! Encodings, the endpoint policy, canonical resources and where discovery
//! looks.

use super::*;

/// Percent-encodes for a query or form value (RFC 3986 unreserved kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded query component (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The pairs of a query string.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The parts of an absolute http(s) URL that OAuth reasons about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`, lowercase.
    pub scheme: String,
    /// The host, lowercase, without brackets.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The path, `/` when empty, without query or fragment.
    pub path: String,
}

impl Url {
    /// Parses an absolute http(s) URL.
    pub fn parse(url: &str) -> Result<Url, OAuthError> {
        let bad = || OAuthError::Endpoint(format!("not an absolute http(s) URL: {url:?}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let path = rest[end..].split(['?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or("");
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h.split_once(']').ok_or_else(bad)?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => default_port,
        };
        if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }

    /// `scheme://host:port`, the origin a token belongs to.
    pub fn origin(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}", self.scheme, host, self.port)
    }

    /// Whether the host is a loopback address (or `localhost`).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host.starts_with("127.")
            || self.host == "::1"
            || self.host.ends_with(".localhost")
    }
}

/// Whether two URLs share an origin (scheme, host, port).
pub fn same_origin(a: &str, b: &str) -> bool {
    matches!((Url::parse(a), Url::parse(b)), (Ok(a), Ok(b)) if a.origin() == b.origin())
}

/// Refuses an authorization or token endpoint a credential must not go
/// to: anything but HTTPS, except on loopback.
pub fn check_endpoint(url: &str) -> Result<(), OAuthError> {
    let u = Url::parse(url)?;
    if u.scheme == "https" || u.is_loopback() {
        Ok(())
    } else {
        Err(OAuthError::Endpoint(format!(
            "{} must use HTTPS",
            u.origin()
        )))
    }
}

/// The canonical resource identifier of an MCP server (RFC 8707): the URL
/// without fragment or query, scheme and host lowercase, no trailing slash
/// on an empty path.
pub fn canonical_resource(server_url: &str) -> Result<String, OAuthError> {
    let u = Url::parse(server_url)?;
    let default = matches!((u.scheme.as_str(), u.port), ("http", 80) | ("https", 443));
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    let authority = if default {
        host
    } else {
        format!("{host}:{}", u.port)
    };
    let path = if u.path == "/" { "" } else { u.path.as_str() };
    Ok(format!("{}://{}{}", u.scheme, authority, path))
}

pub(super) fn origin_and_path(url: &str) -> Result<(String, String), OAuthError> {
    let u = Url::parse(url)?;
    let canonical = canonical_resource(url)?;
    let origin =
        canonical[..canonical.len() - if u.path == "/" { 0 } else { u.path.len() }].to_owned();
    let path = if u.path == "/" {
        String::new()
    } else {
        u.path.trim_end_matches('/').to_owned()
    };
    Ok((origin, path))
}

/// Where to look for the protected resource metadata of `server_url`, in
/// order: the `resource_metadata` of the 401, then the path-specific
/// well-known URI, then the root one (RFC 9728 §3, MCP 2025-11-25).
pub fn protected_resource_metadata_urls(
    server_url: &str,
    resource_metadata: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let (origin, path) = origin_and_path(server_url)?;
    let mut urls: Vec<String> = resource_metadata.map(str::to_owned).into_iter().collect();
    if !path.is_empty() {
        urls.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    urls.dedup();
    Ok(urls)
}

/// Where to look for an authorization server's metadata, in the MCP
/// specification's order: OAuth (RFC 8414) then OpenID, path-inserted
/// forms first for an issuer with a path.
pub fn authorization_server_metadata_urls(issuer: &str) -> Result<Vec<String>, OAuthError> {
    let (origin, path) = origin_and_path(issuer)?;
    Ok(if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    })
}
