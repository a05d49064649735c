"""The one ClickHouse datasource every panel uses, and where the exported files live.

The uid is fixed: the provisioning file (``provisioning/datasources/clickhouse.yaml``) creates
the datasource under this uid, and every panel target names it, so boards resolve it on any
Grafana without a datasource template variable.
"""

from __future__ import annotations

from pathlib import Path

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "cxstream-clickhouse"
#: the plugin major version whose query model the targets follow (v3 queries get migrated)
PLUGIN_QUERY_VERSION = "4.0.0"

PACKAGE_DIR = Path(__file__).resolve().parent
JSON_DIR = PACKAGE_DIR / "json"
PROVISIONING_DIR = PACKAGE_DIR / "provisioning"
DATASOURCE_PROVISIONING = PROVISIONING_DIR / "datasources" / "clickhouse.yaml"
DASHBOARD_PROVISIONING = PROVISIONING_DIR / "dashboards" / "cxstream.yaml"


def datasource_ref() -> dict[str, str]:
    """The ``datasource`` object of a panel target."""
    return {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
