"""Interrupted evaluations: whole CSV rows only, no JSON, and ``--resume`` gives the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from anacompile.cli import main
from anacompile.errors import ConfigError
from anacompile.evaluate.monte_carlo import CSV_COLUMNS, EvaluationInterrupted, evaluate

TIMES = "1s,1d"


def _whole_rows(path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n")  # no partial row
    lines = text.splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert all(len(line.split(",")) == len(CSV_COLUMNS) for line in lines[1:])
    return lines[1:]


def test_ctrl_c_then_resume_equals_one_run(compiled_mlp, tmp_path):
    full = evaluate(compiled_mlp, times=TIMES, chips=6, csv_path=tmp_path / "full.csv")
    rows = tmp_path / "rows.csv"

    def interrupt(done, total):
        if done >= 3 * 2:  # after the third chip's rows are out
            raise KeyboardInterrupt

    with pytest.raises(EvaluationInterrupted, match="after 3 of 6 chips.*--resume"):
        evaluate(compiled_mlp, times=TIMES, chips=6, csv_path=rows, progress=interrupt)
    assert len(_whole_rows(rows)) == 3 * 2
    resumed = evaluate(compiled_mlp, times=TIMES, chips=6, resume=rows)
    assert resumed.to_dict() == full.to_dict()
    assert sorted(_whole_rows(rows)) == sorted(_whole_rows(tmp_path / "full.csv"))


def test_resume_drops_a_partial_last_row_and_refuses_other_runs(compiled_mlp, tmp_path):
    rows = tmp_path / "rows.csv"
    full = evaluate(compiled_mlp, times=TIMES, chips=3, csv_path=rows)
    text = rows.read_text()
    cut = text[: text.rindex("\n", 0, len(text) - 1) + 5]  # a kill in the middle of the last chip's write
    rows.write_text(cut)
    assert evaluate(compiled_mlp, times=TIMES, chips=3, resume=rows).to_dict() == full.to_dict()
    assert rows.read_text().count("\n") == 1 + 3 * 2
    with pytest.raises(ConfigError, match="another evaluation"):
        evaluate(compiled_mlp, times=TIMES, chips=3, seed=99, resume=rows)
    with pytest.raises(ConfigError, match="does not belong"):
        evaluate(compiled_mlp, times="1s,1d", chips=2, resume=rows)
    rows.write_text("garbage\n")
    with pytest.raises(ConfigError, match="header"):
        evaluate(compiled_mlp, times=TIMES, chips=3, resume=rows)


def _wait_rows(path, n: int, proc, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists() and path.read_text().count("\n") >= 1 + n:
            return
        if proc.poll() is not None:
            pytest.fail(f"evaluate ended before {n} rows: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no rows streamed in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_real_signal_to_the_cli_then_resume(compiled_mlp, tmp_path, sig):
    """A real Ctrl-C (SIGINT) or kill -9 of the `anacompile evaluate` process, then `--resume`."""
    chips = 400  # long enough after the first rows that the signal lands mid-run on a fast machine
    rows, out = tmp_path / "rows.csv", tmp_path / "r.json"
    args = ["evaluate", str(compiled_mlp), "--times", TIMES, "--chips", str(chips), "--json", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "anacompile.cli", *args, "--csv", str(rows)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_rows(rows, 2 * 2, proc)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the evaluation finished before the signal"
    assert not out.exists()  # no partial (or any) JSON
    lines = _whole_rows(rows)
    assert len(lines) % 2 == 0 and len(lines) < 2 * chips
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "--resume" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--resume", str(rows)]) == 0
    reference = tmp_path / "ref.json"
    assert main([*args[:-1], str(reference)]) == 0
    assert json.loads(out.read_text()) == json.loads(reference.read_text())
