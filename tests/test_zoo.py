"""The model zoo (models/<name>/): the shipped models, and exporting / restarting from one.

- every shipped card: the Model Zoo keys and ours, the caffemodel's sha1, the weights load
  into the folder's deploy net, and one real test image comes out clearly better;
- `zoo export` of a real (tiny) run through `bin/caffe`: files, card, sha1; a changed byte
  is caught by `zoo verify`;
- `train --from-model`: a new run continues from the zoo weights at their iteration, with
  Adam's moments estimated from the batches before it (equal to what Caffe's own Adam
  accumulates over those batches), and records it; from a checkpoint with its solver state,
  bitwise as the uninterrupted run.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from rednet import zoo
from test_train import cli, same_weights, train_args, write_toy

SHIPPED = zoo.folders(zoo.ZOO)
CHECKPOINTS = zoo.folders(zoo.CHECKPOINTS)


def test_the_zoo_ships_models():
    assert SHIPPED, f"no model folders with a {zoo.CARD} under models/"


@pytest.mark.parametrize("folder", SHIPPED + CHECKPOINTS, ids=[f"{f.parent.name}/{f.name}" for f in SHIPPED + CHECKPOINTS])
def test_shipped_card_matches_its_files(folder):
    card = zoo.verify(folder)                    # sha1, deploy net, blob shapes
    for k in zoo.CARD_KEYS:
        assert k in card
    assert card["patches_seen"] == card["iterations"] * card["batch"]
    assert card["training"]["cpus"] and card["training"]["wall_seconds"] > 0
    for f in folder.iterdir():
        assert f.stat().st_size < 20 * 2**20, f"{f}: over 20 MB"
    # Adam's moments go with a checkpoint only (so that it goes on exactly), named by its card
    states = list(folder.glob("*.solverstate"))
    assert states == ([folder / card["solverstate"]["file"]]
                      if folder.parent == zoo.CHECKPOINTS and "solverstate" in card else [])


@pytest.mark.parametrize("folder", SHIPPED, ids=[f.name for f in SHIPPED])
def test_shipped_model_restores_a_real_image(folder, datasets_dir):
    """Loaded into its deploy net by pycaffe, the model clearly improves a real test image
    (the first of the 14 images for denoising, the first Set5 image for SR)."""
    from rednet import metrics
    from rednet.restore import Restorer
    from rednet.tables import EvalConfig, load_images
    from rednet.tasks import get_task
    card = zoo.read_card(folder)
    task = get_task(card["task"])
    r = Restorer(folder / "deploy.prototxt", folder / card["caffemodel"])
    cfg = EvalConfig(datasets=datasets_dir, limit=1)
    if task.kind == "denoise":
        name, clean = load_images("denoise14", cfg)[0]
        for sigma in task.levels:
            noisy = metrics.add_noise(clean, sigma, f"zoo/{name}", 0)
            p_in, _ = metrics.denoise_scores(noisy, clean)
            p_out, _ = metrics.denoise_scores(r.restore(noisy.astype(np.float32), ensemble=False), clean)
            assert p_out > p_in + 3.0, (sigma, p_in, p_out)
    else:
        name, img = load_images("Set5", cfg)[0]
        for s in task.levels:
            hr, up = metrics.sr_pair(img, s)
            p_in, _ = metrics.sr_scores(up, hr, s, "authors")
            p_out, _ = metrics.sr_scores(r.restore(up.astype(np.float32), ensemble=False), hr, s, "authors")
            assert p_out > p_in + 0.5, (s, p_in, p_out)


# -- export and restart, on a tiny real run ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zoo")
    toy = write_toy(tmp / "toy", max_iter=40, snapshot=10)
    runs = tmp / "runs"
    r = cli(*train_args(toy, runs, "tiny", "--iters", "20"))
    assert r.returncode == 0, r.stderr + r.stdout
    return toy, runs / "tiny", tmp


def test_export_writes_a_card_that_verifies(tiny_run, datasets_dir):
    toy, run, tmp = tiny_run
    folder = zoo.export(run, "tiny-model", root=tmp / "models", datasets=datasets_dir)
    card = zoo.verify(folder)
    assert (card["net"], card["task"], card["iterations"], card["batch"]) == ("toy", "denoise-s30", 20, 16)
    assert card["sha1"] == zoo.sha1_file(folder / "tiny-model.caffemodel")
    assert card["caffe_commit"] == zoo.CAFFE_COMMIT
    info = json.loads((run / "run.json").read_text())
    assert card["training"]["cpus"] == [info["sessions"][-1]["cpu"]]
    assert card["database"]["train_list_sha256"] == info["config"]["train_list_sha256"]
    for f in ("deploy.prototxt", "curves.png", "sample.png", zoo.CARD):
        assert (folder / f).is_file(), f
    body = (folder / zoo.CARD).read_text()
    assert "make train NET=toy" in body and "![training loss" in body
    assert (card["validation"]["same_patches_from"], card["validation"]["patches_per_test"]) == (0, 16)
    assert "Every test read the same 16 patches." in body
    # one changed byte in the weights is caught
    w = folder / "tiny-model.caffemodel"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(zoo.UserError, match="sha1"):
        zoo.verify(folder)


def test_a_new_run_continues_from_zoo_weights(tiny_run, datasets_dir):
    """FROM_MODEL: the run starts at the model's iteration from its exact weights; only the
    optimiser's history is new (estimated), and run.json says so."""
    toy, run, tmp = tiny_run
    folder = zoo.export(run, "seed", root=tmp / "models2", datasets=datasets_dir)
    runs = tmp / "runs"
    r = cli(*train_args(toy, runs, "again", "--iters", "30", "--from-model", str(folder)))
    assert r.returncode == 0, r.stderr + r.stdout
    info = json.loads((runs / "again" / "run.json").read_text())
    s = info["sessions"][0]
    assert s["start_iter"] == 20 and s["end_iter"] == 30
    assert s["restart"]["iteration"] == 20 and s["restart"]["weights_sha1"] == zoo.read_card(folder)["sha1"]
    assert s["restart"]["optimizer_state"].startswith("Adam's moments estimated from the gradients of the 20 ")
    log = (runs / "again" / "train.log").read_text()
    assert "Iteration 20" in log and "Iteration 0," not in log
    # the starting weights are exactly the zoo's
    seed_model = runs / "again" / "snapshots" / "toy_denoise-s30_iter_20.caffemodel"
    assert same_weights(seed_model, folder / "seed.caffemodel")
    # exported into the same folder, the card counts the training before the restart once
    first = zoo.read_card(folder)
    zoo.export(runs / "again", "seed", root=folder.parent, datasets=datasets_dir)
    zoo.export(runs / "again", "seed", root=folder.parent, datasets=datasets_dir)   # twice: no double count
    card = zoo.read_card(folder)
    assert card["iterations"] == 30 and card["training"]["sessions"] == first["training"]["sessions"] + 1
    assert card["training"]["carried"]["from_sha1"] == first["sha1"]
    assert card["training"]["wall_seconds"] >= first["training"]["wall_seconds"]
    its = [int(line.split(",")[0]) for line in (folder / "curves.csv").read_text().splitlines()[1:]]
    assert its == sorted(its) and its[0] == 0 and its[-1] == 30     # the curve before the restart is kept
    assert card["validation"]["same_patches_from"] == 0     # ... and so is what its points measured
    # exported elsewhere (checkpoints/ -> models/) once the card it restarted from was replaced
    # by an earlier export of this run: that export's carried training is carried, once
    moved = zoo.export(runs / "again", "seed", root=tmp / "models3", datasets=datasets_dir)
    assert zoo.read_card(moved)["training"] == card["training"]
    # an existing run is not overwritten by a seed
    r = cli(*train_args(toy, runs, "again", "--iters", "40", "--from-model", str(folder)))
    assert r.returncode == 2 and "resumes from its own snapshots" in r.stderr
    # a model of another task is refused in one line
    card_path = folder / zoo.CARD
    card_path.write_text(card_path.read_text().replace("task: denoise-s30", "task: sr-x3"))
    r = cli(*train_args(toy, runs, "other", "--iters", "30", "--from-model", str(folder)))
    assert r.returncode == 2 and "not toy denoise-s30" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (runs / "other").exists()


def test_a_card_keeps_every_restart_of_its_history():
    """A model restarted twice (FROM_MODEL, then FROM_MODEL from that export) lists both
    restarts, oldest first, and exporting the same run again keeps them."""
    r1 = {"from": "models/m", "weights_sha1": "a" * 40, "iteration": 100, "optimizer_state": "reset"}
    r2 = {"from": "models/m", "weights_sha1": "b" * 40, "iteration": 200, "optimizer_state": "estimated"}
    totals = {"wall_seconds": 10, "sessions": 1, "cpus": ["cpu"], "blas_kernel": ["k"], "caffe_build": ["fast"]}
    at_200 = {"sha1": "b" * 40, "training": dict(totals, restarts=[r1], carried={"from_sha1": "a" * 40})}
    first = zoo._with_earlier_training(dict(totals, restarts=[r2]), at_200)
    assert first["restarts"] == [r1, r2] and first["sessions"] == 2
    again = zoo._with_earlier_training(dict(totals, restarts=[r2]), {"sha1": "c" * 40, "training": first})
    assert again["restarts"] == [r1, r2] and again["sessions"] == 2


@pytest.mark.parametrize("task, words", [("denoise-s30", "IN=noisy.png"), ("sr-x3", "IN=low-res.png"),
                                         ("denoise-mixed", "IN=noisy.png"), ("sr-mixed", "IN=low-res.png")])
def test_the_cards_restore_line_names_the_tasks_input(task, words):
    """An SR card's restore line takes a low-resolution image, a denoising card's a noisy one;
    a mixed model's names one level of its span (make restore takes no SIGMA/SCALE=mixed)."""
    card = zoo.read_card(SHIPPED[0])
    card = dict(card, task=task)
    line = next(l for l in zoo._body(card).splitlines() if l.startswith("make restore"))
    assert words in line and ("SCALE=3" in line if task.startswith("sr") else "SIGMA=30" in line)
    assert "=mixed" not in line


def test_the_curve_says_from_when_its_tests_read_the_same_patches():
    """A run resumed across the change of the validation pass: its points before the first
    session with a fixed pass read a moving window; the card says from which iteration on
    they compare."""
    moving, fixed = {"val": {"start_sample": 0}}, {"val": {"rows_per_test": 160}}
    sessions = [{"start_iter": 0, "schedule": moving}, {"start_iter": 20580, "schedule": fixed},
                {"start_iter": 23000, "schedule": fixed}]
    assert zoo._fixed_val_from({"sessions": sessions}) == (20580, 160)
    assert zoo._fixed_val_from({"sessions": sessions + [{"start_iter": 24000, "schedule": moving}]}) is None
    text = zoo._val_caption({"val_points": 50, "same_patches_from": 20580, "patches_per_test": 160})
    assert text.startswith("From iteration 20,580 on, every test read the same 160 patches")
    assert "moved on at every test" in zoo._val_caption({"val_points": 5})


def _history(state) -> list[np.ndarray]:
    from caffe.proto import caffe_pb2
    st = caffe_pb2.SolverState()
    st.ParseFromString(state.read_bytes())
    return [np.array(b.data, np.float64) for b in st.history]


def test_restart_moments_are_those_caffe_accumulates(tmp_path, datasets_dir):
    """FROM_MODEL's estimated Adam moments, checked against Caffe's own Adam: with base_lr 0
    the weights stay put, so after 20 iterations a run's .solverstate holds Adam's averages
    of exactly the 20 batches that a restart at iteration 20 estimates from, at the same
    weights; the restart's moments are those, bias-corrected (m / (1 - 0.9^20),
    v / (1 - 0.999^20)).  With the moments reset to zero (--moment-batches 0) they are zero."""
    toy = write_toy(tmp_path / "toy", lr=0, max_iter=40, snapshot=10)
    runs = tmp_path / "runs"
    assert cli(*train_args(toy, runs, "held", "--iters", "20")).returncode == 0
    folder = zoo.export(runs / "held", "held", root=tmp_path / "models", datasets=datasets_dir)
    r = cli(*train_args(toy, runs, "warm", "--iters", "21", "--from-model", str(folder), "--moment-batches", "20"))
    assert r.returncode == 0, r.stderr + r.stdout
    caffe_h = _history(runs / "held" / "snapshots" / "toy_denoise-s30_iter_20.solverstate")
    ours = _history(runs / "warm" / "snapshots" / "toy_denoise-s30_iter_20.solverstate")
    n = len(caffe_h) // 2
    assert len(ours) == len(caffe_h) and n > 0
    for k, (a, b) in enumerate(zip(ours, caffe_h)):
        c = (1 - 0.9 ** 20) if k < n else (1 - 0.999 ** 20)
        assert a.shape == b.shape and np.abs(b).max() > 0
        np.testing.assert_allclose(a * c, b, rtol=2e-3, atol=1e-6 * np.abs(b).max())
    r = cli(*train_args(toy, runs, "cold", "--iters", "21", "--from-model", str(folder), "--moment-batches", "0"))
    assert r.returncode == 0, r.stderr + r.stdout
    assert all(not h.any() for h in _history(runs / "cold" / "snapshots" / "toy_denoise-s30_iter_20.solverstate"))
    assert json.loads((runs / "cold" / "run.json").read_text())["sessions"][0]["restart"]["optimizer_state"] == \
        "reset (history zero)"


@pytest.mark.datasets
def test_cells_and_ensemble_gain_from_the_tables_records(tmp_path, monkeypatch, caffe, datasets_dir):
    """`make zoo-results` in small: the cells `tables` computed for a zoo model go into its
    card (ours, paper, difference, ensemble flag), and the gain table pairs the cells
    computed with and without the 8-orientation ensemble."""
    from test_restore import empty_zoo, make_model, make_zoo_model

    from rednet import tables
    models = empty_zoo(tmp_path, monkeypatch)
    deploy, weights = make_model(tmp_path / "made", caffe, depth=4, width=8, seed=5)
    folder = make_zoo_model(models, "red10_denoise-s30", "red10", "denoise-s30", deploy, weights)
    ens, single = tmp_path / "ens", tmp_path / "single"
    for out, e in ((ens, True), (single, False)):
        tables.run(tables.EvalConfig(datasets=datasets_dir, ensemble=e, limit=2, tables=(1,), out=out, zoo_only=True))
    assert zoo.cells(ens, root=models) == {"red10_denoise-s30": 1}
    (cell,) = zoo.read_card(folder)["cells"]
    paper = tables.read_paper()[(1, "denoise14", "sigma=30", "RED10")]
    assert (cell["table"], cell["setting"], cell["method"], cell["images"], cell["ensemble"]) == (1, "sigma=30", "RED10", 2, True)
    assert cell["paper_psnr"] == paper["psnr"] and cell["diff_psnr"] == pytest.approx(cell["psnr"] - paper["psnr"], abs=0.01)
    ours = [r for r in csv_rows(ens / "tables.csv") if r["source"] == "ours" and r["method"] == "RED10"]
    assert float(ours[0]["psnr"]) == pytest.approx(cell["psnr"], abs=1e-3)
    assert "| 1 | denoise14 | sigma=30 |" in (folder / zoo.CARD).read_text()
    rows = zoo.ensemble_gain(ens, single, tmp_path / "gain")
    assert len(rows) == 1 and rows[0]["gain_db"] == pytest.approx(rows[0]["psnr_ensemble"] - rows[0]["psnr_single"], abs=1e-3)
    assert rows[0]["psnr_single"] != rows[0]["psnr_ensemble"]
    assert (tmp_path / "gain.md").read_text().count("| 1 | denoise14 | sigma=30 | RED10 | 2 |") == 1


@pytest.mark.datasets
def test_shipped_cells_are_reused_only_where_their_record_matches(tmp_path, monkeypatch, caffe, datasets_dir):
    """`make zoo-results` ships every cell's per-image rows with their record; on a fresh clone
    (an empty results/) they are copied into the evaluation's cache and used without a forward
    pass, but not when the evaluation code's fingerprint differs or the weights changed."""
    from test_restore import empty_zoo, make_model, make_zoo_model

    from rednet import tables, zooresults
    models = empty_zoo(tmp_path, monkeypatch)
    deploy, weights = make_model(tmp_path / "made", caffe, depth=4, width=8, seed=5)
    make_zoo_model(models, "red10_denoise-s30", "red10", "denoise-s30", deploy, weights)

    def cfg(out):
        return tables.EvalConfig(datasets=datasets_dir, ensemble=False, limit=2, tables=(1,), out=out, zoo_only=True)
    first = tables.run(cfg(tmp_path / "first"))
    shipped = tmp_path / "docs" / "per_image"
    files = zooresults.cell_files(cfg(tmp_path / "first"), first, shipped)
    assert {p.suffix for p in files} == {".csv", ".json"} and len(files) == 2      # the one RED10 cell
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    key = (1, "denoise14", "sigma=30", "RED10")
    code = tables.eval_code_id()            # computed before the scoring function is wrapped
    scored = []
    real = tables._score_denoise
    monkeypatch.setattr(tables, "_score_denoise", lambda *a, **k: scored.append(a[-1]) or real(*a, **k))

    assert zooresults.seed_cells(shipped, tmp_path / "fresh") == 1
    again = tables.run(cfg(tmp_path / "fresh"))
    assert scored == [] and again["ours"][key] == pytest.approx(first["ours"][key], abs=1e-5)   # no forward pass
    assert zooresults.seed_cells(shipped, tmp_path / "fresh") == 0                # a valid cell is kept

    monkeypatch.setattr(tables, "_EVAL_CODE", "0" * 16)                          # other evaluation code
    assert zooresults.seed_cells(shipped, tmp_path / "other-code") == 1
    tables.run(cfg(tmp_path / "other-code"))
    assert len(scored) == 1

    monkeypatch.setattr(tables, "_EVAL_CODE", code)
    _, weights2 = make_model(tmp_path / "made2", caffe, depth=4, width=8, seed=6)   # retrained weights
    make_zoo_model(models, "red10_denoise-s30", "red10", "denoise-s30", deploy, weights2)
    assert zooresults.seed_cells(shipped, tmp_path / "retrained") == 1
    res = tables.run(cfg(tmp_path / "retrained"))
    assert len(scored) == 2 and res["ours"][key][0] != pytest.approx(first["ours"][key][0], abs=1e-3)


def csv_rows(p):
    import csv
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def test_a_cards_build_names_the_patch_set_where_recorded():
    """Sessions that recorded the build's origin put it in the card; older ones keep the label."""
    new = {"caffe_build": "fast", "caffe_version": "caffe.bin version 1.0.0-rc3",
           "caffe_origin": "brocolli-caffe-9.0.2+patches/fast@18632f9f2f7088a5"}
    assert zoo._build_label(new) == ("fast (caffe.bin version 1.0.0-rc3; "
                                     "brocolli-caffe-9.0.2+patches/fast@18632f9f2f7088a5)")
    old = {"caffe_build": "fast", "caffe_version": "caffe.bin version 1.0.0-rc3"}
    assert zoo._build_label(old) == "fast (caffe.bin version 1.0.0-rc3)"
    assert zoo._build_label({}) == "stock (?)"


def test_a_level_fine_tuned_from_the_mixed_model_says_so_and_carries_its_training(tmp_path, datasets_dir):
    """FROM_MODEL= a mixed model on a single-level task: accepted (a fine-tune, a deviation
    the card states), and the exported card carries the parent's training in its totals."""
    toy = write_toy(tmp_path / "toy", max_iter=40, snapshot=4)
    runs = tmp_path / "runs"
    args = [a if a != "denoise-s30" else "denoise-mixed" for a in train_args(toy, runs, "mixed", "--iters", "4")]
    assert cli(*args).returncode == 0
    parent = zoo.export(runs / "mixed", "toy_denoise-mixed", root=tmp_path / "zoo", datasets=datasets_dir)
    r = cli(*train_args(toy, runs, "level", "--iters", "8", "--from-model", str(parent), "--recipe", "finetune"))
    assert r.returncode == 2 and "RECIPE=finetune: the run's solver is the file" in r.stderr   # a given solver
    r = cli(*train_args(toy, runs, "level", "--iters", "8", "--from-model", str(parent)))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "fine-tuning toy denoise-s30 from" in r.stdout
    card = zoo.read_card(zoo.export(runs / "level", "toy_denoise-s30", root=tmp_path / "zoo", datasets=datasets_dir))
    p = zoo.read_card(parent)
    t = card["training"]
    assert t["fine_tuned_from"]["task"] == "denoise-mixed" and t["fine_tuned_from"]["iteration"] == 4
    assert t["wall_seconds"] >= p["training"]["wall_seconds"] and t["sessions"] == p["training"]["sessions"] + 1
    text = (parent.parent / "toy_denoise-s30" / zoo.CARD).read_text()
    assert "Fine-tuned from `" in text
    assert f"ITERS=8 FROM_MODEL={t['fine_tuned_from']['from']}" in text      # reproduced from the parent
    assert "ITERS=4\n" not in text                                # not the parent's run, as the level's
    r = cli(*train_args(toy, runs, "other", "--iters", "8", "--from-model", str(zoo.export(
        runs / "level", "lvl", root=tmp_path / "zoo2", datasets=datasets_dir))))
    assert r.returncode == 0                                    # the same task: a plain continuation


def test_a_fine_tuned_level_continued_from_its_checkpoint_still_names_its_parent(tmp_path, datasets_dir):
    """A level fine-tuned from the mixed model, checkpointed (with its solver state) and then
    continued from the checkpoint in a new run folder: the model exported at the end is still
    fine-tuned from the mixed model, and its card reproduces it from there, not from scratch."""
    toy = write_toy(tmp_path / "toy", max_iter=40, snapshot=4)
    runs = tmp_path / "runs"
    args = [a if a != "denoise-s30" else "denoise-mixed" for a in train_args(toy, runs, "mixed", "--iters", "4")]
    assert cli(*args).returncode == 0
    parent = zoo.export(runs / "mixed", "toy_denoise-mixed", root=tmp_path / "zoo", datasets=datasets_dir)
    r = cli(*train_args(toy, runs, "level", "--iters", "8", "--from-model", str(parent)))
    assert r.returncode == 0, r.stderr + r.stdout
    ck = zoo.export(runs / "level", "toy_denoise-s30", root=tmp_path / "checkpoints", datasets=datasets_dir,
                    solverstate=True)
    assert zoo.read_card(ck)["training"]["fine_tuned_from"]["iteration"] == 4
    r = cli(*train_args(toy, runs, "level-1", "--iters", "12", "--from-model", str(ck)))
    assert r.returncode == 0, r.stderr + r.stdout
    folder = zoo.export(runs / "level-1", "toy_denoise-s30", root=tmp_path / "zoo", datasets=datasets_dir)
    t = zoo.read_card(folder)["training"]
    assert t["fine_tuned_from"] == zoo.read_card(ck)["training"]["fine_tuned_from"]
    # the curve goes on from the checkpoint's (the fine-tune's first iterations), not from 8
    ck_rows = [r for r in zoo.read_curves(ck / "curves.csv") if r[0] < 8]
    assert ck_rows and ck_rows[0][0] == 4
    assert [r for r in zoo.read_curves(folder / "curves.csv") if r[0] < 8] == ck_rows
    assert t["sessions"] == zoo.read_card(parent)["training"]["sessions"] + 2
    text = (folder / zoo.CARD).read_text()
    assert "Fine-tuned from `" in text
    assert f"ITERS=12 FROM_MODEL={t['fine_tuned_from']['from']}" in text      # from the parent, in one run
    assert "ITERS=4\n" not in text and "ITERS=8" not in text                 # no run from scratch, no stop


def test_a_checkpoint_goes_on_exactly_as_the_run_would_have(tmp_path, datasets_dir):
    """A checkpoint (exported with its .solverstate) continued by FROM_MODEL= in a new run
    folder, as on another machine, ends bitwise where the uninterrupted run ends: the weights,
    Adam's moments from the committed state, the iteration, the data schedule, and the
    multistep schedule's position (two steps passed before the restart). Without the committed
    state (moments estimated) or with the step count at zero, the weights differ."""
    toy = write_toy(tmp_path / "toy", max_iter=40, snapshot=10, policy="multistep", gamma=0.5)
    with open(toy["solver"], "a") as f:
        f.write("stepvalue: 12\nstepvalue: 16\n")
    runs = tmp_path / "runs"
    for run, its in (("whole", "30"), ("first", "20")):
        r = cli(*train_args(toy, runs, run, "--iters", its))
        assert r.returncode == 0, r.stderr + r.stdout
    folder = zoo.export(runs / "first", "ck", root=tmp_path / "checkpoints", datasets=datasets_dir,
                        solverstate=True)
    card = zoo.verify(folder)
    assert card["solverstate"]["iteration"] == 20 and (folder / "ck.solverstate").is_file()
    r = cli(*train_args(toy, runs, "second", "--iters", "30", "--from-model", str(folder)))
    assert r.returncode == 0, r.stderr + r.stdout
    s = json.loads((runs / "second" / "run.json").read_text())["sessions"][0]
    assert s["restart"]["optimizer_state"].startswith("the solver state committed with the weights")
    end = "snapshots/toy_denoise-s30_iter_30.caffemodel"
    assert same_weights(runs / "second" / end, runs / "whole" / end)

    def losses(run):
        return [l.split("loss = ")[1] for l in (runs / run / "train.log").read_text().splitlines()
                if "Train net output #0" in l]
    assert losses("second") == losses("whole")[-len(losses("second")):]
    # the models/ export carries no state; the estimate does not end where the run does
    plain = zoo.export(runs / "first", "plain", root=tmp_path / "models", datasets=datasets_dir)
    assert "solverstate" not in zoo.read_card(plain) and not (plain / "plain.solverstate").exists()
    r = cli(*train_args(toy, runs, "estimated", "--iters", "30", "--from-model", str(plain)))
    assert r.returncode == 0, r.stderr + r.stdout
    assert not same_weights(runs / "estimated" / end, runs / "whole" / end)
    # a damaged state is refused in one line, before a run folder is made
    data = bytearray((folder / "ck.solverstate").read_bytes())
    data[-1] ^= 1
    (folder / "ck.solverstate").write_bytes(bytes(data))
    with pytest.raises(zoo.UserError, match="sha1"):
        zoo.verify(folder)
    r = cli(*train_args(toy, runs, "third", "--iters", "30", "--from-model", str(folder)))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "ck.solverstate" in r.stderr
    assert not (runs / "third").exists()
