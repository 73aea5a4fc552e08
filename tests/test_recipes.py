"""rednet.recipes: the training recipe of a run (RECIPE=, LR=, LR_STEPS=, LR_GAMMA=, BATCH=).

The rendering tests parse the solver with Caffe's own protobuf classes; the run tests train a
real RED10 preset through `bin/caffe train` on a tiny HDF5 database and read Caffe's log for
the learning rate it used.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_train import ROOT, cli, write_db

pytestmark = pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)")


def test_named_recipes_resolve_and_describe():
    from rednet import recipes
    assert recipes.DEFAULT == "paper" and recipes.RECIPES["paper"].is_paper()
    step = recipes.select("step").resolve(10_000)
    assert step.steps == (8_000,) and step.lr_policy == "multistep"
    assert step.lr_at(7_999) == pytest.approx(1e-4) and step.lr_at(8_000) == pytest.approx(1e-5)
    assert step.describe() == "step (lr 1e-4, x0.1 at 8,000)"
    custom = recipes.select("finetune", steps="51000", gamma="0.3").resolve(52_000)
    assert custom.to_dict() == {"name": "custom", "base_lr": 1e-5, "lr_policy": "multistep", "steps": [51_000],
                                "gamma": 0.3, "base": "finetune"}
    assert recipes.select() is None                       # nothing asked: the run's own, else the default
    big = recipes.select("step", batch="32").resolve(5_000)
    assert big.to_dict() == {"name": "custom", "base_lr": 1e-4, "lr_policy": "multistep", "steps": [4_000],
                             "gamma": 0.1, "base": "step", "batch": 32}
    assert big.describe() == "custom of step (lr 1e-4, x0.1 at 4,000, batch 32)"
    assert recipes.Recipe.from_dict(big.to_dict()) == big
    # the words that asked for a recipe, for messages about it
    assert recipes.select("step", batch="32").asked() == "RECIPE=step BATCH=32" and recipes.select(batch="32").asked() == "BATCH=32"
    assert step.asked() == "RECIPE=step" and custom.asked() == "RECIPE=finetune LR_STEPS=51000 LR_GAMMA=0.3"
    # what else the paper leaves open: the weights' filler, the biases' lr_mult, gradient clipping
    he = recipes.select(init="msra", bias_lr="1", clip="10")
    assert he.to_dict() == {"name": "custom", "base_lr": 1e-4, "lr_policy": "fixed", "base": "paper",
                            "init": "msra", "bias_lr": 1.0, "clip": 10.0}
    assert he.describe() == "custom of paper (lr 1e-4 constant, init msra, bias lr x1, clip 10)"
    assert he.asked() == "INIT=msra BIAS_LR=1 CLIP=10" and recipes.Recipe.from_dict(he.to_dict()) == he
    assert not {"init", "bias_lr", "clip"} & set(recipes.RECIPES["step"].resolve(100).to_dict())
    from rednet import zoo                                     # the card's "Reproduce it" words
    assert zoo._words_of(he, 1000) == " RECIPE=paper LR=0.0001 INIT=msra BIAS_LR=1 CLIP=10"
    # the default batch is not written, so runs recorded before BATCH= compare equal
    assert "batch" not in recipes.RECIPES["paper"].to_dict()
    assert recipes.Recipe.from_dict({"name": "paper", "base_lr": 1e-4, "lr_policy": "fixed"}).batch == 16


@pytest.mark.parametrize("kw, expect", [
    ({"name": "cosine"}, "RECIPE='cosine': expected one of paper, step, finetune"),
    ({"lr": "fast"}, "LR='fast': expected a positive number"),
    ({"lr": "-1e-4"}, "LR='-1e-4': expected a learning rate between 0 and 1"),
    ({"steps": "9000,8000"}, "LR_STEPS='9000,8000': expected increasing positive iterations"),
    ({"steps": "8k"}, "LR_STEPS='8k': expected iterations separated by commas"),
    ({"gamma": "0.5"}, "LR_GAMMA=0.5: the recipe has no steps to apply it at"),
    ({"batch": "big"}, "BATCH='big': expected a whole number of patches per iteration"),
    ({"batch": "0"}, "BATCH='0': expected between 1 and 1024 patches per iteration"),
    ({"init": "he"}, "INIT='he': expected one of xavier, msra"),
    ({"bias_lr": "0"}, "BIAS_LR='0': expected a number above 0 and at most 10"),
    ({"clip": "inf"}, "CLIP='inf': expected a number above 0"),
    ({"clip": "x"}, "CLIP='x': expected a positive number such as 10"),
])
def test_bad_recipes_are_one_line_errors(kw, expect):
    from rednet import recipes
    from rednet.errors import UserError
    with pytest.raises(UserError) as e:
        recipes.select(**kw)
    assert str(e.value).startswith(expect) and "\n" not in str(e.value)


def test_the_paper_recipe_renders_solvers_exactly_and_step_renders_multistep():
    from rednet import netgen, recipes
    from rednet.caffeio import parse_prototxt
    cfg = netgen.PRESETS["red30"]
    paper = netgen.render_solver(cfg, "sr-mixed", recipe=recipes.RECIPES["paper"])
    assert paper == netgen.render_solver(cfg, "sr-mixed") == (ROOT / "solvers/red30_sr-mixed.prototxt").read_text()
    text = netgen.render_solver(cfg, "sr-mixed", max_iter=10_000, recipe=recipes.select("step").resolve(10_000))
    sol = parse_prototxt(text, "SolverParameter", "step solver")
    assert (sol.lr_policy, list(sol.stepvalue), sol.gamma, sol.base_lr) == ("multistep", [8_000], pytest.approx(0.1),
                                                                          pytest.approx(1e-4))
    assert "# Iteration 8000: from here the rate is 1e-05." in text
    ft = parse_prototxt(netgen.render_solver(cfg, "sr-mixed", recipe=recipes.RECIPES["finetune"]),
                        "SolverParameter", "finetune solver")
    assert (ft.lr_policy, ft.base_lr) == ("fixed", pytest.approx(1e-5))


@pytest.fixture
def tiny_db(tmp_path):
    return (write_db(tmp_path / "db", seed=0), write_db(tmp_path / "db", rows=(16,), seed=1, name="val"))


def _train(tiny_db, runs: Path, *extra):
    train_list, val_list = tiny_db
    return cli("train", "--net", "red10", "--task", "denoise-s30", "--run", "r", "--runs-dir", str(runs),
               "--data", str(train_list), "--val", str(val_list), "--snapshot-every", "2", "--display", "1", "--no-progress", *extra)


def _logged_lr(log: Path) -> dict[int, float]:
    return {int(m.group(1)): float(m.group(2))
            for m in re.finditer(r"Iteration (\d+), lr = ([0-9.e+-]+)", log.read_text())}


def test_a_run_with_a_recipe_records_it_and_caffe_steps_the_rate(tiny_db, tmp_path):
    """A non-default recipe: the run's solver carries its fields, run.json records it, and
    Caffe's log shows the rate change at the step (LR_STEPS=3, x0.1)."""
    runs = tmp_path / "runs"
    r = _train(tiny_db, runs, "--iters", "4", "--recipe", "step", "--lr-steps", "3")
    assert r.returncode == 0, r.stderr + r.stdout
    run = runs / "r"
    sol = (run / "solver.prototxt").read_text()
    assert 'lr_policy: "multistep"' in sol and "stepvalue: 3" in sol and "gamma: 0.1" in sol
    info = json.loads((run / "run.json").read_text())
    assert info["recipe"] == {"name": "custom", "base_lr": 1e-4, "lr_policy": "multistep", "steps": [3],
                              "gamma": 0.1, "base": "step"}
    lr = _logged_lr(run / "train.log")
    assert lr[2] == pytest.approx(1e-4) and lr[3] == pytest.approx(1e-5), lr


def test_a_run_with_another_batch_trains_with_it_and_keeps_it(tiny_db, tmp_path):
    """BATCH=4: the run's training net (parsed with Caffe's protobuf classes) reads 4 patches
    per iteration, run.json and the solver's header say so, and it trains; resuming with
    another batch is refused in one line, resuming without BATCH keeps 4."""
    from rednet.caffeio import parse_prototxt
    runs = tmp_path / "runs"
    r = _train(tiny_db, runs, "--iters", "2", "--batch", "4")
    assert r.returncode == 0, r.stderr + r.stdout
    run = runs / "r"
    net = parse_prototxt((run / "train.prototxt").read_text(), "NetParameter", "run's train net")
    assert [l.hdf5_data_param.batch_size for l in net.layer if l.type == "HDF5Data"] == [4]
    info = json.loads((run / "run.json").read_text())
    assert info["batch_size"] == 4 and info["recipe"]["batch"] == 4 and info["recipe"]["name"] == "custom"
    assert "batch 4," in (run / "solver.prototxt").read_text()
    before = (run / "run.json").read_text()
    r = _train(tiny_db, runs, "--iters", "4", "--batch", "8")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "batch 4); RECIPE custom of paper (lr 1e-4 constant, batch 8) would change it" in r.stderr
    assert (run / "run.json").read_text() == before
    r = _train(tiny_db, runs, "--iters", "4")
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads((run / "run.json").read_text())["batch_size"] == 4


def test_init_bias_lr_and_clip_render_into_the_nets_and_solver():
    """INIT=msra, BIAS_LR=1, CLIP=10 as Caffe's protobuf classes read the rendered files: every
    weight layer's filler and bias lr_mult, the solver's clip_gradients; the defaults render
    the committed gen/ and solvers/ files (checked by `make nets-check` too)."""
    from rednet import netgen, recipes
    from rednet.caffeio import parse_prototxt
    cfg = netgen.get_preset("red10")
    r = recipes.select("step", init="msra", bias_lr="1", clip="10").resolve(1000)
    net = parse_prototxt(netgen.render_train(cfg, "denoise-s30", "train", init=r.init, bias_lr=r.bias_lr),
                         "NetParameter", "train net")
    weights = [l for l in net.layer if l.type in ("Convolution", "Deconvolution")]
    assert len(weights) == 10
    assert {l.convolution_param.weight_filler.type for l in weights} == {"msra"}
    assert {(l.param[0].lr_mult, l.param[1].lr_mult) for l in weights} == {(1.0, 1.0)}
    sol = parse_prototxt(netgen.render_solver(cfg, "denoise-s30", recipe=r), "SolverParameter", "solver")
    assert sol.clip_gradients == 10 and sol.lr_policy == "multistep"
    assert netgen.render_train(cfg, "denoise-s30", "train") == (ROOT / "gen/red10/denoise-s30/train.prototxt").read_text()
    assert parse_prototxt(netgen.render_solver(cfg, "denoise-s30"), "SolverParameter", "solver").clip_gradients == -1


def test_a_run_trains_with_msra_init_bias_lr_and_clipping(tiny_db, tmp_path):
    """Caffe really uses them: the weights start He-scaled (std sqrt(2 / fan_in), not
    Xavier's sqrt(1 / fan_in)), the biases move 10x as fast, Caffe logs the clipping; run.json
    records the fields and resuming with another CLIP is refused."""
    import numpy as np
    from test_train import weights
    runs = tmp_path / "runs"

    def conv2(run):
        w = weights(runs / run / "snapshots" / "red10_denoise-s30_iter_2.caffemodel")["conv2"]
        return float(w[0].std()), float(np.abs(w[1]).max())
    assert _train(tiny_db, runs, "--iters", "2").returncode == 0
    (runs / "r").rename(runs / "xavier")
    r = _train(tiny_db, runs, "--iters", "2", "--init", "msra", "--bias-lr", "1", "--clip", "1e-3")
    assert r.returncode == 0, r.stderr + r.stdout
    (w_std, b_max), (x_std, x_bmax) = conv2("r"), conv2("xavier")
    fan_in = 9 * 64
    assert w_std == pytest.approx((2 / fan_in) ** 0.5, rel=0.05) and x_std == pytest.approx(fan_in ** -0.5, rel=0.05)
    assert b_max > 3 * x_bmax and x_bmax < 3e-5, (b_max, x_bmax)
    assert "Gradient clipping: scaling down gradients" in (runs / "r" / "train.log").read_text()
    rec = json.loads((runs / "r" / "run.json").read_text())["recipe"]
    assert (rec["init"], rec["bias_lr"], rec["clip"]) == ("msra", 1.0, 1e-3)
    before = (runs / "r" / "run.json").read_text()
    r = _train(tiny_db, runs, "--iters", "4", "--init", "msra", "--bias-lr", "1", "--clip", "10")
    assert r.returncode == 2 and "would change it mid-run" in r.stderr and r.stderr.strip().count("\n") == 0
    assert (runs / "r" / "run.json").read_text() == before


def test_a_recipe_or_batch_with_a_given_solver_is_refused_naming_what_was_asked(tmp_path):
    """--solver keeps its file's fields: BATCH= (or RECIPE=) with it is refused in one line
    that names the field given, and no run folder is made."""
    from test_train import train_args, write_toy
    toy, runs = write_toy(tmp_path / "toy"), tmp_path / "runs"
    for extra, words in ((("--batch", "32"), "BATCH=32: "), (("--recipe", "step"), "RECIPE=step: ")):
        r = cli(*train_args(toy, runs, "t", *extra))
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
        assert r.stderr.strip().startswith(f"error: {words}the run's solver is the file "), r.stderr
    assert not (runs / "t").exists()


def test_resuming_keeps_the_recipe_and_refuses_another(tiny_db, tmp_path):
    runs = tmp_path / "runs"
    assert _train(tiny_db, runs, "--iters", "2", "--recipe", "finetune").returncode == 0
    run = runs / "r"
    before = (run / "solver.prototxt").read_text(), (run / "run.json").read_text()
    r = _train(tiny_db, runs, "--iters", "4", "--recipe", "paper")
    assert r.returncode == 2 and (run / "run.json").read_text() == before[1]
    assert r.stderr.strip().count("\n") == 0
    assert "trained with the recipe finetune (lr 1e-5 constant); RECIPE paper (lr 1e-4 constant) would change it" \
        in r.stderr
    r = _train(tiny_db, runs, "--iters", "4")              # no RECIPE: the run's own
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads((run / "run.json").read_text())["recipe"]["name"] == "finetune"
    assert all(v == pytest.approx(1e-5) for v in _logged_lr(run / "train.log").values())


def test_a_run_made_before_recipes_resumes_with_the_papers(tiny_db, tmp_path):
    """run.json without ``recipe`` (every run before this option): the paper's, and it resumes."""
    runs = tmp_path / "runs"
    assert _train(tiny_db, runs, "--iters", "2").returncode == 0
    rec = runs / "r" / "run.json"
    info = json.loads(rec.read_text())
    assert info.pop("recipe")["name"] == "paper"
    rec.write_text(json.dumps(info, indent=2) + "\n")
    r = _train(tiny_db, runs, "--iters", "4")
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads(rec.read_text())["iterations_trained"] == 4


def test_a_no_op_leaves_the_run_as_it_is(tiny_db, tmp_path):
    """ITERS=1 on a run already at 2: 'nothing to do', and its solver and run.json unchanged."""
    runs = tmp_path / "runs"
    assert _train(tiny_db, runs, "--iters", "2").returncode == 0
    run = runs / "r"
    files = {p: p.read_bytes() for p in (run / "solver.prototxt", run / "run.json")}
    r = _train(tiny_db, runs, "--iters", "1")
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stderr + r.stdout
    assert {p: p.read_bytes() for p in files} == files


@pytest.mark.datasets
def test_a_card_lists_every_recipe_of_its_history(tiny_db, tmp_path, datasets_dir):
    """A model continued with another recipe (FROM_MODEL= and RECIPE=finetune): its card keeps
    the earlier stretch's recipe, says both, and its "Reproduce it" trains both stretches."""
    from rednet import zoo
    runs, models = tmp_path / "runs", tmp_path / "zoo"
    assert _train(tiny_db, runs, "--iters", "2").returncode == 0
    folder = zoo.export(runs / "r", "red10_denoise-s30", root=models, datasets=datasets_dir)
    assert "&id" not in (folder / zoo.CARD).read_text()          # a first export: no YAML anchors either
    train_list, val_list = tiny_db
    r = cli("train", "--net", "red10", "--task", "denoise-s30", "--run", "ft", "--runs-dir", str(runs),
            "--data", str(train_list), "--val", str(val_list), "--snapshot-every", "2", "--no-progress",
            "--iters", "4", "--from-model", str(folder), "--recipe", "finetune", "--moment-batches", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    card = zoo.read_card(zoo.export(runs / "ft", "red10_denoise-s30", root=models, datasets=datasets_dir))
    hist = card["solver"]["recipes"]
    assert [(h["from_iteration"], h["recipe"]["name"]) for h in hist] == [(0, "paper"), (2, "finetune")]
    text = (folder / zoo.CARD).read_text()
    assert "from iteration 0 the recipe paper (lr 1e-4 constant); from iteration 2 the recipe finetune" in text
    assert "make train NET=red10 TASK=denoise SIGMA=30 ITERS=2\n" in text
    assert "ITERS=4 RUN=red10_denoise-s30-1 FROM_MODEL=checkpoints/red10_denoise-s30 RECIPE=finetune" in text
    assert "&id" not in text and "&id" not in (runs.parent / "zoo" / "red10_denoise-s30" / zoo.CARD).read_text()


@pytest.mark.parametrize("it", [15500, 20000])
def test_reproduce_lines_give_the_recorded_steps_at_any_export(it):
    """A card's "Reproduce it" trains each stretch with the learning rates it had. A `step`
    run of 20,000 iterations (x0.1 at 16,000) exported at 15,500 was reproduced as
    `ITERS=15500 RECIPE=step`, which steps at 12,400; the line now names the step, and every
    line's words, parsed as make would pass them, resolve to the recorded recipe."""
    from rednet import recipes, zoo
    step = recipes.RECIPES["step"].resolve(20000).to_dict()
    card = {"name": "red30_denoise-mixed", "task": "denoise-mixed",
            "solver": {"recipe": step, "recipes": [
                {"from_iteration": 0, "recipe": recipes.RECIPES["paper"].to_dict()},
                {"from_iteration": 10000, "recipe": step}]}}
    lines = [l for l in zoo._train_lines(card, "red30", "TASK=denoise SIGMA=mixed", it) if "make train" in l]
    assert len(lines) == 2 and lines[0].endswith("ITERS=10000")
    words = dict(w.split("=", 1) for w in lines[1].split()[2:])
    got = recipes.select(words.get("RECIPE"), words.get("LR"), words.get("LR_STEPS"), words.get("LR_GAMMA"))
    got = got.resolve(int(words["ITERS"]))
    assert (got.base_lr, got.steps, got.gamma) == (1e-4, (16000,), 0.1), lines[1]
    assert ("LR_STEPS=16000" in lines[1]) == (it != 20000)
    # one stretch (a model trained with one recipe), exported before its budget: the same
    single = dict(card, solver={"recipe": step, "recipes": [{"from_iteration": 0, "recipe": step}]})
    line = zoo._train_lines(single, "red30", "TASK=denoise SIGMA=mixed", it)[0]
    words = dict(w.split("=", 1) for w in line.split()[2:])
    got = recipes.select(words.get("RECIPE"), words.get("LR"), words.get("LR_STEPS"), words.get("LR_GAMMA"))
    assert got.resolve(int(words["ITERS"])).steps == (16000,), line
    # a recipe with another batch: its line gives BATCH= and resolves to the same recipe
    big = recipes.select("step", batch="32").resolve(20000)
    line = zoo._train_lines(dict(card, solver={"recipe": big.to_dict(), "recipes": [
        {"from_iteration": 0, "recipe": big.to_dict()}]}), "red30", "TASK=denoise SIGMA=mixed", it)[0]
    words = dict(w.split("=", 1) for w in line.split()[2:])
    assert words["BATCH"] == "32", line
    got = recipes.select(words.get("RECIPE"), words.get("LR"), words.get("LR_STEPS"), words.get("LR_GAMMA"),
                         words.get("BATCH")).resolve(int(words["ITERS"]))
    assert got.to_dict() == big.to_dict(), line


def test_a_fine_tuned_cards_reproduce_lines_start_from_its_parent():
    """A level fine-tuned from the mixed model was reproduced as a from-scratch run of the
    level with the parent's stretches (`TASK=denoise SIGMA=30 ITERS=10000`, then the parent's
    step), which is not how it was made: its lines now start from the parent's weights, with
    the fine-tune's own recipe, and point to the parent's card for the rest."""
    from rednet import recipes, zoo
    step = recipes.RECIPES["step"].resolve(20000).to_dict()
    ft = recipes.RECIPES["finetune"].to_dict()
    card = {"name": "red30_denoise-s30", "task": "denoise-s30",
            "training": {"fine_tuned_from": {"from": "models/red30_denoise-mixed", "task": "denoise-mixed",
                                             "iteration": 20000, "sha1": "faef7eb6f0af" + "0" * 28}},
            "solver": {"recipe": ft, "recipes": [
                {"from_iteration": 0, "recipe": recipes.RECIPES["paper"].to_dict()},
                {"from_iteration": 10000, "recipe": step},
                {"from_iteration": 20000, "recipe": ft}]}}
    lines = zoo._train_lines(card, "red30", "TASK=denoise SIGMA=30", 23000)
    trains = [l for l in lines if l.startswith("make train")]
    assert len(trains) == 1, lines
    words = dict(w.split("=", 1) for w in trains[0].split()[2:])
    assert words["FROM_MODEL"] == "models/red30_denoise-mixed" and words["ITERS"] == "23000"
    got = recipes.select(words.get("RECIPE"), words.get("LR"), words.get("LR_STEPS"), words.get("LR_GAMMA"))
    assert (got.base_lr, got.steps) == (1e-5, ()), trains[0]
    assert lines[0].startswith("# first models/red30_denoise-mixed at 20,000 iterations")
    assert lines[-1] == "make zoo-export RUN=red30_denoise-s30 NAME=red30_denoise-s30"
    # a fine-tune that changed its recipe later: two runs of its own, the first from the parent
    card["solver"]["recipes"].append({"from_iteration": 22000, "recipe": dict(ft, base_lr=3e-6, name="custom",
                                                                             base="finetune")})
    trains = [l for l in zoo._train_lines(card, "red30", "TASK=denoise SIGMA=30", 23000) if l.startswith("make train")]
    assert len(trains) == 2 and "FROM_MODEL=models/red30_denoise-mixed" in trains[0] and "ITERS=22000" in trains[0]
    assert "FROM_MODEL=checkpoints/red30_denoise-s30" in trains[1] and "LR=3e-06" in trains[1], trains
