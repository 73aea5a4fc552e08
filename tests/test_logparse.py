"""rednet.logparse on real Caffe logs written by real `bin/caffe train` runs of a tiny RED-Net."""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rednet import logparse  # noqa: E402

pytestmark = pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)")


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two real runs: 'one' (30 iterations, one session) and 'two' (20, then extended to 40)."""
    from test_train import cli, train_args, write_toy
    tmp = tmp_path_factory.mktemp("logs")
    toy = write_toy(tmp / "toy", max_iter=30, snapshot=10, test_interval=10)
    runs = tmp / "runs"
    for args in (("one", "--iters", "30"), ("two", "--iters", "20"), ("two", "--iters", "40")):
        r = cli(*train_args(toy, runs, *args))
        assert r.returncode == 0, r.stderr
    return runs


def _raw(log: Path, rx: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(rx, log.read_text())]


def test_single_session_table_matches_the_raw_log(logs):
    log = logs / "one" / "train.log"
    t = logparse.parse_log(log)
    rows = t.sorted_rows()
    assert t.sessions == 1 and t.done
    assert [r.iteration for r in rows] == list(range(31))   # 0..29 trained, 30 = final display
    train = [r.train_loss for r in rows if r.train_loss is not None]
    assert train == _raw(log, r"Train net output #0: loss = ([0-9.e+-]+)")
    tests = {r.iteration: r.test_loss for r in rows if r.test_loss is not None}
    assert sorted(tests) == [0, 10, 20, 30]
    assert list(tests.values()) == _raw(log, r"Test net output #0: loss = ([0-9.e+-]+)")
    assert all(r.learning_rate == pytest.approx(1e-3) for r in rows[:-1])
    secs = [r.seconds for r in rows]
    assert secs[0] >= 0 and all(b >= a for a, b in zip(secs, secs[1:]))
    assert train[-1] < train[0]  # it learned something


def test_csv_round_trip(logs, tmp_path):
    t = logparse.parse_log(logs / "one" / "train.log")
    out = logparse.write_csv(t, tmp_path / "one.csv")
    assert out.read_text().splitlines()[0] == "iteration,train_loss,test_loss,learning_rate,seconds"
    back = logparse.read_csv(out)
    assert len(back) == len(t.rows)
    for rec, row in zip(back, t.sorted_rows()):
        assert rec["iteration"] == row.iteration
        for k in ("train_loss", "test_loss", "learning_rate", "seconds"):
            assert rec[k] == getattr(row, k)


def test_resumed_log_keeps_each_iteration_once(logs):
    log = logs / "two" / "train.log"
    text = log.read_text()
    assert text.count("Solving ") == 2 and "Resuming from" in text
    t = logparse.parse_log(log)
    assert t.sessions == 2
    its = [r.iteration for r in t.sorted_rows()]
    assert its == list(range(41))
    # iteration 20 is reported by both sessions (final display of the first); the table
    # keeps the second session's value, which trained on from there
    second = text[text.rindex("Solving "):]
    first20 = float(re.search(r"Test net output #0: loss = ([0-9.e+-]+)", second).group(1))
    assert t.rows[20].test_loss == first20
    # seconds count training time only and keep increasing across the sessions
    secs = [r.seconds for r in t.sorted_rows()]
    assert all(b >= a for a, b in zip(secs, secs[1:]))
    # the first 20 iterations equal those of the uninterrupted run 'one' (same data, same seed)
    one = logparse.parse_log(logs / "one" / "train.log")
    assert [one.rows[i].train_loss for i in range(20)] == [t.rows[i].train_loss for i in range(20)]


def test_curves_command_writes_csv_and_png(logs, tmp_path):
    from test_train import cli
    out = tmp_path / "curves.png"
    r = cli("curves", str(logs / "one" / "train.log"), str(logs / "two" / "train.log"), "--out", str(out),
            "--csv-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    from PIL import Image
    im = np.asarray(Image.open(out).convert("RGB"))
    assert im.shape[0] > 200 and im.shape[1] > 300
    # both runs' fixed colours appear on the plot
    for hexcol in logparse.COLORS[:2]:
        rgb = np.array([int(hexcol[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(im.astype(int) - rgb).sum(axis=2) < 30).sum() > 50, hexcol
    assert (tmp_path / "one.csv").is_file() and (tmp_path / "two.csv").is_file()
    r = cli("curves", "no-such-run")
    assert r.returncode == 2 and "RUNS='no-such-run'" in r.stderr


@pytest.mark.parametrize("line, kind, it, value", [
    ("I1121 09:17:23.123456  4242 solver.cpp:218] Iteration 40, loss = 0.0123", "loss", 40, 0.0123),
    ("I20261121 09:17:23.123456  4242 solver.cpp:218] Iteration 40 (2.5 iter/s, 8s/20 iters), loss = 1.5e-05",
     "loss", 40, 1.5e-05),
    ("I20261121 09:17:23.123456  4242 sgd_solver.cpp:106] Iteration 40, lr = 0.0001", "lr", 40, 1e-4),
    ("I20261121 09:17:23.123456  4242 solver.cpp:247]     Train net output #0: loss = nan (* 1 = nan loss)",
     "train_output", None, math.nan),
    ("I20261121 09:17:23.123456  4242 solver.cpp:247]     Train net output #0: loss = -inf (* 1 = -inf loss)",
     "train_output", None, -math.inf),
    ("F20261121 09:17:23.123456  4242 io.cpp:77] Check failed: proto.SerializeToOstream(&output)", "fatal", None, None),
    ("random text", None, None, None),
])
def test_parse_line(line, kind, it, value):
    ev = logparse.parse_line(line)
    if kind is None:
        assert ev is None
        return
    assert ev.kind == kind and ev.iteration == it
    if value is not None and math.isnan(value):
        assert math.isnan(ev.value)
    elif value is not None:
        assert ev.value == value


def test_missing_log_is_a_user_error(tmp_path):
    from rednet.errors import UserError
    with pytest.raises(UserError, match="no such Caffe log"):
        logparse.parse_log(tmp_path / "nope.log")
