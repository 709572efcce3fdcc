"""Runs tests/peers/python_server.py (started with --tls) for the bench
part `tls`, adding two things and changing nothing else:

- GET /tls-stats: the TLS handshakes the server completed so far, and how
  many of them resumed an earlier session (a TLS 1.3 ticket), from its SSL
  context's session_stats(). Over TLS a TCP proxy sees only ciphertext, so
  this is the one place that can tell a full handshake from a resumed one.
- --close: every response carries `Connection: close`, so uvicorn (h11)
  closes the connection once the response is complete (for an SSE answer,
  when its stream ends) and the client has to open a new TCP connection and
  do a new TLS handshake for its next request. That is how the bench
  measures "without kept connections": the standard HTTP/1.1 signal, which
  every client honours, applied alike to all of them. A proxy cannot do it
  over TLS: it cannot see where a response ends.

Usage: python tls_peer.py [--close] <python_server.py> [its arguments...]
"""

import json
import runpy
import sys

import uvicorn

close = len(sys.argv) > 1 and sys.argv[1] == "--close"
if close:
    del sys.argv[1]

# The server's SSL context, caught as uvicorn builds it (its default
# factory: the same certificate, key and settings as without this wrapper).
contexts = []


def catch_context(config, default):
    ctx = default()
    contexts.append(ctx)
    return ctx


class Bench:
    """ASGI middleware: /tls-stats, and `Connection: close` with --close."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        reply = send_closing if close else send
        if scope["path"] == "/tls-stats":
            s = contexts[0].session_stats() if contexts else {}
            body = json.dumps({"handshakes": s.get("accept_good", 0), "resumed": s.get("hits", 0)}).encode()
            await reply({
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            })
            return await reply({"type": "http.response.body", "body": body})
        return await self.inner(scope, receive, reply)


_init = uvicorn.Config.__init__


def init(self, app, *args, **kwargs):
    if kwargs.get("ssl_certfile"):
        kwargs["ssl_context_factory"] = catch_context
    _init(self, Bench(app), *args, **kwargs)


uvicorn.Config.__init__ = init
server = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(server, run_name="__main__")
