# The two commands of the README, and a few more.
.PHONY: run test install install-test down status bench lint

run: install  ## install everything and start the platform on its local defaults
	.venv/bin/dicomflow up

test: install-test lint  ## install what the tests need and run the test suite
	.venv/bin/pytest -q -p no:cacheprovider

install:
	bash scripts/install.sh

install-test:
	bash scripts/install.sh --test

lint:  ## style, types and the architecture's import contracts (.importlinter)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

down:
	.venv/bin/dicomflow down

status:
	.venv/bin/dicomflow status

bench: install-test  ## run every benchmark under bench/ and print one table
	.venv/bin/python bench/run_all.py
