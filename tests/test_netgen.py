"""The net/solver generator without Caffe: wiring, committed files, bad input, CLI.

What runs in Caffe (parsing, loading, forward against numpy, bin/caffe time/train) is in
tests/test_nets_caffe.py.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rednet import netgen, paths
from rednet.errors import UserError
from rednet.netgen import PRESETS, NetConfig, check_input_shape
from rednet.tasks import TASKS

ROOT = paths.ROOT


def test_red30_wiring_is_the_released_one():
    """conv1..15 (tops c1..c15), deconv1..15, skips c14->deconv1, c12->deconv3 ... c2->deconv13."""
    for name, width in (("red30", 64), ("red30-official", 128)):
        cfg = PRESETS[name]
        layers = cfg.layers()
        assert [l["name"] for l in layers] == [f"conv{i}" for i in range(1, 16)] + [f"deconv{i}" for i in range(1, 16)]
        assert [l["top"] for l in layers[:15]] == [f"c{i}" for i in range(1, 16)]
        assert [l["type"] for l in layers] == ["Convolution"] * 15 + ["Deconvolution"] * 15
        assert {l["name"]: l["add"] for l in layers if l["add"]} == {f"deconv{i}": f"c{15 - i}" for i in range(1, 14, 2)}
        assert all(l["num_output"] == width for l in layers[:-1]) and layers[-1]["num_output"] == 1
        assert all((l["kernel"], l["stride"], l["pad"]) == (3, 1, 1) for l in layers)
        assert [l["relu"] for l in layers] == [True] * 29 + [False]
        # each layer reads the previous layer's final blob (after its skip sum)
        for prev, l in zip(layers, layers[1:]):
            assert l["bottom"] == (prev["sum_top"] if prev["add"] else prev["top"])
        assert cfg.input_residual


def test_presets():
    assert set(PRESETS) == {"red10", "red20", "red30", "red30-official"}
    assert PRESETS["red10"].skip_pairs() == [] and PRESETS["red10"].depth == 10
    assert PRESETS["red20"].skip_pairs() == [(8, 2), (6, 4), (4, 6), (2, 8)]
    assert PRESETS["red30"].width == 64 and PRESETS["red30-official"].width == 128
    with pytest.raises(UserError, match=r"^preset 'red40': expected one of red10, red20, red30, red30-official$"):
        netgen.get_preset("red40")


def test_variants_wiring():
    k4 = NetConfig("k4", depth=30, width=8, skip=4)
    assert k4.skip_pairs() == [(12, 3), (8, 7), (4, 11)]
    seq = NetConfig("seq", depth=10, width=8, skip=2, shortcuts="sequential")
    assert seq.sequential_pairs() == [(1, 3), (3, 5), (5, 7), (7, 9)]
    adds = {l["name"]: l["add"] for l in seq.layers() if l["add"]}
    assert adds == {"conv3": "c1", "conv5": "c3_sum", "deconv2": "c5_sum", "deconv4": "d2_sum"}
    st = NetConfig("st", depth=10, width=8, stride=2, down=2)
    assert [(l["name"], l["stride"], l["kernel"]) for l in st.layers() if l["stride"] > 1] == \
        [("conv1", 2, 3), ("conv2", 2, 3), ("deconv4", 2, 4), ("deconv5", 2, 4)]
    cd = NetConfig("cd", depth=10, width=8, decoder="conv", input_residual=False)
    assert [l["name"] for l in cd.layers()] == [f"conv{i}" for i in range(1, 11)]
    assert cd.layers()[-1]["top"] == "output"


def test_odd_depth_convolution_only_nets():
    """Sec. 2.1.1's 5-layer fully convolutional net: conv1..conv5, 3x3 stride 1 pad 1, ReLU
    after all but the last, one chain, the input residual; He blocks work at odd depth too."""
    fcn5 = NetConfig("fcn5", depth=5, width=8, skip=None, decoder="conv")
    layers = fcn5.layers()
    assert [(l["name"], l["type"], l["top"]) for l in layers] == \
        [(f"conv{t}", "Convolution", f"c{t}") for t in range(1, 6)]
    assert [l["bottom"] for l in layers] == ["data", "c1", "c2", "c3", "c4"]
    assert all((l["kernel"], l["stride"], l["pad"]) == (3, 1, 1) for l in layers)
    assert [l["num_output"] for l in layers] == [8, 8, 8, 8, 1]
    assert [l["relu"] for l in layers] == [True] * 4 + [False] and not any(l["add"] for l in layers)
    assert fcn5.input_residual and fcn5.output_bottom() == "c5"
    assert "input_sum" in netgen.render_deploy(fcn5)
    assert NetConfig("c3", depth=3, skip=None, decoder="conv").depth == 3
    he7 = NetConfig("he7", depth=7, width=8, skip=2, shortcuts="sequential", decoder="conv")
    assert he7.sequential_pairs() == [(1, 3), (3, 5)]
    assert {l["name"]: l["add"] for l in he7.layers() if l["add"]} == {"conv3": "c1", "conv5": "c3_sum"}


def test_figure_3a_stride_variant():
    """--stride 3 --down 5 on 10 layers: every convolution 3x3 stride 3, every deconvolution
    stride 3 with kernel 5 (pad 1); 243 -> 81 -> 27 -> 9 -> 3 -> 1 -> 3 -> ... -> 243."""
    for skip, pairs in ((None, []), (2, [(4, 1), (2, 3)])):
        cfg = NetConfig("f3a", depth=10, width=8, skip=skip, stride=3, down=5, input_residual=False)
        assert cfg.factor == 243 and cfg.skip_pairs() == pairs
        layers = cfg.layers()
        assert [(l["type"], l["kernel"], l["stride"], l["pad"]) for l in layers] == \
            [("Convolution", 3, 3, 1)] * 5 + [("Deconvolution", 5, 3, 1)] * 5
        size, sizes = 243, []
        for l in layers:
            if l["type"] == "Convolution":
                size = (size + 2 * l["pad"] - l["kernel"]) // l["stride"] + 1
            else:
                size = l["stride"] * (size - 1) + l["kernel"] - 2 * l["pad"]
            sizes.append(size)
        assert sizes == [81, 27, 9, 3, 1, 3, 9, 27, 81, 243]
        assert layers[-1]["top"] == "output" and "input_sum" not in netgen.render_deploy(cfg)
        assert "dim: 1 dim: 1 dim: 243 dim: 243" in netgen.render_deploy(cfg)
        check_input_shape(cfg, 486, 243)
        with pytest.raises(UserError, match="expected a multiple of 243"):
            check_input_shape(cfg, 240, 243)


def test_config_from_header_round_trip(tmp_path):
    cfgs = list(PRESETS.values()) + [
        NetConfig("fcn5", depth=5, skip=None, decoder="conv"),
        NetConfig("f3a", depth=10, skip=2, stride=3, down=5, input_residual=False),
        NetConfig("he", depth=30, skip=4, shortcuts="sequential", channels=3, width=16)]
    for cfg in cfgs:
        assert netgen.config_from_header(netgen.render_deploy(cfg)) == cfg
        assert netgen.config_from_header(netgen.render_train(cfg, "denoise-s70-p243", "test")) == cfg
    assert netgen.config_from_header("name: \"x\"\nlayer {}\n") is None
    assert netgen.config_from_header(netgen.render_solver(PRESETS["red10"], "sr-x2")) is None


def test_resolve_net_presets_custom_and_hand_written(tmp_path, monkeypatch):
    """What `make train NET=...` trains: a preset or a net made by `gen --name` (rendered from
    the templates, for any task), a hand-written folder (its files); else one-line errors.
    Nothing is written into gen/ or solvers/, and a rendered net whose files there differ
    from the templates is refused."""
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    root = tmp_path
    src = netgen.resolve_net("red10", "denoise-s30", root)
    assert src.cfg == PRESETS["red10"] and (src.solver, src.deploy) == (None, None)
    assert not (root / "gen").exists() and not (root / "solvers").exists()       # nothing written
    netgen.generate_all(root)
    assert netgen.resolve_net("red10", "denoise-s30", root).cfg == PRESETS["red10"]
    (root / "solvers/red10_denoise-s30.prototxt").write_text(
        (root / "solvers/red10_denoise-s30.prototxt").read_text().replace("base_lr: 0.0001", "base_lr: 0.001"))
    with pytest.raises(UserError, match=r"^solvers/red10_denoise-s30.prototxt: differs from what "
                                        r"prototxt_templates/ render .* run `make nets`$"):
        netgen.resolve_net("red10", "denoise-s30", root)
    netgen.resolve_net("red10", "sr-x2", root)                 # other files of the net are not its business
    cfg = NetConfig("fcn5", depth=5, width=4, skip=None, decoder="conv")
    netgen.write_net(cfg, root / "gen/fcn5", tasks=["denoise-s30"], solver_dir=root / "solvers")
    before = sorted(p for p in root.rglob("*"))
    assert netgen.resolve_net("fcn5", "denoise-s70-p243", root).cfg == cfg    # a task it was not made for
    assert sorted(p for p in root.rglob("*")) == before
    (root / "gen/fcn5/denoise-s30/test.prototxt").write_text("stale\n")
    with pytest.raises(UserError, match=r"^gen/fcn5/denoise-s30/test.prototxt: differs from"):
        netgen.resolve_net("fcn5", "denoise-s30", root)
    # gen --out gen/<net> keeps the solvers in gen/<net>/solvers/ (checked there)
    cfg = NetConfig("own", depth=6, width=4, skip=1)
    netgen.write_net(cfg, root / "gen/own", tasks=["denoise-s30"], solver_dir=root / "gen/own/solvers")
    assert netgen.resolve_net("own", "denoise-s30", root).cfg == cfg
    (root / "gen/own/solvers/own_denoise-s30.prototxt").write_text("# mine\n")
    with pytest.raises(UserError, match=r"^gen/own/solvers/own_denoise-s30.prototxt: differs from"):
        netgen.resolve_net("own", "denoise-s30", root)
    # a hand-written net: used as it is
    hand = root / "gen/hand/denoise-s30"
    hand.mkdir(parents=True)
    for f in ("train.prototxt", "test.prototxt"):
        (hand / f).write_text("name: \"hand\"\n")
    (root / "solvers/hand_denoise-s30.prototxt").unlink(missing_ok=True)
    with pytest.raises(UserError, match=r"^gen/hand: no solver solvers/hand_denoise-s30.prototxt"):
        netgen.resolve_net("hand", "denoise-s30", root)
    (root / "solvers/hand_denoise-s30.prototxt").write_text("# mine\n")
    assert netgen.resolve_net("hand", "denoise-s30", root) == netgen.NetSource(
        "hand", None, root / "solvers/hand_denoise-s30.prototxt", None)
    with pytest.raises(UserError, match=r"^gen/hand: has no sr-x2/train.prototxt"):
        netgen.resolve_net("hand", "sr-x2", root)
    # a folder renamed by hand: its header names another net
    import shutil
    shutil.copytree(root / "gen/fcn5", root / "gen/fcn6")
    with pytest.raises(UserError, match=r"^gen/fcn6/deploy.prototxt: was rendered for a net called 'fcn5'"):
        netgen.resolve_net("fcn6", "denoise-s30", root)
    with pytest.raises(UserError, match=r"^preset 'red99': expected one of red10, red20, red30, "
                                        r"red30-official, or a net in gen/ \(fcn5, fcn6, hand, own;") as e:
        netgen.resolve_net("red99", "denoise-s30", root)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^NET='\.\./x': expected a preset"):
        netgen.resolve_net("../x", "denoise-s30", root)


def test_a_run_renders_its_solver_and_nets_from_the_templates():
    """A run's copies are the templates rendered with the run's values (rednet.sources):
    equal to solvers/ and gen/ but for the lines of those values, which the run sets."""
    from rednet.sources import RunValues, Sources, run_copies
    cfg = PRESETS["red10"]
    v = RunValues("r1", "runs/r1/data/train_schedule.txt", "runs/r1/data/val_schedule.txt", "runs/r1/train.prototxt",
                  "runs/r1/test.prototxt", "runs/r1/snapshots/red10_denoise-s30", 1234, 100, 5, "CPU")
    src = Sources("red10", "denoise-s30", Path("data/db/denoise-s30/train.txt"), None, cfg)
    c = run_copies(src, v)
    assert c.shuffled and c.deploy == netgen.render_deploy(cfg)

    def changed(a: str, b: str) -> list[tuple[str, str]]:
        la, lb = a.splitlines(), b.splitlines()
        assert len(la) == len(lb)
        return [(x, y) for x, y in zip(la, lb) if x != y]
    by = "# Generated by `bin/python -m rednet train` for the run r1 from prototxt_templates/"
    sol = changed(netgen.render_solver(cfg, "denoise-s30"), c.solver)
    assert sol[0][1].startswith(by + "solver.prototxt.j2")
    assert sorted(y for _, y in sol[1:]) == sorted([
        "# Log the training loss every 5 iterations (ours; the log is what rednet curves parses).", "display: 5",
        'train_net: "runs/r1/train.prototxt"', 'test_net: "runs/r1/test.prototxt"', "max_iter: 1234",
        "# Snapshot (weights + solver state, so a run can resume) every 100 iterations (ours).",
        "snapshot: 100", 'snapshot_prefix: "runs/r1/snapshots/red10_denoise-s30"'])
    tr = changed(netgen.render_train(cfg, "denoise-s30", "train"), c.train_net)
    assert [y for _, y in tr[1:]] == ['    source: "runs/r1/data/train_schedule.txt"', "    shuffle: false"]
    te = changed(netgen.render_train(cfg, "denoise-s30", "test"), c.test_net)
    assert [y for _, y in te[1:]] == ['    source: "runs/r1/data/val_schedule.txt"']
    gpu = run_copies(src, RunValues(**{**v.__dict__, "mode": "GPU"}))
    assert "solver_mode: GPU" in gpu.solver and "solver_mode: CPU" in c.solver


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=7), r"^depth=7: expected an even number >= 4 .* or any number >= 3 with a convolution-only"),
    (dict(depth=2, decoder="conv"), r"^depth=2: expected an even number >= 4"),
    (dict(depth=5, decoder="conv"), r"^skip=2: mirrored skips .* need an even depth \(depth=5\); expected skip=none"),
    (dict(depth=5, decoder="conv", skip=None, stride=2, down=1), r"^decoder=conv: .* expected stride=1"),
    (dict(depth=2), r"^depth=2: expected an even number >= 4"),
    (dict(depth=0), r"^depth=0: expected an even number >= 4"),
    (dict(width=0), r"^width=0: expected a positive number"),
    (dict(depth=30, skip=15), r"^skip=15: expected a span from 1 to 14 "),
    (dict(depth=10, skip=0), r"^skip=0: expected a span from 1 to 4 "),
    (dict(stride=0), r"^stride=0: expected an integer >= 1"),
    (dict(depth=10, stride=2, down=6), r"^down=6: expected 1 to 5 strided layers"),
    (dict(stride=1, down=2), r"^down=2: expected 0 with stride=1"),
    (dict(stride=2, down=1, decoder="conv"), r"^decoder=conv: .* expected stride=1"),
    (dict(shortcuts="sequential", skip=None), r"^shortcuts=sequential: needs a block length"),
    (dict(shortcuts="he"), r"^shortcuts='he': expected one of mirror, sequential"),
    (dict(channels=2), r"^channels=2: expected 1 .* or 3"),
])
def test_bad_config_is_one_line_naming_the_parameter(kwargs, message):
    with pytest.raises(UserError, match=message) as e:
        NetConfig("x", **kwargs)
    assert "\n" not in str(e.value)


def test_check_input_shape():
    red30 = PRESETS["red30"]
    check_input_shape(red30, 37, 53)          # stride 1: any size
    st = NetConfig("st", depth=10, width=8, stride=2, down=2)
    check_input_shape(st, 36, 52)
    with pytest.raises(UserError, match=r"^input height=37 for net st \(stride=2, down=2\): expected a multiple of 4, e.g. 36 or 40$"):
        check_input_shape(st, 37, 52)
    with pytest.raises(UserError, match=r"^input width=53 .* multiple of 4"):
        check_input_shape(st, 36, 53)
    with pytest.raises(UserError, match=r"^input height=0: expected a positive integer"):
        check_input_shape(red30, 0, 5)
    # the deploy net's default Input size is rounded up to a size the net supports
    assert "dim: 1 dim: 1 dim: 72 dim: 72" in netgen.render_deploy(NetConfig("s3", depth=10, stride=3, down=2))
    assert "dim: 1 dim: 1 dim: 64 dim: 64" in netgen.render_deploy(st)


def test_committed_files_match_the_templates():
    """Re-render everything; any drift (or a missing or stray preset file) fails."""
    want = netgen.all_files(ROOT)
    assert len(want) == len(PRESETS) * (1 + 3 * len(TASKS))
    drift = [paths.rel(p) for p, text in want.items() if not p.is_file() or p.read_text() != text]
    assert not drift, f"out of date (run `make nets`): {drift[:5]}"
    on_disk = {p for name in PRESETS for p in (ROOT / "gen" / name).rglob("*") if p.is_file()}
    on_disk |= {p for p in (ROOT / "solvers").glob("*.prototxt")
                if p.name.rsplit("_", 1)[0] in PRESETS}
    assert on_disk == set(want), sorted(paths.rel(p) for p in on_disk ^ set(want))


def test_every_file_names_its_template_and_parameters():
    for p, text in netgen.all_files(ROOT).items():
        first, second = text.splitlines()[:2]
        template = {"deploy.prototxt": "deploy.prototxt.j2", "train.prototxt": "train.prototxt.j2",
                    "test.prototxt": "train.prototxt.j2"}.get(p.name, "solver.prototxt.j2")
        assert first.startswith("# Generated by") and f"prototxt_templates/{template}" in first, p
        assert (ROOT / "prototxt_templates" / template).is_file()
        if template == "solver.prototxt.j2":
            net, task = p.stem.rsplit("_", 1)
            assert second == f"# parameters: net={net} task={task}"
        else:
            cfg = PRESETS[p.relative_to(ROOT / "gen").parts[0]]
            assert f"name={cfg.name} depth={cfg.depth} width={cfg.width}" in second
            assert f"skip={'none' if cfg.skip is None else cfg.skip}" in second


def test_generated_paths_are_relative():
    for p, text in netgen.all_files(ROOT).items():
        assert str(ROOT) not in text and "/work" not in text, p
    s = netgen.render_solver(PRESETS["red30"], "denoise-s30")
    assert 'train_net: "gen/red30/denoise-s30/train.prototxt"' in s
    assert 'snapshot_prefix: "runs/red30_denoise-s30/snapshots/red30_denoise-s30"' in s
    t = netgen.render_train(PRESETS["red30"], "sr-x3", "test")
    assert 'source: "data/db/sr-x3/val.txt"' in t and "shuffle: false" in t
    t = netgen.render_train(PRESETS["red30"], "sr-x3", "train")
    assert 'source: "data/db/sr-x3/train.txt"' in t and "shuffle: true" in t and "batch_size: 16" in t


def test_generate_all_rewrites_only_changed_files(tmp_path):
    first = netgen.generate_all(tmp_path)
    assert len(first) == len(netgen.all_files(tmp_path))
    assert netgen.generate_all(tmp_path) == []
    victim = tmp_path / "gen" / "red20" / "deploy.prototxt"
    victim.write_text("stale\n")
    mtimes = {p: p.stat().st_mtime_ns for p in first if p != victim}
    assert netgen.generate_all(tmp_path) == [victim]
    assert victim.read_text() == netgen.render_deploy(PRESETS["red20"])
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())


def test_write_net_custom(tmp_path):
    cfg = NetConfig("tiny", depth=6, width=4, skip=1)
    written = netgen.write_net(cfg, tmp_path / "tiny", tasks=["denoise-s30"])
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["tiny/denoise-s30/test.prototxt", "tiny/denoise-s30/train.prototxt",
                     "tiny/deploy.prototxt", "tiny/solvers/tiny_denoise-s30.prototxt"]
    solver = (tmp_path / "tiny/solvers/tiny_denoise-s30.prototxt").read_text()
    assert f'train_net: "{(tmp_path / "tiny/denoise-s30/train.prototxt").resolve()}"' in solver


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tools"))
    return subprocess.run([sys.executable, "-m", "rednet", "gen", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, starts", [
    (["--name", "x", "--depth", "7"], "error: depth=7: expected an even number >= 4"),
    (["--name", "x", "--depth", "5", "--conv-decoder"], "error: skip=2: mirrored skips pair each encoder layer"),
    (["--name", "x", "--task", "denoise-s70-p0"], "error: task 'denoise-s70-p0': the suffix -p<N> is a patch size"),
    (["--name", "x", "--depth", "2"], "error: depth=2: expected an even number >= 4"),
    (["--preset", "red31"], "error: preset 'red31': expected one of red10, red20, red30, red30-official"),
    (["--name", "x", "--skip", "15"], "error: skip=15: expected a span from 1 to 14"),
    (["--name", "x", "--depth", "10", "--stride", "2", "--down", "6"], "error: down=6: expected 1 to 5"),
    (["--depth", "10"], "error: --name: a custom net"),
    (["--name", "red30", "--width", "32"], "error: --name red30: is a preset's name"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, starts):
    r = _cli(*args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(starts) and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "out").exists()


def test_cli_custom_net_and_check(tmp_path):
    out = tmp_path / "blk4"
    r = _cli("--name", "blk4", "--depth", "20", "--width", "32", "--skip", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    deploy = (out / "deploy.prototxt").read_text()
    assert deploy == netgen.render_deploy(NetConfig("blk4", depth=20, width=32, skip=4))
    assert len(list(out.rglob("*.prototxt"))) == 1 + 3 * len(TASKS)
    r = _cli("--check")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr


def test_cli_task_option_renders_one_task(tmp_path):
    out = tmp_path / "fcn5"
    r = _cli("--preset", "red10", "--name", "fcn5", "--depth", "5", "--conv-decoder",
             "--task", "denoise-s70-p243", "--task", "denoise-s30", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.prototxt")) == [
        "denoise-s30/test.prototxt", "denoise-s30/train.prototxt", "denoise-s70-p243/test.prototxt",
        "denoise-s70-p243/train.prototxt", "deploy.prototxt", "solvers/fcn5_denoise-s30.prototxt",
        "solvers/fcn5_denoise-s70-p243.prototxt"]
    assert netgen.config_from_header((out / "deploy.prototxt").read_text()) == \
        NetConfig("fcn5", depth=5, width=64, skip=None, decoder="conv")
    r = _cli("--task", "denoise-s30")           # no net named: refused before anything is written
    assert r.returncode == 2 and r.stderr.startswith("error: --task: renders one net") and r.stderr.count("\n") == 1


def test_preset_override_needs_no_name_only_when_unchanged():
    ns = dict(preset="red10", name=None, depth=None, width=None, channels=None, stride=None, down=None,
              skip=..., sequential=False, conv_decoder=False, no_input_residual=False)
    import argparse
    assert netgen.config_from_args(argparse.Namespace(**ns)) is PRESETS["red10"]
    cfg = netgen.config_from_args(argparse.Namespace(**dict(ns, name="red10s2", stride=2)))
    assert (cfg.stride, cfg.down, cfg.depth) == (2, 1, 10)
    assert dataclasses.replace(cfg, name="red10", stride=1, down=0) == PRESETS["red10"]
