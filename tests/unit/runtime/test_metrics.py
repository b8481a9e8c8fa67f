"""The processor's ``serve(metrics, port)`` still works now that the endpoint lives in metrics_http."""

from __future__ import annotations

import httpx

from stream_app.runtime.metrics import Metrics, serve


async def test_serve_wraps_the_shared_endpoint_with_the_loop_health() -> None:
    metrics = Metrics()
    metrics.records_in.labels("t").inc()
    server = await serve(metrics, 0, "127.0.0.1")
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert 'stream_app_records_in_total{topic="t"} 1.0' in (await http.get("/metrics")).text
            assert (await http.get("/healthz")).status_code == 200
            metrics.last_turn -= 3600  # the loop has not turned for an hour
            assert (await http.get("/healthz")).status_code == 503
    finally:
        server.close()
        await server.wait_closed()
