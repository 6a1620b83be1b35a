"""``python -m bench.ceiling``: how fast the load generator itself can go.

A figure says something about a server only while the client is not what
bounds it. This measures the client against a server that costs next to
nothing: threads answering each request with one ``sendall`` of a response
held in memory (the kernel does the work, without the GIL). It prints the
requests per second of small answers (1, 16 and 64 connections) and the
MB/s of 1 MiB answers (1 and 16), to set beside the figures of
``python -m bench``.
"""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.loadgen import Request, drive

MIB = 1 << 20


def _answer(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: x/y\r\n\r\n"
    return head.encode() + body


def _serve(listener: socket.socket, answer: bytes) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed: the measurement is over
            return
        threading.Thread(target=_converse, args=(conn, answer), daemon=True).start()


def _converse(conn: socket.socket, answer: bytes) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    with conn:
        while True:
            try:
                data = conn.recv(1 << 16)
                if not data:
                    return
                pending += data
                while b"\r\n\r\n" in pending:
                    _, pending = pending.split(b"\r\n\r\n", 1)
                    conn.sendall(answer)
            except OSError:  # the client left, mid-answer when its window closed
                return


def measure(body_size: int, readers: int, scratch: Path, duration: float = 3.0) -> dict[str, Any]:
    """The load generator's summary against the costless server answering ``body_size`` bytes."""
    # Port 0: the kernel picks a free one, with no window for another process to take it.
    listener = socket.create_server(("127.0.0.1", 0))
    host, port = listener.getsockname()[:2]
    threading.Thread(target=_serve, args=(listener, _answer(bytes(body_size))), daemon=True).start()
    try:
        clients: list[list[list[Request]]] = [[[("GET", "/", {}, None)]] for _ in range(readers)]
        spec = {"host": host, "port": port, "warmup": 0.5, "duration": duration, "clients": clients}
        return drive(spec, scratch)
    finally:
        listener.close()


def main() -> None:
    """Print the ceilings."""
    with tempfile.TemporaryDirectory(prefix="theplaylist-ceiling-") as scratch:
        for readers in (1, 16, 64):
            small = measure(20, readers, Path(scratch))
            print(f"small answers, {readers:>2} connections: {small['throughput']:>9,.0f} req/s")
        for readers in (1, 16):
            large = measure(MIB, readers, Path(scratch))
            mbps = large["megabytes_per_second"]
            print(f"1 MiB answers, {readers:>2} connections: {mbps:>9,.0f} MB/s")


if __name__ == "__main__":
    main()
