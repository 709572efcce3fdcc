"""Runs tests/peers/python_server.py with TCP_NODELAY on its connections.

The peer creates its listening socket as socket.socket(AF_INET, SOCK_STREAM),
whose proto is 0; asyncio only sets TCP_NODELAY on sockets whose proto is
IPPROTO_TCP, so every connection the peer accepts keeps Nagle's algorithm.
uvicorn writes an SSE response in several small writes (head, event, end of
chunks): with Nagle the later ones wait for the client's delayed ACK, up to
40 ms, whenever the client's TCP stack delays it. uvicorn binding its own
socket (a normal deployment) gets proto 6 and TCP_NODELAY. This wrapper makes
the peer's socket an IPPROTO_TCP one and changes nothing else.

Usage: python nodelay_peer.py <python_server.py> [its arguments...]
"""

import runpy
import socket
import sys

_socket = socket.socket


class TcpSocket(_socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None and family == socket.AF_INET and type == socket.SOCK_STREAM and proto in (-1, 0):
            proto = socket.IPPROTO_TCP
        super().__init__(family, type, proto, fileno)


socket.socket = TcpSocket
server = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(server, run_name="__main__")
