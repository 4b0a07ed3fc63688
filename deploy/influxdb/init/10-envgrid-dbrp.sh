#!/bin/bash
# Map the InfluxQL database "envgrid" (retention policy autogen) to the bucket created by
# DOCKER_INFLUXDB_INIT_*, so Grafana's InfluxQL datasource and envgrid's InfluxQL queries
# (reports, rollups) reach it through /query. InfluxDB runs this once, when its data volume
# is first set up; the influx CLI is already configured with the admin token then.
set -euo pipefail

influx v1 dbrp create \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${ENVGRID_INFLUXQL_DATABASE:-envgrid}" \
  --rp autogen \
  --default \
  --org "${DOCKER_INFLUXDB_INIT_ORG}"
