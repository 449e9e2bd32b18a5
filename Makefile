# Two commands do all set-up on a fresh machine:
#   make demo   — create .venv, install, run the end-to-end demo (embedded default): plan,
#                 simulate, then serve four apps on MiniLM live over HTTP, load, report
#   make test   — create .venv, install, run the test suite
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo batch-example test lint bench bench-batch clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,models,ray,bench]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/batchwise demo --out out/demo

# Ray must never touch the network: its tests run in a namespace with only loopback
# (unshare: root, or unprivileged user namespaces); the PID namespace reaps its daemons.
RAY_NS := unshare --net --pid --fork --mount-proc --map-root-user -- bash -c

batch-example: $(STAMP)
	$(BIN)/batchwise batch examples/batch/minilm-job.yaml

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q -m "not ray"
	$(RAY_NS) 'ip link set lo up && exec $(BIN)/pytest -q -m ray'

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/planner_costs.py
	$(BIN)/python bench/planning_time.py

bench-batch: $(STAMP)
	$(RAY_NS) 'ip link set lo up && exec $(BIN)/python bench/batch_throughput.py --records 4000 --repeats 3'

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
