"""The gateway side: httpx client, dispatcher, status ingest (webhook, poller) and a simulator.

Entry points usable in-process: :func:`run_simulator`, :func:`run_dispatcher`, :func:`run_webhook`,
:func:`run_poller` (imported lazily from their modules so ``import stream_app.gateway`` stays cheap).
"""
