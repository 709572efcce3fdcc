//! What a 401 or 403 says: `WWW-Authenticate` (RFC 9110, RFC 6750, RFC 9728).

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme (`Bearer`, `Basic`...), as sent.
    pub scheme: String,
    /// Its `name=value` parameters (names lowercased, quoted values unquoted).
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a Bearer (or DPoP, RFC 9449 §7.1) challenge tells a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `invalid_token`, `insufficient_scope`, `invalid_request`...
    pub error: Option<String>,
    /// The server's explanation.
    pub error_description: Option<String>,
    /// Scopes the request needs (space-separated).
    pub scope: Option<String>,
    /// Where the protected resource metadata is (RFC 9728).
    pub resource_metadata: Option<String>,
}

impl BearerChallenge {
    /// The Bearer challenge of a `WWW-Authenticate` header, if there is
    /// one, else its DPoP challenge: both name the same parameters.
    pub fn from_header(header: &str) -> Option<Self> {
        let challenges = parse_www_authenticate(header);
        let scheme = |name: &str| {
            challenges
                .iter()
                .find(|c| c.scheme.eq_ignore_ascii_case(name))
        };
        let c = scheme("bearer").or_else(|| scheme("dpop"))?;
        let get = |n: &str| c.param(n).map(str::to_owned);
        Some(BearerChallenge {
            error: get("error"),
            error_description: get("error_description"),
            scope: get("scope"),
            resource_metadata: get("resource_metadata"),
        })
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges (RFC 9110
/// §11.6.1): several challenges separated by commas, parameters as tokens
/// or quoted strings with backslash escapes. Malformed parts are skipped,
/// never a panic.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/=".contains(&c);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return out;
        }
        // A token: either a new scheme, or a parameter name of the current one.
        let start = i;
        while i < b.len() && is_tchar(b[i]) && b[i] != b'=' {
            i += 1;
        }
        if start == i {
            i += 1; // a stray character
            continue;
        }
        let word = &header[start..i];
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        let is_param = j < b.len() && b[j] == b'=' && !out.is_empty() && {
            // `token68` values end in '=' too; a parameter has a value after it.
            let mut k = j + 1;
            while k < b.len() && b[k] == b'=' {
                k += 1;
            }
            k == j + 1
        };
        if !is_param {
            // A new challenge; an optional token68 may follow, which we skip.
            out.push(Challenge {
                scheme: word.to_owned(),
                params: Vec::new(),
            });
            let mut k = i;
            while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
                k += 1;
            }
            let t68 = k;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b"-._~+/".contains(&b[k])) {
                k += 1;
            }
            let chars = k > t68;
            while k < b.len() && b[k] == b'=' {
                k += 1;
            }
            while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
                k += 1;
            }
            if chars && (k == b.len() || b[k] == b',') {
                i = k;
            }
            continue;
        }
        i = j + 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                v.push(ch);
                i += ch.len_utf8();
            }
            i += 1; // the closing quote (or the end)
            v
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' && b[i] != b' ' && b[i] != b'\t' {
                i += 1;
            }
            header[s..i].to_owned()
        };
        if let Some(c) = out.last_mut() {
            c.params.push((word.to_ascii_lowercase(), value));
        }
    }
}
