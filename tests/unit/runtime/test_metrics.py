"""The processor's metrics served through the shared endpoint, with its loop's health."""

from __future__ import annotations

import httpx

from stream_app.metrics_http import serve
from stream_app.runtime.metrics import Metrics


async def test_processor_metrics_and_loop_health_on_the_shared_endpoint() -> None:
    metrics = Metrics()
    metrics.records_in.labels("t").inc()
    server = await serve(metrics.registry, 0, "127.0.0.1", healthy=metrics.healthy)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert 'stream_app_records_in_total{topic="t"} 1.0' in (await http.get("/metrics")).text
            assert (await http.get("/healthz")).status_code == 200
            metrics.heartbeat.last -= 3600  # the loop has not turned for an hour
            assert (await http.get("/healthz")).status_code == 503
    finally:
        server.close()
        await server.wait_closed()
