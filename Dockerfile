# The stream-app image: one image for every service (processor, dispatcher, gateway simulator,
# topics), chosen by the command: `docker run stream-app:local processor`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# pyproject.toml names README.md as the package's readme, so the build needs it; topics/ is the
# catalogue and schemas that `stream-app topics` reads and documents.
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY topics ./topics
RUN pip install . \
 && useradd --create-home --uid 10001 app \
 && mkdir -p /var/lib/stream-app \
 && chown app /var/lib/stream-app

USER app
# Flow state (processor) and the attempt index (webhook) live here: mount a volume to keep them.
# The dispatcher keeps nothing here: its sent log is a Kafka topic.
ENV STREAM_APP_STATE_DIR=/var/lib/stream-app
VOLUME /var/lib/stream-app

ENTRYPOINT ["stream-app"]
CMD ["--help"]
