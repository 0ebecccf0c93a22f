# The two commands: `make run` and `make test`. Both create .venv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
JUPYTER_ETC := $(VENV)/etc/jupyter
# uv installs: it downloads and unpacks in parallel and compiles the bytecode on both cores (a clean clone's install
# with `aiplatform warm`, one host, one hour: 7:28 with pip, 5:18 with uv). pip stays in the venv for the tests that
# build a wheel. uv reads no pip configuration: the local wheels pip is pointed at (PIP_FIND_LINKS, else pip.conf's
# find-links; here the CPU build of torch) are passed on.
UV := $(BIN)/uv
UV_INSTALL := $(UV) pip install -q --compile-bytecode -p $(BIN)/python
PIP_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
ifneq ($(PIP_LINKS),)
export UV_FIND_LINKS ?= $(PIP_LINKS)
endif
# jsonschema imports rfc3987-syntax (an optional format checker jupyter-events asks for) at start, which builds 35 Earley
# parsers: 1.3 s in every Jupyter, papermill and `aiplatform` process (the CLI: 3.0 s -> 1.0 s; the tests: 452 s -> 292 s).
# No schema the platform loads checks the iri formats it serves (jupyter_server#1559, jsonschema#1428): it goes.
UNSLOW := $(UV) pip uninstall -q -p $(BIN)/python rfc3987-syntax

.PHONY: install run hub test bench bench-quick sysdeps sandbox tessdata espeak check-sync clean

# Everything the platform runs on: the Dockerfile runs this same target.
install: $(VENV)/.warmed $(VENV)/.proxy sandbox tessdata espeak

# JupyterHub's proxy, configurable-http-proxy (Node.js), into the virtual environment, where the Hub looks for it.
$(VENV)/.proxy: | $(BIN)/python
	@if command -v npm >/dev/null; then npm install -s --prefix $(VENV) --no-audit --no-fund configurable-http-proxy@5 >/dev/null && touch $@; \
	else echo "note: the Hub (make hub) needs Node.js for its proxy: sudo apt-get install nodejs npm"; fi

run: install
	$(BIN)/aiplatform serve

# JupyterHub in front: a server per user, roles from Hub groups, the shared services run once (README: "Many users").
hub: install
	$(BIN)/aiplatform hub

# Tesseract's English and orientation models, for OCR (tesserocr's wheel carries the library itself).
tessdata:
	@ls /usr/share/tesseract-ocr/*/tessdata/osd.traineddata >/dev/null 2>&1 || if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr-eng tesseract-ocr-osd >/dev/null; \
	else echo "note: OCR needs Tesseract's models: sudo apt-get install tesseract-ocr-eng tesseract-ocr-osd"; fi

# espeak-ng speaks over a hundred languages and gives the neural voices their phonemes (a separate program: GPL-3, never linked).
espeak:
	@command -v espeak-ng >/dev/null || if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; \
	else echo "note: speech needs espeak-ng: sudo apt-get install espeak-ng"; fi

# bubblewrap confines the tests of generated code; without it they are not run (and the apps say why).
sandbox:
	@command -v bwrap >/dev/null || if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	else echo "note: generated code's tests need bubblewrap: sudo apt-get install bubblewrap"; fi

test:  # the Debian packages (apt-get) beside the Python ones; then the dev tools beside Numba's compilation
	@time $(MAKE) --no-print-directory -j3 $(VENV)/.installed-dev $(VENV)/.warmed sysdeps
	@$(MAKE) --no-print-directory $(VENV)/.proxy
	@$(MAKE) --no-print-directory check-sync
	$(BIN)/ruff check .
	time AIPLATFORM_PLATFORM__DATA_DIR=$$(mktemp -d) $(BIN)/nbdev-test  # each phase timed: a clean clone's make test stays well inside 15 minutes
	$(BIN)/pytest -n $$(( 2 * $$(nproc) )) --dist loadfile --durations=5  # two workers a core: much of a test waits on a server, a kernel or a browser (10:19 -> 8:33 on the 2-core VM); a file's tests stay together and share its fixtures
	@time $(MAKE) --no-print-directory bench-quick

# The matching engine's peers (nautilus-trader) need pandas 2, vectorbt 1.2 needs pandas 3: the peers get their own venv.
PEERS := .venv-peers
bench: $(VENV)/.installed-dev $(PEERS)/.installed
	@for b in bench_indicators bench_sweep bench_codegen bench_apps bench_ws bench_service bench_retention bench_text bench_vision bench_voice bench_jobs bench_resume bench_realestate bench_hub; do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done
	@echo "== benchmarks/bench_matching.py"; $(PEERS)/bin/python benchmarks/bench_matching.py

# Every benchmark end to end on tiny sizes with --quick (the figures mean nothing), so that one that no longer runs
# fails `make test`: three at a time, the slowest first (benchmarks/quick.py).
bench-quick: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/quick.py

$(PEERS)/.installed: pyproject.toml
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q -e ".[bench]"
	touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv

# The package, its Jupyter server configuration (sys-prefix) and the AI Platform kernelspec.
$(VENV)/.installed: pyproject.toml extensions/voila.json extensions/jupyter_server_config.d/*.json kernels/aiplatform/kernel.json | $(BIN)/python
	$(UV_INSTALL) -e .
	$(UNSLOW)
	mkdir -p $(JUPYTER_ETC)/jupyter_server_config.d
	cp extensions/jupyter_server_config.d/*.json $(JUPYTER_ETC)/jupyter_server_config.d/
	cp extensions/voila.json $(JUPYTER_ETC)/voila.json
	$(BIN)/jupyter-kernelspec install --sys-prefix --replace kernels/aiplatform >/dev/null
	touch $@

# What each tool compiles on first use (Numba caches it on disk), compiled now.
$(VENV)/.warmed: $(VENV)/.installed
	$(BIN)/aiplatform warm
	touch $@

# The dev extra's packages, not the package again: so they install while `aiplatform warm` runs from it.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"]))' \
	  > $(VENV)/dev-requirements.txt
	$(UV_INSTALL) -r $(VENV)/dev-requirements.txt
	$(UNSLOW)
	touch $@

# Debian packages the tests need: Chromium (browser tests), PostgreSQL (store tests), g++ (the CUDA kernels run on
# the CPU), bubblewrap (the code sandbox), espeak-ng (speech) and npm (the Hub's proxy), installed when run as root.
sysdeps: tessdata
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	ldconfig -p | grep -q libpangoft2-1.0 || missing="$$missing libpango-1.0-0 libpangoft2-1.0-0"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing; run 'sudo apt-get install$$missing'"; exit 1; fi; fi

# nbdev-clean and nbdev-export must change nothing: the notebooks are clean and the package matches them. A file
# they rewrite unchanged keeps its modification time: a module, and so the Numba caches `aiplatform warm` compiled
# from it; pyproject.toml, and so the installation.
check-sync: $(VENV)/.installed-dev
	@before=$$({ git diff -- nbs aiplatform; git status --porcelain -- nbs aiplatform; } | md5sum); \
	kept=$$(mktemp -d); { find aiplatform -name '*.py' -print0; printf 'pyproject.toml\0'; } | xargs -0 cp --parents -p -t $$kept; \
	$(BIN)/nbdev-clean && $(BIN)/nbdev-export; \
	(cd $$kept && find . -type f) | while read -r f; do cmp -s "$$kept/$$f" "$$f" && touch -r "$$kept/$$f" "$$f"; done; \
	rm -rf $$kept; \
	after=$$({ git diff -- nbs aiplatform; git status --porcelain -- nbs aiplatform; } | md5sum); \
	if [ "$$before" != "$$after" ]; then \
	  echo "nbdev-clean or nbdev-export changed files: commit clean notebooks and the package exported from them"; \
	  git status --short -- nbs aiplatform; exit 1; fi

clean:
	rm -rf $(VENV) $(PEERS)
