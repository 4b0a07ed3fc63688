# envgrid service image: python:3.11-slim, the package installed from a wheel, run as a
# non-root user, healthy when /readyz answers 200 (connected to the broker, spool not full).
#   docker build -t envgrid .        docker run envgrid run | simulate | …
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY devices devices
COPY alerts alerts
COPY dashboards dashboards
COPY envgrid envgrid
COPY console console
COPY report report
COPY rollups rollups
COPY hj212 hj212
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/envgrid envgrid
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
# The shipped fleet as the default registry; mount your own over it.
COPY devices/fleet.yaml /etc/envgrid/registry.yaml
USER envgrid
# Relative paths (var/spool, var/alerts.db) land in the data volume mounted here.
WORKDIR /var/lib/envgrid
ENV ENVGRID_HTTP__HOST=0.0.0.0 \
    ENVGRID_HTTP__PORT=8080 \
    ENVGRID_DEVICES__REGISTRY=/etc/envgrid/registry.yaml
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]
ENTRYPOINT ["envgrid"]
CMD ["run"]
