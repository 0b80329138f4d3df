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

# Dependencies first, from pyproject.toml alone, so editing the source reuses this layer.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The bundled model store is baked in; compose mounts a host store over it. The project is
# installed as well as copied, so `import model_store` still finds the package when a
# volume replaces /app/model_store with a store that holds only entries.
COPY README.md ./
COPY app/ app/
COPY model_core/ model_core/
COPY model_store/ model_store/
COPY training/ training/
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
