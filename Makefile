# Two commands from a fresh clone: `make compare` (the main job) and `make test` (the test suite).
# Both create .venv and install losscli into it on first use (about 3 minutes), then reuse it.
# CPU-only machine and want a small venv? See README, "Quick start" (the CPU build of torch).

VENV ?= .venv
PYTHON ?= python3
PIP_TORCH ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= test

STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: compare test install clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_TORCH)
	$(VENV)/bin/python -m pip install -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

compare: $(STAMP)
	$(VENV)/bin/losscli compare

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
