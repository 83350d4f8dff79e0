# mtkit: `make install` sets up .venv from nothing, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build, pinned: an unpinned torch would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: install data test test-all docs demo reproduce seeds transformer clean

install: $(BIN)/mtkit

$(BIN)/mtkit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

# The Spanish and English Bibles (SWORD modules) from Debian; needs root (or sudo).
data:
	@if [ -f /usr/share/sword/mods.d/spaRV1909eb.conf ] && [ -f /usr/share/sword/mods.d/engKJV2006eb.conf ]; then \
		echo "SWORD modules already installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sword-text-sparv sword-text-kjv sword-text-web; \
	else \
		echo "run: sudo apt-get install sword-text-sparv sword-text-kjv sword-text-web"; exit 1; \
	fi

test: install
	$(BIN)/pytest -q

test-all: install
	$(BIN)/pytest -q -m ""

# The reference site: regenerate the generated pages (CLI, configuration, the study's tables), then build
# docs/ into site/ with mkdocs --strict (a broken link or a missing page fails).
docs: install
	$(BIN)/pip install --quiet -e ".[dev,docs]"
	$(BIN)/python scripts/gen_docs.py
	$(BIN)/mkdocs build --strict

# A small end-to-end run on a synthetic corpus: prepare, train, translate, evaluate.
demo: install
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) runs results site

# The main job: the length study on the Bible, three models (under an hour on 2 CPU cores).
# FULL=1 make reproduce runs the larger GPU setting.
reproduce: install data
	bash scripts/reproduce.sh

# The study again with other training seeds (SEEDS of them, one hour each), then the spread of each model's
# paired ratio over these and the main run: results/seeds.md.
SEEDS ?= 2
seeds: install data
	bash scripts/seeds.sh $(SEEDS)

# Kept for old instructions: the Transformer is part of `make reproduce` now.
transformer: reproduce
