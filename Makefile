.PHONY: check lint type test
check: lint type test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
type:
	.venv/bin/mypy
test:
	.venv/bin/python -m pytest

.PHONY: openapi
openapi:  ## refresh docs/openapi.json from the app (commit the result)
	.venv/bin/goodfaith openapi -o docs/openapi.json
