# Image for the worker, the migrate step, Flower and the CLI (see docker-compose.yml).
# TORCH_SPEC picks the PyTorch build: the default from PyPI is a CUDA build on Linux x86_64.
FROM python:3.11-slim
ARG TORCH_SPEC=torch
WORKDIR /app
RUN pip install --no-cache-dir "${TORCH_SPEC}"
COPY pyproject.toml README.md alembic.ini ./
COPY cli cli
COPY han han
COPY trainer trainer
COPY worker worker
COPY db db
COPY migrations migrations
COPY bench bench
RUN pip install --no-cache-dir ".[deploy]"
