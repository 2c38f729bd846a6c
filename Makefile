# make demo: install, train the small preset on the real corpus, classify all 7,532 test posts
#            through the embedded Redis and a Celery worker, print accuracy and failure analysis.
# make test: install, make sure PostgreSQL and Redis run, run the test suite.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of PyTorch lies on this machine's disk; with a GPU, install your own torch first
# (or: make install TORCH_SPEC="torch==2.13.0"), a torch already in the venv is kept.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test services clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

services:
	bash scripts/ensure-services.sh

test: install services
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .han checkpoints han.db han.db-wal han.db-shm demo-out
