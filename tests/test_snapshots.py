"""rednet.snapshots: checking snapshot pairs, quarantine, pruning, the disk check.

The snapshots here are written with caffe_pb2 directly (a one-layer net); the runs that make
real ones are in tests/test_train.py.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from rednet import snapshots as S
from rednet.errors import UserError

SHAPES = [("conv1", [(2, 1, 3, 3), (2,)])]


def _fill(blobs, value: float) -> None:
    """One blob of each of SHAPES' parameter shapes, every value ``value``."""
    for shp in SHAPES[0][1]:
        b = blobs.add()
        b.shape.dim.extend(shp)
        b.data.extend([value] * math.prod(shp))


def write_pair(folder: Path, it: int, history: int = 2, prefix: str = "toy") -> tuple[Path, Path]:
    """``<prefix>_iter_<it>.caffemodel`` and ``.solverstate``, complete, as Caffe writes them."""
    from caffe.proto import caffe_pb2
    folder.mkdir(parents=True, exist_ok=True)
    net = caffe_pb2.NetParameter()
    layer = net.layer.add()
    layer.name, layer.type = "conv1", "Convolution"
    _fill(layer.blobs, 0.5)
    model = folder / f"{prefix}_iter_{it}.caffemodel"
    model.write_bytes(net.SerializeToString())
    st = caffe_pb2.SolverState()
    st.iter = it
    st.learned_net = str(model)
    for _ in range(history):
        _fill(st.history, 0.0)
    state = folder / f"{prefix}_iter_{it}.solverstate"
    state.write_bytes(st.SerializeToString())
    return model, state


def test_a_complete_pair_checks_and_cut_ones_do_not(tmp_path):
    snap = tmp_path / "snapshots"
    model, state = write_pair(snap, 10)
    assert S.check_snapshot(state, model, 10, SHAPES) is None
    assert S.check_model(model, SHAPES) == (None, [18, 2])
    assert "iteration 10, file name 20" in S.check_snapshot(state, model, 20, SHAPES)
    state.write_bytes(state.read_bytes()[:-7])
    assert "truncated" in S.check_snapshot(state, model, 10, SHAPES)
    model.write_bytes(model.read_bytes()[:30])
    assert S.check_model(model, SHAPES)[0] is not None
    assert S.check_snapshot(state, None, 10, SHAPES) == "no .caffemodel"


def test_newest_valid_snapshot_quarantines_the_cut_ones(tmp_path):
    snap, q = tmp_path / "snapshots", tmp_path / "quarantine"
    write_pair(snap, 10)
    model, _ = write_pair(snap, 20)
    model.write_bytes(model.read_bytes()[:-5])
    said = []
    it, state = S.newest_valid_snapshot(snap, q, SHAPES, log=said.append)
    assert it == 10 and state.name == "toy_iter_10.solverstate"
    assert sorted(p.name for p in q.iterdir()) == ["README.txt", "toy_iter_20.caffemodel", "toy_iter_20.solverstate"]
    assert "iteration 20 is unusable" in said[0]
    assert "iteration 20:" in (q / "README.txt").read_text()
    assert sorted(S.snapshot_files(snap)) == [10]


def test_trained_to_counts_complete_weights_only(tmp_path):
    snap, q = tmp_path / "snapshots", tmp_path / "quarantine"
    write_pair(snap, 10)
    model, _ = write_pair(snap, 20)
    model.write_bytes(b"")
    assert S.trained_to(snap, q, SHAPES, fallback=0) == 10
    assert (q / "toy_iter_20.caffemodel").is_file()
    assert S.trained_to(tmp_path / "none", q, SHAPES, fallback=7) == 7


def test_quarantine_never_overwrites(tmp_path):
    q = tmp_path / "quarantine"
    for k in range(2):
        f = tmp_path / "a_iter_1.caffemodel"
        f.write_text(str(k))
        S.quarantine(q, [f], f"try {k}")
    assert len([p for p in q.iterdir() if p.name.startswith("a_iter_1")]) == 2


def test_prune_keeps_the_newest_states_up_to_the_last_good_iteration(tmp_path):
    snap = tmp_path / "snapshots"
    for it in (10, 20, 30, 40):
        write_pair(snap, it)
    S.prune_states(snap, keep_from=30)
    files = S.snapshot_files(snap)
    assert sorted(it for it, p in files.items() if "state" in p) == [30, 40][:S.KEEP_SOLVERSTATES]
    assert sorted(files) == [10, 20, 30, 40]                 # weights are all kept
    S.prune_states(snap, keep_from=None)
    assert sorted(it for it, p in S.snapshot_files(snap).items() if "state" in p) == [30, 40]


def test_no_disk_space_for_snapshots(tmp_path):
    S.check_disk(tmp_path, n_params=10_000, history=2, snapshots_left=3, free=10 * 2**30)
    with pytest.raises(UserError, match=r"MiB free on its disk.*snapshot"):
        S.check_disk(tmp_path, n_params=5_000_000, history=2, snapshots_left=200, free=500 * 2**20)


def test_a_seed_snapshot_is_a_valid_pair_at_its_iteration(tmp_path):
    weights, _ = write_pair(tmp_path / "zoo", 1582, prefix="w")
    seed = S.Seed(weights, 1582, "sha1", "models/w")
    state = S.seed_snapshot(str(tmp_path / "run" / "snap"), seed, SHAPES, history=2)
    assert state.name == "snap_iter_1582.solverstate"
    assert S.check_snapshot(state, tmp_path / "run" / "snap_iter_1582.caffemodel", 1582, SHAPES) is None
    with pytest.raises(UserError, match="does not fit this run's net"):
        S.seed_snapshot(str(tmp_path / "run2" / "snap"), seed, [("conv1", [(3, 1, 3, 3), (3,)])], history=2)
