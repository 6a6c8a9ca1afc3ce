"""Read models: what people and other programs read, built by aggregate, bounded queries.

- ``report``: the run report (the contract ``demo --json`` and ``simulate --json`` write, and
  ``GET /v1/cases/{id}``);
- ``dashboard``: what ops watch (counts by status, cases by time left) and the metrics;
- ``export``: the compliance attempt log (CSV / JSON), streamed in pages.

They only read; nothing here changes a row.
"""
