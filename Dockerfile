# syntax=docker/dockerfile:1.7
# One image for the three services and the CLI:
#   docker build -t sitenet .
#   docker run sitenet serve site-registry      (or startup-tracker, notifications)
#   docker run sitenet token --role admin       (any `sitenet` command)
# tests/deploy/test_image.py runs this file's build and entry point outside a
# container; `make lint` runs hadolint on it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with sitenet and its pinned dependencies ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV SITENET_SRC=/src \
    SITENET_VENV=/opt/sitenet \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY deploy/image/build-venv.sh ./deploy/image/build-venv.sh
RUN sh ./deploy/image/build-venv.sh && mkdir -p /var/lib/sitenet

# --- runtime: the virtualenv, a non-root user, no compilers, pip or sources -----------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sitenet" \
      org.opencontainers.image.description="Clinical-trial site start-up: site registry, start-up tracker, notifications" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/sitenet/bin:$PATH \
    HOME=/var/lib/sitenet \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SITENET_HOST=0.0.0.0 \
    SITENET_DATA_DIR=/var/lib/sitenet \
    SITENET_METRICS_PORT=9464 \
    SITENET_LOG_JSON=true
COPY --from=build /opt/sitenet /opt/sitenet
# The data directory (faust's scratch state; SQLite and the local key when no
# PostgreSQL or Secret is configured): writable by the service user only.
COPY --from=build --chown=10001:10001 /var/lib/sitenet /var/lib/sitenet
USER 10001:10001
WORKDIR /var/lib/sitenet
# gRPC: site-registry 50051, startup-tracker 50052, notifications 50053; metrics 9464.
EXPOSE 50051 50052 50053 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["sitenet"]
CMD ["--help"]
