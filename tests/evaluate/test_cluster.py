"""``evaluate`` on a Dask cluster (``--scheduler dask://HOST:PORT``, ``scheduler=client``): the local result.

The cluster is a ``distributed.LocalCluster`` of two single-threaded in-process workers listening on TCP,
so the command line in a subprocess reaches it by address, as it would a real scheduler.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from distributed import Client, LocalCluster

import anacompile
from anacompile.errors import ConfigError

TIMES = "1s,1d"
CHIPS = 4


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://", dashboard_address=None
    )
    c = Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def _json(result) -> str:
    return json.dumps(result.to_dict(), sort_keys=True)


def test_a_client_gives_the_local_json(client, compiled_mlp) -> None:
    local = anacompile.evaluate(compiled_mlp, times=TIMES, chips=CHIPS)
    on_cluster = anacompile.evaluate(compiled_mlp, times=TIMES, chips=CHIPS, scheduler=client)
    assert _json(on_cluster) == _json(local)
    other_seed = anacompile.evaluate(compiled_mlp, times=TIMES, chips=CHIPS, scheduler=client, seed=9)
    assert other_seed.accuracy != local.accuracy  # the comparison can fail


def test_the_cli_scheduler_address_gives_the_local_json(client, compiled_mlp) -> None:
    address = client.scheduler.address  # tcp://127.0.0.1:PORT
    cmd = [sys.executable, "-m", "anacompile.cli", "evaluate", str(compiled_mlp), "--times", TIMES]
    cmd += ["--chips", str(CHIPS), "--json", "-", "--scheduler", "dask://" + address.removeprefix("tcp://")]
    remote = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert remote.returncode == 0, remote.stderr
    local = anacompile.evaluate(compiled_mlp, times=TIMES, chips=CHIPS)  # what `evaluate --json -` writes
    assert json.loads(remote.stdout) == json.loads(json.dumps(local.to_dict()))


def test_bad_or_unreachable_schedulers_are_one_line_errors(compiled_mlp, monkeypatch) -> None:
    from anacompile.evaluate import cluster

    with pytest.raises(ConfigError, match="dask://HOST:PORT"):
        anacompile.evaluate(compiled_mlp, times=TIMES, chips=1, scheduler="localhost:8786")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(ConfigError, match="no Dask scheduler answered within 1 s"):
        anacompile.evaluate(compiled_mlp, times=TIMES, chips=1, scheduler="dask://127.0.0.1:9")
