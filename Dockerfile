# The translation service as a container: serves the checkpoint(s) mounted at /models on port 8000.
#
#   docker build -t seq2seq-nmt .
#   docker run --rm -v $PWD/runs/x/checkpoints:/models:ro -p 8000:8000 seq2seq-nmt
#
# Build arguments:
#   BASE_IMAGE       a Debian-based Python >= 3.10 image (the same one is used for both stages)
#   TORCH_VERSION    the PyTorch release to install
#   TORCH_INDEX_URL  where PyTorch comes from: the CPU-only wheels by default (~200 MB instead of
#                    several GB of CUDA libraries); https://download.pytorch.org/whl/cu128 (or any
#                    cuXXX that PyTorch publishes for TORCH_VERSION) for the GPU image; empty to use
#                    pip's own configuration (a mirror, a local wheel folder).
# Settings are SEQ2SEQ_* environment variables (README, "Deployment").

ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build stage: a virtual environment holding PyTorch, the project and its dependencies ----------
FROM ${BASE_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
# PyTorch first and on its own: the project's "torch>=2.3" is then already met, so resolving the
# other dependencies from PyPI never pulls the CUDA build into the CPU image.
# Its C++ headers, test programs and protoc (~200 MB) serve only extension builds and PyTorch's own
# tests; torch_shm_manager is the one program in torch/bin that PyTorch runs itself.
RUN /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}" \
 && cd /opt/venv/lib/python3*/site-packages/torch \
 && rm -rf include test \
 && find bin -type f ! -name torch_shm_manager -delete
# Only what the package needs (.dockerignore keeps runs, data and checkpoints out of the context);
# a regular, non-editable install: the runtime stage copies nothing from /src.
COPY pyproject.toml README.md /src/
COPY seq2seq /src/seq2seq
COPY service /src/service
RUN /opt/venv/bin/pip install /src

# --- runtime stage: the base image plus the environment, nothing from the build ----------------------
FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it. Written directly rather than with
# useradd, which a minimal Debian base may lack.
RUN echo 'seq2seq:x:10001:10001:seq2seq:/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'seq2seq:x:10001:' >> /etc/group \
 && mkdir -p /models
# HOME=/tmp: the user has no home, and /tmp stays writable when the root filesystem is read-only
# (Kubernetes readOnlyRootFilesystem, docker run --read-only).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    SEQ2SEQ_MODELS_DIR=/models \
    SEQ2SEQ_HOST=0.0.0.0 \
    SEQ2SEQ_PORT=8000
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# /health answers once the server listens, which is after the models have loaded; the start period
# covers loading. Python's urllib, because slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SEQ2SEQ_PORT', '8000'), timeout=4)"]
# Exec form: the server is PID 1 and receives SIGTERM itself; it stops accepting connections, finishes
# in-flight requests (SEQ2SEQ_GRACEFUL_SHUTDOWN_S, default 20 s) and exits.
# Other commands work too: docker run IMAGE translate --checkpoint /models/best.pt
ENTRYPOINT ["seq2seq"]
CMD ["serve"]
