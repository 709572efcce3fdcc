"""Test peer: the enterprise side of SEP-990 for the Python peer
(`python_server.py --auth --enterprise`). The MCP authorization server is
the official SDK's (`identity_assertion_enabled`: its token endpoint takes
the RFC 7523 jwt-bearer grant and hands the ID-JAG to the provider's
`exchange_identity_assertion`, implemented here with the checks the SDK's
docstring lists). The identity provider is this module's, on the same
port under /idp: an RFC 8693 token exchange turning a person's ID token
into an ID-JAG for an authorization server and a resource, signed with a
key made at start. Counters: `token_exchanges`, `id_jag_grants`,
`id_jag_refused`.
"""

import json
import secrets
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from mcp.server.auth.provider import AccessToken, TokenError
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.responses import JSONResponse

ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
CLIENT_ID, CLIENT_SECRET, IDP_CLIENT = "enterprise-client", "enterprise-secret", "idp-client"


class EnterpriseIdp:
    def __init__(self, base_url, provider, bump):
        self.base_url = base_url.rstrip("/")
        self.issuer = f"{self.base_url}/idp"
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.provider = provider
        self.bump = bump
        self.jtis = set()
        # The MCP client the enterprise registered with this authorization
        # server: confidential (the SDK gives the grant to no other).
        provider.clients[CLIENT_ID] = OAuthClientInformationFull(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=["http://127.0.0.1/unused"],
            grant_types=["urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token"],
            token_endpoint_auth_method="client_secret_basic",
            scope="mcp",
        )
        provider.exchange_identity_assertion = self.exchange_identity_assertion

    def id_token(self, sub="alice@example.com"):
        """What the enterprise's single sign-on gives the person."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": sub, "aud": IDP_CLIENT, "iat": now, "exp": now + 600}
        return jwt.encode(claims, self.key, algorithm="ES256")

    async def token_exchange(self, request):
        """RFC 8693 at the identity provider: ID token -> ID-JAG."""
        form = dict(await request.form())
        refuse = lambda why: JSONResponse({"error": "invalid_request", "error_description": why}, status_code=400)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return refuse("grant_type")
        if form.get("requested_token_type") != ID_JAG:
            return refuse("requested_token_type")
        if form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:id_token":
            return refuse("subject_token_type")
        if form.get("client_id") != IDP_CLIENT:
            return refuse("client_id")
        try:
            person = jwt.decode(form.get("subject_token", ""), self.key.public_key(), algorithms=["ES256"],
                                audience=IDP_CLIENT, issuer=self.issuer)
        except jwt.PyJWTError as e:
            return JSONResponse({"error": "invalid_grant", "error_description": str(e)}, status_code=400)
        if not form.get("audience") or not form.get("resource"):
            return refuse("audience and resource")
        self.bump("token_exchanges")
        now = int(time.time())
        jag = jwt.encode(
            {"iss": self.issuer, "sub": person["sub"], "aud": form["audience"], "client_id": CLIENT_ID,
             "resource": form["resource"], "scope": "mcp", "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
            self.key, algorithm="ES256", headers={"typ": "oauth-id-jag+jwt"})
        return JSONResponse({"access_token": jag, "issued_token_type": ID_JAG, "token_type": "N_A", "expires_in": 300})

    async def exchange_identity_assertion(self, client, params):
        """Leg 2 at the SDK's token endpoint, checked as its docstring asks."""
        try:
            if jwt.get_unverified_header(params.assertion).get("typ") != "oauth-id-jag+jwt":
                raise jwt.InvalidTokenError("typ")
            grant = jwt.decode(params.assertion, self.key.public_key(), algorithms=["ES256"],
                               audience=[self.base_url, f"{self.base_url}/"], issuer=self.issuer)
            if grant.get("jti") in self.jtis:
                raise jwt.InvalidTokenError("replayed")
            if grant.get("client_id") != client.client_id:
                raise jwt.InvalidTokenError("client_id")
            if grant.get("resource") != f"{self.base_url}/mcp":
                raise jwt.InvalidTokenError("resource")
        except jwt.PyJWTError as e:
            self.bump("id_jag_refused")
            raise TokenError(error="invalid_grant", error_description=str(e))
        self.jtis.add(grant["jti"])
        self.bump("id_jag_grants")
        access = secrets.token_urlsafe(24)
        expires = int(time.time() + self.provider.access_ttl) + 1
        self.provider.access[access] = AccessToken(
            token=access, client_id=client.client_id, scopes=["mcp"], expires_at=expires, resource=grant["resource"])
        # No refresh token: a new ID-JAG is the way to a new token.
        return OAuthToken(access_token=access, token_type="Bearer", expires_in=int(self.provider.access_ttl),
                          scope="mcp")
