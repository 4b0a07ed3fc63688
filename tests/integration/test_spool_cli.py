"""`envgrid spool status` and `envgrid spool replay` as an operator runs them, on a real spool."""

from __future__ import annotations

from pathlib import Path

from envgrid.localstack import LocalInfluxDB, LocalMosquitto, free_port
from tests.helpers import mqtt_client
from tests.service_proc import Stream, assert_exact, keys, readings, service


def _batches(stdout: str) -> int:
    # "<dir>: 1 segments, 7 batches, 52311 bytes (5.0% of 1073741824)"
    return int(stdout.split(" batches,")[0].rsplit(" ", 1)[1])


async def test_spool_status_and_replay_while_the_service_is_stopped(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no InfluxDB there: everything is spooled
    msgs = readings(600)
    async with (
        service(tmp_path, fresh_mosquitto, nowhere, influx_db) as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        await Stream(pub, msgs, rate=None).done(20)
        await svc.metric_reaches("envgrid_messages_acked_total", len(msgs), 20)
        spooled = int(await svc.metric("envgrid_spool_records"))
        assert spooled >= 1
        # While the service runs: status reads without disturbing it; replay refuses.
        status = svc.cli("spool", "status")
        assert status.returncode == 0 and _batches(status.stdout) == spooled, status
        busy = svc.cli("spool", "replay", influx__url=influxdb.url)
        assert busy.returncode == 2 and "Traceback" not in busy.stderr
        assert "in use by another process" in busy.stderr and "stop it first" in busy.stderr
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()

    # InfluxDB still unreachable: replay says so in one line and keeps every batch.
    failed = svc.cli("spool", "replay")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "InfluxDB did not take the spool" in failed.stderr
    assert f"{spooled} batches left" in failed.stderr
    assert _batches(svc.cli("spool", "status").stdout) == spooled

    done = svc.cli("spool", "replay", influx__url=influxdb.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"replayed {len(msgs)} points"
    status = svc.cli("spool", "status")
    assert "0 segments, 0 batches, 0 bytes" in status.stdout, status.stdout
    assert_exact(influxdb, influx_db, keys(msgs))
