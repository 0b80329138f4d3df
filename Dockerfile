# GPU image of the service. The base image ships TensorFlow built for its CUDA and cuDNN,
# so only the project's own runtime dependencies are installed on top (never the `cpu`
# extra). Keep the tag in step with the `cpu` extra's tensorflow-cpu pin in pyproject.toml.
FROM tensorflow/tensorflow:2.21.0-gpu

# TF_FORCE_GPU_ALLOW_GROWTH: take GPU memory as needed instead of all of it at start-up.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    TF_CPP_MIN_LOG_LEVEL=1 \
    WBC_STORE_DIR=/app/model_store

WORKDIR /app

# Dependencies first, from the service's lock alone (every package pinned with its hashes;
# ./scripts/lock.sh writes it), so editing the source or pyproject.toml reuses this layer.
# The lock leaves TensorFlow out and pins numpy, protobuf and the rest at the versions the
# project tests beside TensorFlow 2.21.
COPY requirements/service.txt requirements/
RUN python3 -m pip install --no-cache-dir --require-hashes -r requirements/service.txt

# The bundled model store is baked in; compose mounts a host store over it.
COPY pyproject.toml README.md ./
COPY app/ app/
COPY model_core/ model_core/
COPY model_store/ model_store/
COPY training/ training/
# The example smears the page offers (GET /examples).
COPY examples/ examples/
# Installed (its dependencies are in already) for its metadata: app.__version__, which the
# OpenAPI document and the V2 protocol's server metadata report, reads the installed version.
RUN python3 -m pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info \
    && groupadd --gid 10001 wbc \
    && useradd --no-log-init --create-home --uid 10001 --gid 10001 wbc

# Numeric, so the runtime can tell the user is not root without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]

CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
