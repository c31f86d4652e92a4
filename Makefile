# Two commands for a fresh machine: `make demo` and `make test`. Each creates .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench venv clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[tools,test,fast,onnx]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(MAKE) --no-print-directory native || echo "make demo: 'make native' failed: the demo skips its C decode step"
	$(BIN)/python -m dcformat.demo

test: $(STAMP) native
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]' || echo "ZipNN did not install: the benchmark skips it"
	$(BIN)/python tools/benchmark.py

clean:
	rm -rf $(VENV) build *.egg-info

include libdcf/native.mk  # make native: the C decoder libdcf and dcfdecode (build/native/)
include libdcf/fuzz/fuzz.mk  # make native-asan, make fuzz-native: libdcf under sanitizers and libFuzzer

.PHONY: native-examples
native-examples: native  # build/native/lenet: LeNet-300-100 / LeNet-5 from a .dcf in plain C (libdcf/examples)
	@$(MAKE) --no-print-directory -C libdcf/examples lenet
