# The training image: the service's image plus the `training` extra of pyproject.toml
# (matplotlib for the reports publish writes; tf2onnx and onnx for the model.onnx it
# exports; scikit-learn, SciPy and tqdm for metrics, calibration, folds and progress),
# installed from its lock, requirements/training.txt (./scripts/lock.sh writes it), with
# the versions the service image and the tests already use. Build the service's image first:
#   docker build -t wbc-explain:0.1.0 .
#   docker build -f deploy/kubernetes/training.Dockerfile -t wbc-explain-training:0.1.0 .
ARG BASE_IMAGE=wbc-explain:0.1.0
FROM ${BASE_IMAGE}

USER 0:0
COPY requirements/training.txt /tmp/requirements-training.txt
RUN python3 -m pip install --no-cache-dir --require-hashes -r /tmp/requirements-training.txt \
    && rm /tmp/requirements-training.txt
USER 10001:10001

CMD ["python3", "-m", "training", "train", "--help"]
