"""pywebtransport 0.21.1's client (Rust/quinn, draft-15) against the example app's /echo.

Run by ``.venv-pwt21/bin/python`` (Python 3.12, pywebtransport 0.21.1), never imported by
pytest: ``pwt21_client.py URL CHECK [initial_max_data=N ...]``. It prints one JSON object with what
it saw, and exits non-zero only if the client itself broke; the test judges the result.
Everything is bounded by timeouts, so a server that withholds credit fails, not hangs.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from pywebtransport import ClientConfig, WebTransportClient, WebTransportSession

STEP_TIMEOUT = 15.0
UNI_STREAMS = 30


async def credit_granted(session: WebTransportSession) -> dict[str, Any]:
    """The credit this client has granted the server by now, and whether it does
    WebTransport flow control at all."""
    diagnostics = await session.diagnose()
    return {
        "negotiated": diagnostics.flow_control_negotiated,
        "data": diagnostics.local_max_data,
        "uni": diagnostics.local_max_streams_uni,
    }


async def bidi_uni_datagram_close(session: WebTransportSession) -> dict[str, Any]:
    result: dict[str, Any] = {}
    payload = b"hello bidi " * 10_000  # more than one packet, less than any window
    stream = await session.create_bidirectional_stream()
    await stream.write(data=payload, end_stream=True)
    result["bidi"] = await stream.read_all() == payload
    uni = await session.create_unidirectional_stream()
    await uni.write(data=b"hello uni", end_stream=True)
    incoming = session.incoming_unidirectional_streams()
    reply = await anext(incoming)
    result["uni"] = (await reply.read_all()).decode()
    await session.send_datagram(data=b"hello datagram")
    result["datagram"] = (await session.read_datagram()).decode()
    result["credit"] = await credit_granted(session)
    await session.close(error_code=4000, reason="done")
    result["closed"] = session.is_closed
    return result


async def many_uni_streams(session: WebTransportSession) -> dict[str, Any]:
    """UNI_STREAMS client streams at once; each comes back on a server stream."""
    payloads = {f"stream {i:02d} ".encode() * (i + 1) for i in range(UNI_STREAMS)}

    async def send(payload: bytes) -> None:
        stream = await session.create_unidirectional_stream()
        await stream.write(data=payload, end_stream=True)

    echoed: list[bytes] = []

    async def receive() -> None:
        async for stream in session.incoming_unidirectional_streams():
            echoed.append(await stream.read_all())
            if len(echoed) == UNI_STREAMS:
                return

    receiver = asyncio.create_task(receive())
    await asyncio.gather(*(send(payload) for payload in payloads))
    await asyncio.wait({receiver}, timeout=STEP_TIMEOUT)  # ``echoed`` says how far it got
    receiver.cancel()
    # The session must still work after the burst.
    stream = await session.create_bidirectional_stream()
    await stream.write(data=b"still there", end_stream=True)
    after = (await stream.read_all()).decode()
    result = {
        "credit": await credit_granted(session),
        "echoed": len(echoed),
        "all_match": set(echoed) == payloads,
        "after": after,
        "closed_before_close": session.is_closed,
    }
    await session.close(error_code=0, reason="")
    return result


CHECKS = {"basic": bidi_uni_datagram_close, "many": many_uni_streams}


async def main(url: str, check: str, credit: list[str]) -> dict[str, Any]:
    """``credit``: ``initial_max_data=0`` and the like, the client's initial credit."""
    initial = {name: int(value) for name, value in (item.split("=") for item in credit)}
    config = ClientConfig(
        verify_mode=ssl.CERT_NONE,
        connect_timeout=STEP_TIMEOUT,
        read_timeout=STEP_TIMEOUT,
        **initial,
    )
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url)
        try:
            async with asyncio.timeout(3 * STEP_TIMEOUT):
                return await CHECKS[check](session)
        except Exception as exc:  # reported, for the test to show
            return {"error": f"{type(exc).__name__}: {exc}", "closed": session.is_closed}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))))
