# envgrid — the two commands of the README, and the checks behind them.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint bench bench-cluster bench-peer fuzz clean
FUZZ_SECONDS ?= 600

setup:
	scripts/setup

## make demo: local mosquitto + InfluxDB + simulated fleet + the service (Ctrl-C stops it all)
demo: setup
	$(BIN)/envgrid demo

## make test: lint, types and the whole suite against real mosquitto/InfluxDB/VictoriaMetrics
test: setup
	ENVGRID_SETUP_BROWSER=1 scripts/setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/pytest -q -x -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## make bench: end-to-end throughput, drain, CPU/point, RSS and latency (not part of make test)
bench: setup
	$(BIN)/python bench/run.py

## make bench-cluster: throughput with one and two cluster members on this machine (docs/deploy.md)
bench-cluster: setup
	$(BIN)/python bench/cluster.py

## make fuzz: each parser (HJ 212 frames and framer, MQTT packets, payloads) under atheris for
## FUZZ_SECONDS (600) each; make test runs 2 s of each (tests/unit/test_fuzz_short.py)
fuzz: setup
	for t in hj212_frame hj212_framer mqtt_packets payloads; do \
		$(BIN)/python -m tests.fuzz.run $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			|| exit 1; \
	done

## make bench-peer: the shared side-by-side harness against Node-RED (installs Node-RED under /tmp)
bench-peer: setup
	bench/peer.sh

clean:
	rm -rf var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
