"""The benchmarks' CPU split credits each process's CPU time to the side that spent it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.cpu import describe, per_request, snapshot

# A stand-in for a server: its worker, a child as uvicorn's are, burns CPU.
WORKER = """
import sys, time
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""
SERVER = f"""
import subprocess, sys
subprocess.run([sys.executable, "-c", {WORKER!r}], check=True)
"""


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_servers_workers_and_the_load_generator_are_each_credited_their_own_cpu() -> None:
    before = snapshot()
    # "bench.server" on the command line is how a server is recognised.
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, "bench.server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "burnt\n"
        burn(0.2)  # this process stands for the load generator
        after = snapshot()
    finally:
        server.communicate("", timeout=30)
    # Over 4 requests; the server side also paid two interpreters' start-up.
    figures = per_request(before, after, requests=4)
    assert 100 <= figures["server"] < 400
    # /proc counts CPU in clock ticks (10 ms), sampled: 0.2 s burnt can read as 0.19.
    assert 45 <= figures["load generator"] < 150
    assert 0 < figures["busy_cores"] <= (os.cpu_count() or 1)
    assert describe([figures]).startswith("ms of CPU per request: server ")
