"""Official Python SDK client (mcp==2.3.0) for the cross-client comparison.

Run with the peer venv: tests/peers/.venv/bin/python benches/clients/py_client.py URL N
(URL `stdio:COMMAND LINE`: the server as a child over stdio. With
BENCH_CA_FILE set, an https URL's server is trusted through that CA only.)
Connects (ClientSession over streamable HTTP), makes 20 warm-up calls, then
N sequential tools/call "echo", and prints one JSON line: the loop's wall
time and the process's CPU time (user+sys, getrusage) spent in the loop, and
the whole process's CPU time at the end (interpreter start and imports
included).
"""

import asyncio
import json
import resource
import sys
import time

T_START = time.perf_counter()

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import ssl  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@asynccontextmanager
async def with_ca(url: str, ca: str):
    """The SDK takes an httpx2 client for any HTTP setting: this one has the
    SDK's own defaults (create_mcp_http_client: its timeouts, no redirects)
    but trusts only the CA in the file `ca`. The SDK does not close a
    client it was given, so this does."""
    import httpx2
    from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

    async with httpx2.AsyncClient(
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        verify=ssl.create_default_context(cafile=ca),
    ) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


def transport(url: str):
    """`stdio:COMMAND LINE` runs the server as a child over stdio."""
    if url.startswith("stdio:"):
        words = shlex.split(url[len("stdio:"):])
        return stdio_client(StdioServerParameters(command=words[0], args=words[1:]))
    ca = os.environ.get("BENCH_CA_FILE")
    if ca:
        return with_ca(url, ca)
    return streamable_http_client(url)


async def main(url: str, n: int) -> dict:
    async with transport(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            for _ in range(20):
                await session.call_tool("echo", {"text": "hi"})
            w0, c0 = time.perf_counter(), cpu()
            for _ in range(n):
                result = await session.call_tool("echo", {"text": "hi"})
            w1, c1 = time.perf_counter(), cpu()
            assert result.content[0].text == "hi", result
    return {"client": "python", "calls": n, "wall_s": w1 - w0, "cpu_s": c1 - c0}


if __name__ == "__main__":
    out = asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    out["process_cpu_s"] = cpu()
    out["process_wall_s"] = time.perf_counter() - T_START
    print(json.dumps(out), flush=True)
