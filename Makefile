# The two commands of the README: `make demo` (the cluster tutorial) and `make test`.
VENV := .venv/bin

.PHONY: setup test lint demo bench proto clean

setup:
	@bash scripts/setup.sh

lint: setup
	$(VENV)/ruff check asyncq tests examples benchmarks scripts
	$(VENV)/ruff format --check asyncq tests examples benchmarks scripts
	$(VENV)/mypy

test: lint
	$(VENV)/python -m pytest

demo: setup
	$(VENV)/python scripts/demo.py

# Throughput and latency against arq, saq, taskiq and streaq (benchmarks/README.md).
bench: setup
	$(VENV)/python -m benchmarks $(BENCH_ARGS)

# Regenerate the protobuf module after editing asyncq/_proto/asynq.proto.
proto:
	$(VENV)/python -m pip install -q grpcio-tools
	$(VENV)/python -m grpc_tools.protoc -I asyncq/_proto --python_out=asyncq/_proto \
		--pyi_out=asyncq/_proto asyncq/_proto/asynq.proto

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
