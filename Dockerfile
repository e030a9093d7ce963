# Callwright server image: non-root, every model from installed packages (nothing is downloaded at run
# time), health-checked on /health. Build: docker build -t callwright .   (deploy/README.md: the topology)
#
# The builder stage compiles anything without a wheel; the runtime stage carries only the virtualenv and
# the Debian packages the speech engines load at run time (the same list as run.sh's DEBIAN_PACKAGES).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --upgrade pip && pip install .
# Only the Smart Turn end-of-turn model (an ONNX file inside the BSD-2 pipecat-ai wheel) is used, so the
# wheel goes in without pipecat's own dependency tree (as run.sh does).
ARG SMART_TURN_WHEEL=pipecat-ai==1.14.0
RUN pip install --no-deps "${SMART_TURN_WHEEL}"

FROM ${PYTHON_IMAGE}
# espeak-ng/flite/sox: the embedded TTS and audio tools; redis-server: only for `--workers N` without
# REDIS_URL (one container using every core with a Redis of its own).
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng libespeak-ng1 flite sox redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --create-home callwright
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SESSION_SPILL_DIR=/app/spill \
    RECORDING_DIR=/app/recordings \
    CALLWRIGHT_REDIS_DIR=/app/redis
WORKDIR /app
RUN mkdir -p /app/spill /app/recordings /app/redis && chown -R callwright:callwright /app
USER callwright
EXPOSE 8080
# Liveness only (the process answers): readiness (/ready: Redis reachable, not draining) is for the load
# balancer or orchestrator to route by, not a reason to restart the container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
# SIGTERM drains (SHUTDOWN_GRACE_SECONDS + goodbye): give the container that long to stop
# (docker stop -t / compose stop_grace_period / Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
CMD ["callwright", "serve", "--host", "0.0.0.0", "--port", "8080"]
