"""The paper's analysis nets (Section 2.1.1, Figure 3) as docs/nets.md gives them.

The recipes are read from docs/nets.md ("The paper's analysis nets"), so the page and the
test cannot drift apart:

- every `gen` line gives the net the paper describes (depth, decoder, strides, skips,
  input residual), and every `make train` / `make curves` line names those nets and tasks;
- each net renders and loads in stock Caffe (pycaffe): the deploy net runs and keeps the
  input size, the train and test nets run on a tiny database of the task's patch size;
  Figure 3(a)'s nets go 243 -> 81 -> 27 -> 9 -> 3 -> 1 -> 3 -> ... -> 243, blob by blob;
- in a copy of the repository (its own gen/, solvers/, runs/, data/db/), the `gen` lines
  at 4 feature maps and `make train NET=<net> TASK=... ITERS=2` for every custom net, on
  tiny HDF5 databases written with h5py: the real `make train`, `rednet train` and
  `bin/caffe train`; an unknown NET is a one-line error;
- slow (``--runslow``): every command of the recipes as written (64 maps, presets too),
  ``make data`` replaced by the tiny databases and ``ITERS=2`` added.

Caffe's forward pass of the 5-layer convolution-only net and of Figure 3(a)'s nets against
the numpy reference is in tests/test_nets_caffe.py.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rednet import netgen, refnet
from rednet.tasks import get_task, task_from_words

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## The paper's analysis nets"

pytestmark = pytest.mark.skipif(not (ROOT / ".caffe" / "env").is_file(), reason="Caffe not set up (make setup)")

# What the paper describes, net by net (every net: 64 maps, 1 channel, 3x3 kernels).
EXPECTED = {
    "fcn5": dict(depth=5, decoder="conv", skip=None, stride=1, input_residual=True),
    "fcn10": dict(depth=10, decoder="conv", skip=None, stride=1, input_residual=True),
    "fig3a": dict(depth=10, decoder="deconv", skip=None, stride=3, down=5, input_residual=False),
    "fig3a-skip": dict(depth=10, decoder="deconv", skip=2, shortcuts="mirror", stride=3, down=5,
                       input_residual=False),
    "red20-noskip": dict(depth=20, decoder="deconv", skip=None, stride=1, input_residual=True),
    "red30-noskip": dict(depth=30, decoder="deconv", skip=None, stride=1, input_residual=True),
    "block4-red": dict(depth=30, decoder="deconv", skip=4, shortcuts="mirror", input_residual=True),
    "block2-he": dict(depth=30, decoder="deconv", skip=2, shortcuts="sequential", input_residual=True),
    "block4-he": dict(depth=30, decoder="deconv", skip=4, shortcuts="sequential", input_residual=True),
}
# recipe -> the runs it trains (net, task)
TRAINED = {
    "Section 2.1.1": {("fcn5", "denoise-s30"), ("fcn10", "denoise-s30"), ("red10", "denoise-s30")},
    "Figure 3(a)": {("fig3a", "denoise-s70-p243"), ("fig3a-skip", "denoise-s70-p243")},
    "Figure 3(b)": {("red10", "denoise-s70"), ("red20-noskip", "denoise-s70"), ("red30-noskip", "denoise-s70"),
                    ("red20", "denoise-s70"), ("red30", "denoise-s70")},
    "Figure 3(c)": {("red30", "denoise-s70"), ("block4-red", "denoise-s70"), ("block2-he", "denoise-s70"),
                    ("block4-he", "denoise-s70")},
}
TINY_PATCH = 16          # patches of the tiny databases for 50x50 tasks (the nets take any size)


def recipes() -> dict[str, list[str]]:
    """The commands of each recipe of docs/nets.md's analysis section: title -> lines."""
    text = (ROOT / "docs" / "nets.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    out = {}
    for m in re.finditer(r"^### (.+?)\n(.*?)(?=^### |\Z)", section, re.S | re.M):
        blocks = re.findall(r"```sh\n(.*?)```", m.group(2), re.S)
        assert len(blocks) == 1, f"recipe {m.group(1)!r}: expected one sh block"
        key = next((k for k in TRAINED if m.group(1).startswith(k)), m.group(1))
        out[key] = [line.strip() for line in blocks[0].splitlines() if line.strip()]
    return out


def gen_args(line: str) -> list[str]:
    words = shlex.split(line)
    assert words[:4] == ["bin/python", "-m", "rednet", "gen"], line
    return words[4:]


def parse_gen(line: str) -> tuple[netgen.NetConfig, list[str]]:
    parser = argparse.ArgumentParser()
    netgen.register(parser.add_subparsers())
    args = parser.parse_args(["gen", *gen_args(line)])
    return netgen.config_from_args(args), [get_task(t).name for t in args.task or []]


def make_vars(line: str) -> dict[str, str]:
    words = shlex.split(line)
    assert words[0] == "make", line
    return dict(w.split("=", 1) for w in words[2:]) | {"target": words[1]}


def train_task(v: dict) -> str:
    """The task a `make train` / `make data` line names (TASK= with SIGMA= or SCALE=)."""
    return task_from_words(v["TASK"], v.get("SIGMA"), v.get("SCALE"))


def all_gen_lines() -> dict[str, str]:
    return {parse_gen(line)[0].name: line for lines in recipes().values() for line in lines
            if line.startswith("bin/python -m rednet gen ")}


# -- the recipes say what the paper says -------------------------------------------------
def test_recipes_describe_the_paper_nets():
    rec = recipes()
    assert set(rec) == set(TRAINED), sorted(rec)
    made = {}
    for title, lines in rec.items():
        gens = [parse_gen(line) for line in lines if line.startswith("bin/python")]
        for cfg, tasks in gens:
            want = dict(width=64, channels=1, **EXPECTED[cfg.name])
            assert {k: getattr(cfg, k) for k in want} == want, cfg
            assert len(tasks) == 1, f"{cfg.name}: one --task per net"
            made[cfg.name] = tasks[0]
        make = [make_vars(line) for line in lines if line.startswith("make ")]
        runs = {(v["NET"], train_task(v)) for v in make if v["target"] == "train"}
        assert runs == TRAINED[title], title
        for net, task in runs:
            assert net in netgen.PRESETS or made[net] == task, (net, task)
        data = [train_task(v) for v in make if v["target"] == "data"]
        assert sorted(data) == sorted({t for _, t in runs}), title
        curves = [v for v in make if v["target"] == "curves"]
        assert len(curves) == 1 and set(curves[0]["RUNS"].split()) == {f"{n}_{t}" for n, t in runs}
    assert set(made) == set(EXPECTED)
    assert made["fig3a"] == "denoise-s70-p243" and get_task("denoise-s70-p243").patch == 243


# -- each net renders and loads in Caffe --------------------------------------------------
def _tiny_h5(path: Path, n: int, patch: int, seed: int) -> Path:
    import h5py
    rng = np.random.default_rng(seed)
    label = rng.random((n, 1, patch, patch), dtype=np.float32)
    with h5py.File(path, "w") as f:
        f["data"] = (label + 0.27 * rng.standard_normal(label.shape)).astype(np.float32)
        f["label"] = label
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_net_renders_and_runs_in_caffe(caffe, tmp_path, name):
    cfg, (task,) = parse_gen(all_gen_lines()[name])
    f = cfg.factor
    h, w = (f, 2 * f) if f > 1 else (23, 19)
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(netgen.render_deploy(cfg, (h, w)))
    net = caffe.Net(str(deploy), caffe.TEST)
    shapes = {k: (v[0].data.shape, v[1].data.shape) for k, v in net.params.items()}
    for k, (wt, b) in refnet.random_params(cfg, np.random.default_rng(0), shapes).items():
        net.params[k][0].data[...], net.params[k][1].data[...] = wt, b
    net.blobs["data"].data[...] = np.random.default_rng(1).random((1, 1, h, w))
    out = net.forward()["output"]
    assert out.shape == (1, 1, h, w) and np.isfinite(out).all()
    assert len(net.params) == cfg.depth
    # the train and test nets on a tiny database of the task's patch size
    patch = get_task(task).patch if get_task(task).patch != 50 else TINY_PATCH
    lst = tmp_path / "list.txt"
    lst.write_text(str(_tiny_h5(tmp_path / "db.h5", 16, patch, 2)) + "\n")
    for phase in ("train", "test"):
        text = netgen.render_train(cfg, task, phase)
        assert f'source: "data/db/{task}/{"train" if phase == "train" else "val"}.txt"' in text
        p = tmp_path / f"{phase}.prototxt"
        p.write_text(re.sub(r'source: "[^"]*"', f'source: "{lst}"', text))
        tnet = caffe.Net(str(p), caffe.TRAIN if phase == "train" else caffe.TEST)
        assert tnet.blobs["data"].data.shape == (16, 1, patch, patch)
        loss = float(tnet.forward()["loss"])
        assert np.isfinite(loss) and loss > 0


def test_figure_3a_goes_to_1x1_and_back_in_caffe(caffe, tmp_path):
    """Stride-3 convolutions: 243 -> 81 -> 27 -> 9 -> 3 -> 1 (a vector), deconvolutions back
    to 243; the skipped net adds c4 (3x3) to deconv1 and c2 (27x27) to deconv3."""
    lines = all_gen_lines()
    for name in ("fig3a", "fig3a-skip"):
        cfg = parse_gen(lines[name])[0]
        p = tmp_path / f"{name}.prototxt"
        p.write_text(netgen.render_deploy(cfg))                # its default size: 243 x 243
        net = caffe.Net(str(p), caffe.TEST)
        sizes = [net.blobs[b].data.shape[2:] for b in ("data", "c1", "c2", "c3", "c4", "c5",
                                                         "d1", "d2", "d3", "d4", "output")]
        assert [s[0] for s in sizes] == [243, 81, 27, 9, 3, 1, 3, 9, 27, 81, 243]
        assert all(a == b for a, b in sizes)
        assert net.blobs["c5"].data.shape == (1, 64, 1, 1)
        sums = sorted(b for b in net.blobs if b.endswith("_sum"))
        assert sums == ([] if cfg.skip is None else ["d1_sum", "d3_sum"])
        assert "input_sum" not in net._layer_names
        if cfg.skip:
            assert net.blobs["d1_sum"].data.shape[2:] == (3, 3) and net.blobs["d3_sum"].data.shape[2:] == (27, 27)


# -- make train on custom nets, in a copy of the repository ---------------------------------
def _copy_repo(dest: Path) -> Path:
    """The parts `make train` needs, with the built .venv and .caffe linked in."""
    dest.mkdir(parents=True)
    for name in ("Makefile", "mk", "bin", "prototxt_templates"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    shutil.copytree(ROOT / "tools" / "rednet", dest / "tools" / "rednet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data" / "manifests", dest / "data" / "manifests")
    for link in (".venv", ".caffe"):
        (dest / link).symlink_to((ROOT / link).resolve())
    return dest


def _tiny_dbs(repo: Path, tasks) -> None:
    for k, task in enumerate(sorted(tasks)):
        patch = get_task(task).patch if get_task(task).patch != 50 else TINY_PATCH
        d = repo / "data" / "db" / task
        d.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", 20), ("val", 16)):
            _tiny_h5(d / f"{split}_00000.h5", n, patch, 10 * k + (split == "val"))
            (d / f"{split}.txt").write_text(f"data/db/{task}/{split}_00000.h5\n")


def _env() -> dict:
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", MAKEFLAGS="", MAKELEVEL="")


def _run(repo: Path, cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=repo, env=_env(), capture_output=True, text=True, timeout=600, **kw)


def _gen_all(repo: Path, argvs: list[list[str]]) -> None:
    """Run `rednet gen` for each argument list through the command line's own entry point
    (`python -m rednet` is rednet.__main__.main), in one process of the copy's bin/python."""
    script = ("import json, sys\nfrom rednet.__main__ import main\n"
              "for argv in json.loads(sys.stdin.read()):\n"
              "    rc = main(argv)\n"
              "    assert rc == 0, argv\n")
    r = _run(repo, [str(repo / "bin" / "python"), "-c", script], input=json.dumps(argvs))
    assert r.returncode == 0, r.stdout + r.stderr


def _check_run(repo: Path, net: str, task: str, iters: int) -> dict:
    run = repo / "runs" / f"{net}_{task}"
    info = json.loads((run / "run.json").read_text())
    assert info["net"] == net and info["task"] == task and info["status"] == "done", info["status"]
    # (a second `make train` of a finished run, "nothing to do", rewrites run.json without
    # iterations_trained: Figure 3(c) reruns Figure 3(b)'s red30)
    assert info.get("iterations_trained", iters) == iters
    assert (run / "snapshots" / f"{net}_{task}_iter_{iters}.caffemodel").is_file()
    assert "Optimization Done." in (run / "train.log").read_text()
    assert (run / "deploy.prototxt").read_text() == (repo / "gen" / net / "deploy.prototxt").read_text()
    return info


def test_make_train_trains_every_custom_recipe_net(tmp_path):
    """`make train NET=<net made by gen --name>` for each custom net of the recipes (4 maps)."""
    repo = _copy_repo(tmp_path / "repo")
    lines = all_gen_lines()
    _gen_all(repo, [["gen", *gen_args(lines[name]), "--width", "4"] for name in sorted(EXPECTED)])
    runs = sorted({(n, t) for r in TRAINED.values() for n, t in r if n in EXPECTED})
    assert {n for n, _ in runs} == set(EXPECTED)
    _tiny_dbs(repo, {t for _, t in runs})
    make_lines = {(v["NET"], train_task(v)): line for lines_ in recipes().values() for line in lines_
                  if line.startswith("make train") for v in [make_vars(line)]}
    for net, task in runs:
        r = _run(repo, [*shlex.split(make_lines[(net, task)]), "ITERS=2"])
        assert r.returncode == 0, f"{net} {task}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        _check_run(repo, net, task, 2)
        trained = (repo / "runs" / f"{net}_{task}" / "train.prototxt").read_text()
        assert trained.count('type: "ReLU"') >= EXPECTED[net]["depth"] - 1
    # the Figure 3(a) run trained the stride-3 net (and its schedule lists the 243x243 shards)
    run = repo / "runs" / "fig3a-skip_denoise-s70-p243"
    trained = (run / "train.prototxt").read_text()
    assert trained.count("stride: 3") == 10 and trained.count("kernel_size: 5") == 5
    assert "data/db/denoise-s70-p243/train_00000.h5" in (run / "data" / "train_schedule.txt").read_text()
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    model.ParseFromString((run / "snapshots" / "fig3a-skip_denoise-s70-p243_iter_2.caffemodel").read_bytes())
    shapes = {l.name: tuple(l.blobs[0].shape.dim) for l in model.layer if len(l.blobs)}
    assert shapes["conv1"] == (4, 1, 3, 3) and shapes["deconv1"] == (4, 4, 5, 5) and shapes["deconv5"] == (4, 1, 5, 5)
    # an unknown net: one error line (make adds its own), nothing made
    r = _run(repo, ["make", "--no-print-directory", "train", "NET=fcn6", "TASK=denoise", "SIGMA=30", "ITERS=2"])
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode != 0 and len(errors) == 1, r.stderr
    assert errors[0].startswith("error: preset 'fcn6': expected one of red10, red20, red30, red30-official, "
                                "or a net in gen/ (block2-he, block4-he, block4-red, fcn10, fcn5, fig3a,")
    assert not (repo / "runs" / "fcn6_denoise-s30").exists() and not (repo / "gen" / "fcn6").exists()


@pytest.mark.slow
def test_recipes_as_written(tmp_path):
    """Every command of the recipes as docs/nets.md writes it (64 maps, presets included),
    `make data` replaced by tiny databases and ITERS=2 added to `make train`."""
    repo = _copy_repo(tmp_path / "repo")
    rec = recipes()
    _tiny_dbs(repo, {t for r in TRAINED.values() for _, t in r})
    for title, lines in rec.items():
        for line in lines:
            if line.startswith("make data"):
                continue
            cmd = shlex.split(line) + (["ITERS=2"] if line.startswith("make train") else [])
            r = _run(repo, cmd)
            assert r.returncode == 0, f"{title}: {line}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
            if line.startswith("make curves"):
                plot = re.search(r"^(results/curves/\S+\.png): loss curves of ", r.stdout, re.M)
                assert plot and (repo / plot.group(1)).stat().st_size > 0, r.stdout
        for net, task in TRAINED[title]:
            _check_run(repo, net, task, 2)
