# The training image: the service's image plus the `training` extra of pyproject.toml
# (matplotlib, for the reports publish writes). Build the service's image first:
#   docker build -t wbc-explain:0.1.0 .
#   docker build -f deploy/kubernetes/training.Dockerfile -t wbc-explain-training:0.1.0 .
ARG BASE_IMAGE=wbc-explain:0.1.0
FROM ${BASE_IMAGE}

USER 0:0
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['training']))" > /tmp/requirements.txt \
    && python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
USER 10001:10001

CMD ["python3", "-m", "training", "train", "--help"]
