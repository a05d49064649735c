"""Grafana boards as code for cxstream.

The five boards (:mod:`dashboards.boards`) are built with grafana-foundation-sdk; every panel
queries ClickHouse through the ``grafana-clickhouse-datasource`` plugin with raw SQL
(:mod:`dashboards.queries`) in the dialect common to ClickHouse 18.16 and 26.x, mostly over the
rollup tables of ``sinks/clickhouse/migrations``. The boards are exported as JSON into
``dashboards/json`` (what Grafana provisioning loads, see ``dashboards/provisioning``) and pushed
to a running Grafana with ``cxstream dashboards push``.

Proof without a Grafana server: :mod:`dashboards.export` validates the JSON model,
:mod:`dashboards.macros` expands the plugin's macros and template variables exactly as the plugin
does, and :mod:`dashboards.runner` runs every panel's SQL on a ClickHouse backend and checks that
it returns the columns its panel type needs.

Importing this package imports nothing heavy (no SDK, no ClickHouse client).
"""
