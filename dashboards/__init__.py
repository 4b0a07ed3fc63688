"""envgrid's Grafana dashboards as code (see docs/dashboards.md).

The names below are light on purpose: the CLI imports them without loading the SDK.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
# The provisioned InfluxDB (InfluxQL) datasource every query names.
DATASOURCE_UID = "envgrid-influxdb"
FOLDER_UID = "envgrid"
FOLDER_TITLE = "envgrid"
