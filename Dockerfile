# The stream-app image: one image for every service (processor, dispatcher, gateway simulator,
# topics), chosen by the command: `docker run stream-app:local processor`.
#
# Two stages. The first compiles the hot path (stream_app/compiled.py's MODULES) with mypyc into a
# wheel, where a C compiler is at hand; the second installs that wheel on a clean base, with no
# compiler and no mypy in it. A compile that fails fails the build: an image that quietly ran the
# pure-Python source would be about a third slower with nothing saying so but its start line.
# PYTHON_IMAGE: the base of both stages (any Debian-based CPython 3.11+ image with pip).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# pyproject.toml names README.md as the package's readme; setup.py is the compile hook.
COPY pyproject.toml setup.py README.md ./
COPY stream_app ./stream_app
# The dependencies first (mypyc type-checks against them), then the compiled wheel of the package.
RUN pip install . mypy wheel "setuptools>=68" \
 && STREAM_APP_COMPILE=1 pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
 && pip install --no-deps --force-reinstall /wheels/*.whl \
 && cd / && python -c "from stream_app.compiled import mode; m = mode(); print('hot path:', m); assert m == 'compiled', m"

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# topics/ is the catalogue and schemas that `stream-app topics` reads and documents.
COPY topics ./topics
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
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
