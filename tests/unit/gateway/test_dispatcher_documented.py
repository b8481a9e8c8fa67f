"""The gateway's documented send answers (tests/data/gateway) through the dispatcher, without a broker.

The gateway client talks to an httpx mock transport that answers each send with a documented body,
so what the dispatcher publishes is checked against what the real gateway sends, not the simulator.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from aiokafka.structs import ConsumerRecord

from stream_app.contracts import Status, decode_status, exactjson
from stream_app.gateway.client import GatewayClient
from stream_app.gateway.dispatcher import GATEWAY_FALLBACK_REFUSED
from stream_app.gateway.sentlog import SendState
from tests.integration.gateway.helpers import WA_CONTENT, command
from tests.support.gateway_data import payload
from tests.unit.gateway.test_dispatcher_rebalance import TP0, World, rig, until


async def _dispatch(
    answer: dict[str, Any] | None, cmd: dict[str, Any], *, http_status: int = 200, raw: bytes | None = None
) -> tuple[World, list[dict[str, Any]], list[bytes]]:
    world = World()
    loop, _, _ = rig(world)
    calls: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(exactjson.loads(request.content))  # integers of any size, exact
        return httpx.Response(http_status, json=answer)

    client = GatewayClient("http://gw", "k", transport=httpx.MockTransport(handler))
    loop.dispatcher.client = client
    published: list[bytes] = []
    producer = loop.dispatcher.producer
    original = producer.send_and_wait

    async def capture(topic: str, value: bytes | None, **kw: Any) -> None:
        if topic.endswith("delivery-status") and value is not None:
            published.append(value)
        await original(topic, value, **kw)

    producer.send_and_wait = capture  # type: ignore[method-assign]
    await loop.adopt({TP0})
    value = orjson.dumps(cmd) if raw is None else raw
    loop._spawn(
        ConsumerRecord(TP0.topic, 0, 0, 0, 0, cmd["messageId"].encode(), value, None, 0, len(value), [])
    )
    await until(lambda: not loop.tasks, "the command to finish")
    await client.aclose()
    return world, calls, published


async def test_documented_whatsapp_accepted() -> None:
    answer = payload("send-whatsapp-accepted", messageId="m1:0")
    _, calls, published = await _dispatch(answer, command("m1", channel="WHATSAPP"))
    [status] = [decode_status(v) for v in published]
    assert status.status is Status.ACCEPTED and status.provider_message_id == "m1:0"
    assert len(calls) == 1


async def test_documented_all_rejected() -> None:
    answer = payload("send-all-rejected", messageId="m2:0")
    _, _, published = await _dispatch(answer, command("m2", channel="SMS"))
    [status] = [decode_status(v) for v in published]
    assert status.status is Status.REJECTED and status.reasons == ["INVALID_DESTINATION"]


async def test_content_with_the_gateways_own_chain_is_never_sent() -> None:
    """Issue 9, item 4: the person must not get the SMS from the gateway's chain and then ours."""
    content = dict(WA_CONTENT) | {"fallbackSms": {"sender": "Shop", "text": "hello"}}
    answer = payload("send-chain-sms-accepted", messageId="m3:0")
    _, calls, published = await _dispatch(answer, command("m3", channel="WHATSAPP", content=content))
    assert calls == [], "no call may reach the gateway"
    [status] = [decode_status(v) for v in published]
    assert status.status is Status.REJECTED
    assert status.reasons == [f"{GATEWAY_FALLBACK_REFUSED}: fallbackSms"]


async def test_content_beyond_json_integers_stops_the_dispatcher_regression() -> None:
    """An integer past 64 bits in ``content`` decodes, but orjson refused it inside the client's call,
    after SENDING was written: the dispatcher went fatal, and again at every restart. Content travels
    unchanged (CONTRACT.md), and the processor now carries such an integer exactly
    (``contracts/exactjson.py``), so the dispatcher sends it as written and goes on."""
    cmd = command("m4", channel="SMS")
    raw = orjson.dumps(cmd).replace(b'"text":', b'"big":100000000000000000000000000000,"text":')
    world, calls, published = await _dispatch(
        {"messageId": "m4:0", "results": {"sms": {"accepted": True}}}, cmd, raw=raw
    )
    [call] = calls
    assert call["big"] == 100000000000000000000000000000  # the channel body is the content: exact, not 1e+29
    [status] = [decode_status(v) for v in published]
    assert status.status is Status.ACCEPTED
    assert any(e[0] == "write" and e[2] is SendState.SENDING for e in world.events)


async def test_a_2xx_other_than_200_is_published_as_rejected_regression() -> None:
    """A 202 with an accepted body was published as REJECTED HTTP_202: the processor fell back and
    the person got the message twice. Any 2xx is the gateway's answer, read like a 200."""
    answer = payload("send-whatsapp-accepted", messageId="m5:0")
    _, calls, published = await _dispatch(answer, command("m5", channel="WHATSAPP"), http_status=202)
    [status] = [decode_status(v) for v in published]
    assert status.status is Status.ACCEPTED and len(calls) == 1


async def test_documented_quick_start_list_answer_is_accepted() -> None:
    """The Quick Start guide's send answer lists ``results`` (seed page 001 keys them by channel);
    read as "no result for the channel", every such send was taken as in doubt."""
    answer = payload("send-quickstart-list-accepted", customerMessageId="m5:0")
    _, calls, published = await _dispatch(answer, command("m5", channel="SMS"))
    [status] = [decode_status(v) for v in published]
    assert status.status is Status.ACCEPTED and status.provider_message_id == "msg_1234567890"
    assert len(calls) == 1
