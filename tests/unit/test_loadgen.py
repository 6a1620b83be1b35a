"""The load generator's receiving end reads what servers send, however the bytes are split."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.loadgen import KEEP_BODY, Inbox, read_response


def response(status: int, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nX-Event-Position: 7\r\n\r\n"
    return head.encode() + body


async def deliver(inbox: Inbox, data: bytes, cuts: list[int]) -> None:
    """Hand ``data`` over as the event loop would, in pieces ending at ``cuts``.

    Between pieces the reader runs, so it meets both an empty and a full buffer.
    """
    offset = 0
    for end in [*sorted(set(cuts)), len(data)]:
        while offset < end:
            buffer = inbox.get_buffer(-1)
            size = min(len(buffer), end - offset)
            buffer[:size] = data[offset : offset + size]
            inbox.buffer_updated(size)
            offset += size
            await asyncio.sleep(0)


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(
        st.one_of(st.binary(max_size=300), st.integers(70_000, 2_500_000)), min_size=1, max_size=4
    ),
    cut_fractions=st.lists(st.floats(0, 1), max_size=12),
)
def test_responses_split_anywhere_come_out_whole(
    bodies: list[bytes | int], cut_fractions: list[float]
) -> None:
    # Small bodies are kept; large ones (an int here: their size) are only counted.
    sent = [body if isinstance(body, bytes) else bytes(body) for body in bodies]
    wire = b"".join(response(200 + i, body) for i, body in enumerate(sent))
    cuts = [int(f * len(wire)) for f in cut_fractions]

    async def scenario() -> list[tuple[int, str, bytes, int]]:
        inbox = Inbox()
        metered: list[int] = []

        feeding = asyncio.ensure_future(deliver(inbox, wire, cuts))

        def meter(size: int) -> bool:
            metered.append(size)
            return True

        answers = []
        for _ in sent:
            metered.clear()
            # A miscounted body would leave the reader waiting for bytes that never come.
            status, headers, body = await asyncio.wait_for(read_response(inbox, meter), 5)
            answers.append((status, headers["x-event-position"], body, sum(metered)))
        await feeding
        return answers

    answers = asyncio.run(scenario())
    for i, (body, (status, position, kept, counted)) in enumerate(zip(sent, answers, strict=True)):
        assert (status, position) == (200 + i, "7")
        if len(body) <= KEEP_BODY:
            assert (kept, counted) == (body, 0)
        else:
            assert (kept, counted) == (b"", len(body))
