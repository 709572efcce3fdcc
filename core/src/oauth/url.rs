//! Encodings, the endpoint policy, canonical resources and where discovery
//! looks.

use super::*;

/// Percent-encodes for a query or form value: RFC 3986 unreserved kept,
/// everything else `%XX` (a space too: `%20` decodes the same with a form
/// decoder and a plain one, which servers reading HTTP Basic credentials
/// do not all agree on).
pub fn percent_encode(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// Decodes a percent-encoded query component (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    ::url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
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
    ::url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The parts of an absolute http(s) URL that OAuth reasons about, parsed
/// by the WHATWG rules (the `url` crate), so that what is checked is what
/// an HTTP client will connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`, lowercase.
    pub scheme: String,
    /// The host as serialized (lowercase; an IPv6 address without
    /// brackets).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The path, `/` when empty, without query or fragment.
    pub path: String,
    /// Whether the host is a loopback address or exactly `localhost`.
    loopback: bool,
}

impl Url {
    /// Parses an absolute http(s) URL.
    pub fn parse(url: &str) -> Result<Url, OAuthError> {
        let bad = || {
            OAuthError::Endpoint(format!(
                "not an absolute http(s) URL: {:?}",
                crate::error::redact_url(url)
            ))
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let parsed = ::url::Url::parse(url).map_err(|_| bad())?;
        let scheme = parsed.scheme().to_owned();
        if scheme != "http" && scheme != "https" {
            return Err(bad());
        }
        let port = parsed.port_or_known_default().ok_or_else(bad)?;
        let (host, loopback) = match parsed.host().ok_or_else(bad)? {
            ::url::Host::Domain(d) => (d.to_owned(), d == "localhost"),
            ::url::Host::Ipv4(ip) => (ip.to_string(), ip.is_loopback()),
            ::url::Host::Ipv6(ip) => (ip.to_string(), ip.is_loopback()),
        };
        Ok(Url {
            scheme,
            host,
            port,
            path: parsed.path().to_owned(),
            loopback,
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

    /// Whether the host is a loopback address (`127.0.0.0/8`, `::1`) or
    /// exactly `localhost`, decided on the parsed host, never on a prefix
    /// of its text (`127.attacker.example` is a domain name).
    pub fn is_loopback(&self) -> bool {
        self.loopback
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
