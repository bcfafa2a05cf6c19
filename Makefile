# reflow: `make demo` runs the main job, `make test` runs the whole suite. Both install what they need first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt

.PHONY: demo test bench lint install clean onnx-models

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed-test

demo: install
	$(VENV)/bin/reflow train CartPole-v1 --algo ppo --envs 8 --workers 2 --seed 0 --out runs/demo

test: install
	$(PY) -m pytest tests

# Every script in benchmarks/ is a claim, except the peers' helpers the claims drive.
BENCH_HELPERS := benchmarks/transport_peers.py benchmarks/rllib_ppo.py benchmarks/onnx_export_models.py benchmarks/serve_peers.py \
                 benchmarks/recurrent_peers.py benchmarks/recurrent_tempo.py
BENCHMARKS    := $(filter-out $(BENCH_HELPERS),$(wildcard benchmarks/*.py))

bench: install
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	for b in $(BENCHMARKS); do $(PY) $$b --quick || exit 1; done

# torchvision models as .onnx files for benchmarks/onnx_parallel.py. torchvision does not import beside the
# pinned torch 2.13.0 CPU build, so the export runs in a throwaway venv of its own (torch 2.14.1 +
# torchvision 0.29.1, several GB) that reflow's venv never sees; only the .onnx files are shared.
EXPORT_VENV ?= /tmp/reflow-export-venv
ONNX_MODELS ?= $(HOME)/.cache/reflow/onnx-models

$(EXPORT_VENV)/bin/python:
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 onnx

onnx-models: $(EXPORT_VENV)/bin/python
	$(EXPORT_VENV)/bin/python benchmarks/onnx_export_models.py --out $(ONNX_MODELS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
