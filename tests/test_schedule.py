"""rednet.schedule: the order in which a run reads its database (pure functions, plus the list
and head files written from them).  No Caffe here."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARD_ROWS, write_db
from rednet import schedule as S


def _samples_of(plan: S.Plan, rows, n) -> list[tuple[int, int]]:
    """(shard, row) of the first ``n`` samples a plan makes Caffe read."""
    out = []
    if plan.head is not None:
        out += [(plan.head, r) for r in range(plan.head_row, rows[plan.head])]
    for i in plan.files:
        out += [(i, r) for r in range(rows[i])]
    return out[:n]


@pytest.mark.parametrize("seed", [None, 5])
def test_a_plan_from_sample_k_continues_the_plan_from_0(seed):
    rows = list(SHARD_ROWS)
    full = _samples_of(S.plan_schedule(rows, 0, 400, seed), rows, 400)
    assert len(full) == 400
    for k in (1, 16, 21, 37, 73, 144, 250, 399):
        plan = S.plan_schedule(rows, k, 400, seed)
        assert _samples_of(plan, rows, 400 - k) == full[k:], (seed, k)
        assert (plan.head is None) == (S.schedule_position([S.Shard(str(i), n, 0) for i, n in enumerate(rows)],
                                                           k, seed)[2] == 0)


def test_a_plan_covers_its_samples_and_one_epoch_more():
    rows = [5, 7, 3]
    for start, end in ((0, 1), (4, 30), (15, 15), (16, 100)):
        plan = S.plan_schedule(rows, start, end, seed=2)
        covered = start + plan.head_rows + sum(rows[i] for i in plan.files)
        assert covered >= end + sum(rows)
        # not more than needed: without its last file the plan would fall short
        assert covered - rows[plan.files[-1]] < end + sum(rows)


def test_epoch_order_is_a_seeded_permutation_per_epoch():
    assert S.epoch_order(4, 0, None) == S.epoch_order(4, 7, None) == [0, 1, 2, 3]
    assert S.epoch_order(6, 3, 11) == S.epoch_order(6, 3, 11)
    assert sorted(S.epoch_order(6, 3, 11)) == list(range(6))
    assert len({tuple(S.epoch_order(6, e, 11)) for e in range(6)}) > 1


def test_schedule_position_walks_the_epochs():
    shards = [S.Shard(str(i), n, 0) for i, n in enumerate((4, 2))]
    assert S.schedule_position(shards, 0, None) == (0, 0, 0)
    assert S.schedule_position(shards, 5, None) == (0, 1, 1)
    assert S.schedule_position(shards, 6, None) == (1, 0, 0)
    assert S.schedule_position(shards, 13, None) == (2, 0, 1)


def test_schedule_matches_uninterrupted_order(tmp_path):
    """The schedule started at sample k lists exactly the samples k, k+1, ... of the one started at 0."""
    import h5py
    lst = write_db(tmp_path / "db")
    shards = S.read_list(lst)

    def samples(start, n, seed):
        dest = tmp_path / f"s{start}.txt"
        S.write_schedule(dest, shards, start, start + n, seed, tmp_path / f"head{start}.h5", ("data", "label"))
        out = []
        for line in dest.read_text().split():
            with h5py.File(line, "r") as f:
                out.extend(np.asarray(f["data"])[:, 0, 0, 0])
        return np.array(out[:n])

    for seed in (None, 5):
        full = samples(0, 400, seed)
        for k in (16, 37, 73, 144, 250):
            assert np.array_equal(samples(k, 400 - k, seed), full[k:]), (seed, k)
    # with a seed the shard order changes between epochs
    n = sum(SHARD_ROWS)
    assert S.epoch_order(4, 0, 5) != S.epoch_order(4, 1, 5) or S.epoch_order(4, 2, 5) != S.epoch_order(4, 0, 5)
    assert sorted(S.epoch_order(4, 3, 5)) == [0, 1, 2, 3] and n == 73


def test_a_start_on_a_shard_boundary_removes_an_old_head(tmp_path):
    shards = S.read_list(write_db(tmp_path / "db"))
    head = tmp_path / "head.h5"
    rec = S.write_schedule(tmp_path / "a.txt", shards, 5, 100, None, head, ("data", "label"))
    assert head.is_file() and rec["head_rows"] == SHARD_ROWS[0] - 5
    rec = S.write_schedule(tmp_path / "a.txt", shards, SHARD_ROWS[0], 100, None, head, ("data", "label"))
    assert not head.exists() and rec["head_rows"] == 0 and rec["start_sample"] == SHARD_ROWS[0]


def test_a_bad_list_is_a_one_line_error(tmp_path):
    from rednet.errors import UserError
    with pytest.raises(UserError, match="HDF5 list file not found"):
        S.read_list(tmp_path / "none.txt")
    (tmp_path / "bad.txt").write_text(str(tmp_path / "missing.h5") + "\n")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        S.read_list(tmp_path / "bad.txt")
