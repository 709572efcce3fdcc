"""Test peer: DPoP (RFC 9449) in front of the Python peer's OAuth server and
MCP endpoint (`python_server.py --auth --dpop`). The official SDK issues
Bearer tokens only; this ASGI layer makes them sender-constrained, the way
an authorization server and resource server supporting DPoP do:

- `POST /token` needs a valid proof (ES256, `typ` dpop+jwt, `htm`/`htu` of
  the token endpoint, fresh `iat` and `jti`); the answer's tokens are bound
  to the proof key's thumbprint and their `token_type` becomes `DPoP`. A
  refresh token is refused unless the proof is signed by the key it is
  bound to.
- `/mcp` needs `Authorization: DPoP <token>` with a proof signed by the
  token's key, naming the request (`htm`, `htu`, `ath`); on success the
  request goes on to the SDK as `Bearer <token>`. A bound token presented
  as Bearer, or with another key's proof, is refused (counted).
- With `--dpop-nonce-every N`, both require the server's current nonce in
  the proof and change it every N accepted requests: a stale proof gets
  `use_dpop_nonce` with the new nonce in `DPoP-Nonce` (RFC 9449 §8, §9).

Counters (files in the state directory, read by /stats-style helpers):
`dpop_nonce_challenges`, `dpop_refused`, `bearer_presented`.
"""

import base64
import hashlib
import json
import secrets
import time

import jwt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict) -> str:
    """RFC 7638: the required members, sorted, no whitespace."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


class DpopGate:
    def __init__(self, inner, base_url, bump, nonce_every=0):
        self.inner = inner
        self.base_url = base_url
        self.bump = bump
        self.nonce_every = nonce_every
        self.nonce = secrets.token_urlsafe(12)
        self.accepted = 0
        self.jtis = set()
        self.bound = {}  # access or refresh token -> jkt

    def rotate(self):
        if self.nonce_every:
            self.accepted += 1
            if self.accepted % self.nonce_every == 0:
                self.nonce = secrets.token_urlsafe(12)

    def check(self, proof, method, url, token=None):
        """The proof's key thumbprint, or (None, why)."""
        if not proof or "," in proof:
            return None, "one DPoP proof needed"
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            return None, "not a JWT"
        jwk = header.get("jwk") or {}
        if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256" or "d" in jwk:
            return None, "bad proof header"
        try:
            key = jwt.PyJWK(jwk, algorithm="ES256").key
            claims = jwt.decode(proof, key, algorithms=["ES256"], options={"verify_aud": False})
        except jwt.PyJWTError as e:
            return None, f"signature: {e}"
        if claims.get("htm") != method or claims.get("htu") != url:
            return None, "htm/htu"
        if abs(time.time() - claims.get("iat", 0)) > 60:
            return None, "iat"
        jti = claims.get("jti")
        if not jti or jti in self.jtis:
            return None, "jti replayed"
        if token is not None and claims.get("ath") != b64url(hashlib.sha256(token.encode()).digest()):
            return None, "ath"
        self.jtis.add(jti)
        if self.nonce_every and claims.get("nonce") != self.nonce:
            return None, "nonce"
        return thumbprint(jwk), None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = dict(scope["headers"])
        proof = headers.get(b"dpop", b"").decode()
        if scope["path"] == "/token" and scope["method"] == "POST":
            return await self.token(scope, receive, send, proof)
        if scope["path"].startswith("/mcp"):
            return await self.resource(scope, receive, send, headers, proof)
        return await self.inner(scope, receive, send)

    async def token(self, scope, receive, send, proof):
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        jkt, why = self.check(proof, "POST", f"{self.base_url}/token")
        if jkt is None:
            if why == "nonce":
                self.bump("dpop_nonce_challenges")
                return await reply(send, 400, {"error": "use_dpop_nonce"}, [(b"dpop-nonce", self.nonce.encode())])
            self.bump("dpop_refused")
            return await reply(send, 400, {"error": "invalid_dpop_proof", "error_description": why})
        form = dict(p.split("=", 1) for p in body.decode().split("&") if "=" in p)
        if form.get("grant_type") == "refresh_token":
            from urllib.parse import unquote_plus

            bound = self.bound.get(unquote_plus(form.get("refresh_token", "")))
            if bound is not None and bound != jkt:
                self.bump("dpop_refused")
                return await reply(send, 400, {"error": "invalid_grant", "error_description": "bound to another key"})
        self.rotate()
        sent = []
        chunks = []

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message):
            if message["type"] == "http.response.start":
                sent.append(message)
            else:
                chunks.append(message.get("body", b""))

        await self.inner(scope, replay, capture)
        start = sent[0]
        data = b"".join(chunks)
        if start["status"] == 200:
            answer = json.loads(data)
            for k in ("access_token", "refresh_token"):
                if answer.get(k):
                    self.bound[answer[k]] = jkt
            answer["token_type"] = "DPoP"
            data = json.dumps(answer).encode()
        hs = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        hs.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": start["status"], "headers": hs})
        await send({"type": "http.response.body", "body": data})

    async def resource(self, scope, receive, send, headers, proof):
        auth = headers.get(b"authorization", b"").decode()
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token in self.bound:
            # A bound token without its key: what a thief would send.
            self.bump("bearer_presented")
            return await reply(send, 401, {"error": "invalid_token"},
                               [(b"www-authenticate", b'DPoP error="invalid_token"')])
        if scheme.lower() != "dpop":
            return await self.inner(scope, receive, send)  # the SDK's 401
        jkt, why = self.check(proof, scope["method"], f"{self.base_url}{scope['path']}", token)
        if jkt is None and why == "nonce":
            self.bump("dpop_nonce_challenges")
            return await reply(send, 401, {"error": "use_dpop_nonce"}, [
                (b"www-authenticate", b'DPoP error="use_dpop_nonce"'),
                (b"dpop-nonce", self.nonce.encode()),
            ])
        if jkt is None or self.bound.get(token) != jkt:
            self.bump("dpop_refused")
            return await reply(send, 401, {"error": "invalid_token", "error_description": why or "another key"},
                               [(b"www-authenticate", b'DPoP error="invalid_token"')])
        self.rotate()
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in (b"authorization", b"dpop")]
        scope["headers"].append((b"authorization", f"Bearer {token}".encode()))
        return await self.inner(scope, receive, send)


async def reply(send, status, body, extra=()):
    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra],
    })
    await send({"type": "http.response.body", "body": data})
