.PHONY: check lint type test
check: lint type test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
type:
	.venv/bin/mypy
test:
	.venv/bin/python -m pytest
