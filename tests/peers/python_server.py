"""Test peer: an MCP server on the official Python SDK (mcp==2.3.0).

Started by the Rust integration tests, never by hand in CI. It binds
127.0.0.1 (port 0 = any free port), prints `READY <port>` once the socket
listens, and keeps its counters in files under --state so they survive a
kill + restart: `initialize` (initialize requests handled) and `counter`
(executions of the side-effecting tool). `--require-bearer TOKEN` answers
401 `invalid_token` to MCP requests without that bearer token.
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import warnings

warnings.simplefilter("ignore")  # the SDK warns about features the tests use on purpose

import uvicorn
from typing import Annotated

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, PlainTextResponse
from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.shared.exceptions import MCPError
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.types import ToolAnnotations

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--state", required=True)
parser.add_argument("--mode", choices=["sse", "json", "stateless"], default="sse")
parser.add_argument("--idle-timeout", type=float, default=None)
parser.add_argument("--require-bearer", metavar="TOKEN", default=None)
parser.add_argument("--resumable", action="store_true", help="keep events for resumption (Last-Event-ID)")
parser.add_argument("--auth", action="store_true", help="be a protected resource with its own OAuth server")
parser.add_argument("--enterprise", action="store_true",
                    help="with --auth: the SDK's jwt-bearer grant for ID-JAGs, and an identity provider under /idp")
parser.add_argument("--dpop", action="store_true",
                    help="with --auth: DPoP-bound tokens, proofs checked on /token and /mcp (dpop_gate.py)")
parser.add_argument("--dpop-nonce-every", type=int, default=0,
                    help="with --dpop: require the server's nonce in proofs, a new one every N accepted requests")
parser.add_argument("--access-ttl", type=float, default=3600, help="seconds an access token lives (--auth)")
parser.add_argument("--cache-ttl-ms", type=int, default=0, help="ttlMs of listings and reads (2026-07-28 wire)")
parser.add_argument("--count-posts", action="store_true", help="count POSTs to /mcp in the `posts` file")
parser.add_argument("--stdio", action="store_true",
                    help="serve on stdin/stdout; counts starts in `starts`, writes its pid to `pid`")
parser.add_argument("--tls", action="store_true",
                    help="serve HTTPS with a certificate for 127.0.0.1 from a CA made at start (its PEM in `ca.pem`)")
parser.add_argument("--stubborn", action="store_true",
                    help="(--stdio) ignore SIGTERM and stay after stdin closes: only SIGKILL ends it")
args = parser.parse_args()

# Bound before the app is built: an OAuth issuer URL names its port.
# Declared TCP, so the server's sockets get TCP_NODELAY: without it its
# multi-write SSE answers stall ~40 ms on the client's delayed ACK.
if not args.stdio:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    base_url = f"{'https' if args.tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"


def bump(name: str) -> int:
    """Adds one to a counter file, atomically (write + rename)."""
    path = os.path.join(args.state, name)
    try:
        with open(path) as f:
            n = int(f.read() or "0")
    except FileNotFoundError:
        n = 0
    n += 1
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(n))
    os.replace(tmp, path)
    return n


def read(name: str) -> int:
    try:
        with open(os.path.join(args.state, name)) as f:
            return int(f.read() or "0")
    except FileNotFoundError:
        return 0


auth_kwargs = {}
provider = None
if args.auth:
    from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
    from auth_provider import InMemoryProvider

    provider = InMemoryProvider(args.access_ttl)
    _register = provider.register_client

    async def counted_register(client_info):
        bump("registrations")
        await _register(client_info)

    provider.register_client = counted_register
    auth_kwargs = {
        "auth_server_provider": provider,
        "auth": AuthSettings(
            issuer_url=base_url,
            resource_server_url=f"{base_url}/mcp",
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=["mcp", "extra"], default_scopes=["mcp"]
            ),
            revocation_options=RevocationOptions(enabled=True),
            required_scopes=["mcp"],
            validate_token_resource=False,
            identity_assertion_enabled=args.enterprise,
        ),
    }

cache_kwargs = {}
if args.cache_ttl_ms:
    from mcp.server.caching import CacheHint

    hint = CacheHint(ttl_ms=args.cache_ttl_ms, scope="private")
    cache_kwargs["cache_hints"] = {
        m: hint for m in ("tools/list", "resources/list", "prompts/list", "resources/read")
    }

app = MCPServer("python-peer", log_level="WARNING", **auth_kwargs, **cache_kwargs)


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def echo(text: str) -> str:
    """Returns its argument."""
    return text


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@app.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=False))
async def counter_increment(delay_ms: int = 0) -> int:
    """Adds one to the persistent counter, then waits delay_ms before answering."""
    n = bump("counter")
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    return n


@app.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=False))
def fail(message: str) -> str:
    """Counts a run, then fails with a JSON-RPC error carrying `message`
    (a tool whose own error may name a session: "Browser session not found")."""
    bump("fail")
    raise MCPError(-32000, message)


@app.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=False))
async def polled_increment(ctx: Context) -> int:
    """Adds one to the counter, then closes the response stream before
    answering (SEP-1699 polling; needs --resumable): the client must resume
    with Last-Event-ID to get the answer."""
    n = bump("counter")
    await ctx.report_progress(1, 2, "counted")
    await ctx.close_sse_stream()
    await asyncio.sleep(0.3)
    await ctx.report_progress(2, 2, "done")
    return n


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def announce(ctx: Context) -> str:
    """Sends `notifications/tools/list_changed`, a message of the session
    rather than of this call: it travels on the client's GET stream."""
    await ctx.session.send_tool_list_changed()
    return "announced"


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def counter_get() -> int:
    """The persistent counter."""
    return read("counter")


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def slow(steps: int, ctx: Context) -> str:
    """Reports `steps` progress notifications, 20 ms apart. A run stopped
    before its end (the client cancelled) counts in the `cancelled` file."""
    finished = False
    bump("slow_started")
    try:
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await ctx.info(f"step {i + 1} of {steps}")
            await asyncio.sleep(0.02)
        finished = True
        return f"done after {steps} steps"
    finally:
        if not finished:
            bump("cancelled")


class Answer(BaseModel):
    ok: bool


@app.tool()
async def confirm(question: str, ctx: Context) -> str:
    """Asks the client (elicitation) and reports its answer."""
    answer = await ctx.elicit(question, Answer)
    data = getattr(answer, "data", None)
    return f"{answer.action}:{data.ok if data is not None else None}"


def ask_deploy(env: str) -> Elicit[Answer]:
    return Elicit(f"Deploy to {env}?", Answer)


@app.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=False))
async def deploy(
    env: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Env"})],
    answer: Annotated[Answer, Resolve(ask_deploy)],
) -> str:
    """Asks for confirmation through a resolver (on 2026-07-28 an
    input-required round the client completes and re-sends; on the
    handshake wire a request on the call's stream), then counts a deploy in
    the `deploys` file. `env` is mirrored in the `Mcp-Param-Env` header,
    which this server checks against the body on 2026-07-28."""
    n = bump("deploys")
    return f"deployed to {env}: {answer.ok} (#{n})"


@app.custom_route("/stats", methods=["GET"])
async def stats(request):
    """Live sessions (SDK internals, test peer only) and the counters."""
    live = len(app.session_manager._server_instances)
    return JSONResponse(
        {"sessions": live, "initialize": read("initialize"), "counter": read("counter"), "refresh": read("refresh")}
    )


@app.custom_route("/test/expire-access", methods=["POST"])
async def expire_access(request):
    """Test hook (--auth): every access token expires now."""
    provider.expire_access()
    return JSONResponse({"ok": True})


if args.enterprise:
    from enterprise_idp import EnterpriseIdp

    idp = EnterpriseIdp(base_url, provider, bump)
    app.custom_route("/idp/token", methods=["POST"])(idp.token_exchange)

    @app.custom_route("/test/id-token", methods=["GET"])
    async def id_token(request):
        """Test hook (--enterprise): an ID token from the enterprise's SSO."""
        return PlainTextResponse(idp.id_token())


@app.custom_route("/test/forget-clients", methods=["POST"])
async def forget_clients(request):
    """Test hook (--auth): the server forgets every registered client (a
    restart of an authorization server that keeps them in memory)."""
    provider.clients.clear()
    return JSONResponse({"ok": True})


@app.custom_route("/test/revoke-refresh", methods=["POST"])
async def revoke_refresh(request):
    """Test hook (--auth): every refresh token is revoked."""
    provider.revoke_refresh()
    return JSONResponse({"ok": True})


@app.resource("counter://total")
def counter_total() -> str:
    """The persistent counter, as a resource."""
    return str(read("counter"))


@app.prompt()
def greet(name: str) -> str:
    """A greeting prompt."""
    return f"Say hello to {name}."


@app.resource("greeting://{name}")
def greeting(name: str) -> str:
    """A greeting for anyone: a resource template."""
    return f"Hello, {name}!"


# MCPServer registers no handler for these two (handshake-wire) methods;
# the low-level server takes them. Each call counts in a file.
import mcp_types
from mcp.server.lowlevel.server import HandlerEntry


async def set_level(ctx, params):
    bump("set_level")
    return mcp_types.EmptyResult()


async def subscribe(ctx, params):
    """Counts, and tells the subscriber its resource changed 200 ms later
    (on the session's own channel: the client's GET stream)."""
    import contextvars

    bump("subscribe")
    session, uri = ctx.session, params.uri

    async def updated():
        await asyncio.sleep(0.2)
        await session.send_resource_updated(uri)

    asyncio.get_running_loop().create_task(updated(), context=contextvars.Context())
    return mcp_types.EmptyResult()


async def unsubscribe(ctx, params):
    bump("unsubscribe")
    return mcp_types.EmptyResult()


for method, model, handler in [
    ("logging/setLevel", mcp_types.SetLevelRequestParams, set_level),
    ("resources/subscribe", mcp_types.SubscribeRequestParams, subscribe),
    ("resources/unsubscribe", mcp_types.UnsubscribeRequestParams, unsubscribe),
]:
    app._lowlevel_server._request_handlers[method] = HandlerEntry(model, handler)


@app.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=False))
async def orphan_then_exit() -> str:
    """(--stdio) Starts a process that keeps this server's stdout open
    (its pid in `orphan`), then exits without answering: a crash that
    closes no pipe."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(args.state, "orphan"), "w") as f:
        f.write(str(child.pid))
    os._exit(3)


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def answer_then_ask(ctx: Context) -> str:
    """(--stdio) Answers at once, then asks the client a question from
    the background and exits before any answer: a question of a session
    that is over."""

    import contextvars

    session = ctx.session

    async def ask_and_exit():
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().call_later(0.3, os._exit, 4)
        bump("asked")
        await session.elicit_form("Still there?", {"type": "object", "properties": {}})

    # Outside the request's context: the session's own channel, as a
    # question of the server's own.
    asyncio.get_running_loop().create_task(ask_and_exit(), context=contextvars.Context())
    return "answered"


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def summarize(text: str, ctx: Context) -> str:
    """Asks the client's model (sampling/createMessage) to summarize `text`;
    returns what the model said and which model it was."""
    result = await ctx.session.create_message(
        [mcp_types.SamplingMessage(role="user", content=mcp_types.TextContent(type="text", text=text))],
        max_tokens=50,
        # On the call's own stream (unrelated, it would go to the GET stream).
        related_request_id=ctx.request_id,
    )
    return f"{result.model}: {result.content.text}"


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def roots(ctx: Context) -> str:
    """Asks the client for its roots (`roots/list`): their URIs, one per line."""
    result = await ctx.session.list_roots()
    return "\n".join(str(r.uri) for r in result.roots)


async def roots_changed(ctx, params):
    bump("roots_changed")


app._lowlevel_server.add_notification_handler(
    "notifications/roots/list_changed", mcp_types.NotificationParams, roots_changed
)


@app.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=False)
def gallery() -> list[mcp_types.ContentBlock]:
    """One block of every kind: text, image, audio, a resource link and an
    embedded resource."""
    return [
        mcp_types.TextContent(type="text", text="a picture"),
        mcp_types.ImageContent(type="image", data="iVBORw0KGgo=", mime_type="image/png"),
        mcp_types.AudioContent(type="audio", data="UklGRg==", mime_type="audio/wav"),
        mcp_types.ResourceLink(type="resource_link", uri="counter://total", name="counter"),
        mcp_types.EmbeddedResource(
            type="resource",
            resource=mcp_types.TextResourceContents(uri="greeting://Ada", text="Hello, Ada!"),
        ),
    ]


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def mislabeled() -> int:
    """Declares an integer result (its outputSchema), then answers a
    string in structuredContent: a server the client must not believe."""
    return 7


# The SDK checks its own tools' output: the lie is told below it.
_call_tool = app._lowlevel_server._request_handlers["tools/call"]


async def call_tool(ctx, params):
    if params.name == "mislabeled":
        bump("mislabeled")
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text="seven")],
            structured_content={"result": "seven"},
        )
    return await _call_tool.handler(ctx, params)


app._lowlevel_server._request_handlers["tools/call"] = HandlerEntry(_call_tool.params_type, call_tool)


NAMES = ["Ada", "Alan", "Barbara", "Grace"]


@app.completion()
async def complete(ref, argument, context):
    """Names for the `name` argument of `greet` and of `greeting://{name}`."""
    from mcp.types import Completion

    if argument.name != "name":
        return None
    values = [n for n in NAMES if n.lower().startswith(argument.value.lower())]
    return Completion(values=values, total=len(values), hasMore=False)


class CountInitialize:
    """ASGI middleware counting JSON-RPC initialize requests in POST bodies."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and b"last-event-id" in dict(scope["headers"]):
            bump("resume")
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.inner(scope, receive, send)
        if args.count_posts and scope["path"] == "/mcp":
            bump("posts")
        chunks = []
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in chunks)
        if scope["path"] == "/token" and b"grant_type=refresh_token" in body:
            bump("refresh")
        try:
            parsed = json.loads(body)
            items = parsed if isinstance(parsed, list) else [parsed]
            if any(isinstance(m, dict) and m.get("method") == "initialize" for m in items):
                bump("initialize")
        except ValueError:
            pass
        pending = list(chunks)

        async def replay():
            return pending.pop(0) if pending else await receive()

        async def watch(message):
            if message["type"] == "http.response.start" and message["status"] == 401 and scope["path"] == "/mcp":
                bump("unauthorized")
            await send(message)

        return await self.inner(scope, replay, watch)


class MemoryEventStore(EventStore):
    """Every event kept in memory, so a stream can resume after any id."""

    def __init__(self):
        self.events = []  # (event id, stream id, message or None for priming)

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        at = next((i for i, (e, _, _) in enumerate(self.events) if e == last_event_id), None)
        if at is None:
            return None
        stream_id = self.events[at][1]
        for event_id, sid, message in self.events[at + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


resumable = {"event_store": MemoryEventStore(), "retry_interval": 200} if args.resumable else {}
starlette_app = app.streamable_http_app(
    json_response=args.mode == "json",
    stateless_http=args.mode == "stateless",
    session_idle_timeout=args.idle_timeout,
    **resumable,
)


class RequireBearer:
    """ASGI middleware: with --require-bearer, MCP requests without exactly
    `Authorization: Bearer TOKEN` get the 401 a resource server sends for a
    bad token (RFC 6750). /stats stays open for the test harness."""

    def __init__(self, inner, token):
        self.inner = inner
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/stats":
            return await self.inner(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization")
        if given == self.expected:
            return await self.inner(scope, receive, send)
        body = json.dumps({"error": "invalid_token", "error_description": "missing or wrong bearer token"}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer error="invalid_token"'),
            ],
        })
        await send({"type": "http.response.body", "body": body})


if args.stdio:
    os.makedirs(args.state, exist_ok=True)
    bump("starts")
    with open(os.path.join(args.state, "pid"), "w") as f:
        f.write(str(os.getpid()))
    if args.stubborn:
        import signal
        import time

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    app.run("stdio")
    if args.stubborn:
        time.sleep(3600)
    sys.exit(0)

asgi_app = CountInitialize(starlette_app)
if args.require_bearer is not None:
    asgi_app = RequireBearer(asgi_app, args.require_bearer)
if args.dpop:
    from dpop_gate import DpopGate

    asgi_app = DpopGate(asgi_app, base_url, bump, args.dpop_nonce_every)

os.makedirs(args.state, exist_ok=True)
tls_kwargs = {}
if args.tls:
    # A CA of this run's own, and a certificate it signs for 127.0.0.1:
    # the client under test trusts `ca.pem` and nothing else.
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(minutes=5), not_valid_after=now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-recovery test CA")])
    ca = (
        x509.CertificateBuilder(subject_name=ca_name, issuer_name=ca_name, public_key=ca_key.public_key(),
                                serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder(subject_name=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                                issuer_name=ca_name, public_key=key.public_key(),
                                serial_number=x509.random_serial_number(), **valid)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    for name, data in [
        ("ca.pem", pem(ca)),
        ("cert.pem", pem(leaf)),
        ("key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())),
    ]:
        with open(os.path.join(args.state, name), "wb") as f:
            f.write(data)
    tls_kwargs = dict(ssl_certfile=os.path.join(args.state, "cert.pem"),
                      ssl_keyfile=os.path.join(args.state, "key.pem"))
print(f"READY {sock.getsockname()[1]}", flush=True)
config = uvicorn.Config(asgi_app, log_level="warning", lifespan="on", **tls_kwargs)
asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
