"""rednet.patches: the HDF5 patch databases Caffe trains on.

Tiny databases (a few BSD images) are built from the real benchmark images; the full
paper-scale build is `make bench-data` (and the slow test at the end).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from rednet import datasets as D
from rednet import matlab, pairs, patches, paths
from rednet.__main__ import main as rednet_main
from rednet.errors import UserError
from rednet.imageio_ml import load_image, to_gray, to_luma

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(max_images=3, stride=25, noise_repeats=2, shard_size=300, progress=False)


def _arrays(list_file):
    out = {"data": [], "label": [], "meta": []}
    for p in patches.read_list(list_file):
        with h5py.File(p, "r") as f:
            for k in out:
                out[k].append(f[k][...])
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny(datasets_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("db") / "denoise-s30"
    lst = patches.build_db("denoise-s30", out, datasets=datasets_dir, workers=2, **TINY)
    return lst


def test_layout_of_a_database(tiny, datasets_dir):
    out = tiny.parent
    assert tiny.name == "train.txt" and (out / "val.txt").is_file()
    shards = patches.read_list(tiny)
    assert [p.name for p in shards] == [f"train_{k:05d}.h5" for k in range(len(shards))]
    info = patches.preview("denoise-s30", out, datasets=datasets_dir, quiet=True,
                           **{k: v for k, v in TINY.items() if k != "progress"})
    n = 0
    for p in shards:
        with h5py.File(p, "r") as f:
            assert f["data"].dtype == f["label"].dtype == np.float32
            assert f["data"].shape[1:] == (1, 50, 50) and f["data"].shape == f["label"].shape
            assert f["data"].shape[0] <= TINY["shard_size"]
            n += f["data"].shape[0]
    assert n == info["train"]["patches"] and len(shards) == info["train"]["shards"]
    # 3 images of 481x321 (either way round), stride 25 -> 18 x 11 patches, 2 noise draws
    assert n == 3 * 18 * 11 * 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["task"] == "denoise-s30" and cfg["stride"] == 25 and cfg["levels"] == [30]
    assert not list(out.glob(".*"))                       # no temporary files left


def test_caffe_hdf5data_layer_returns_the_shard_arrays(caffe, datasets_dir, monkeypatch):
    """The stock HDF5Data layer (pycaffe, shuffle off) reads exactly our arrays, across
    shard boundaries, from a list file whose paths are relative to the repository root."""
    out = paths.CACHE / f"pytest-{uuid.uuid4().hex[:8]}" / "denoise-s50"
    try:
        lst = patches.build_db("denoise-s50", out, datasets=datasets_dir, max_images=2, stride=50,
                               noise_repeats=1, shard_size=50, val=False, progress=False, workers=1)
        lines = lst.read_text().split()
        assert len(lines) == 3 and all(not Path(l).is_absolute() for l in lines)
        want = _arrays(lst)
        n = len(want["data"])
        assert n == 2 * 9 * 6
        proto = out / "net.prototxt"
        proto.write_text(f'''name: "hdf5_check"
layer {{ name: "d" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "{paths.rel(lst)}" batch_size: {n // 4} shuffle: false }} }}
''')
        monkeypatch.chdir(ROOT)                           # Caffe resolves list lines from the cwd
        net = caffe.Net(str(proto), caffe.TEST)
        got_d, got_l = [], []
        for _ in range(4):
            net.forward()
            got_d.append(net.blobs["data"].data.copy())
            got_l.append(net.blobs["label"].data.copy())
        np.testing.assert_array_equal(np.concatenate(got_d), want["data"])
        np.testing.assert_array_equal(np.concatenate(got_l), want["label"])
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def test_same_seed_same_bytes_for_any_worker_count(tiny, datasets_dir, tmp_path):
    one = patches.build_db("denoise-s30", tmp_path / "w1", datasets=datasets_dir, workers=1, **TINY)
    a, b = _arrays(tiny), _arrays(one)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    for s1, s2 in zip(patches.read_list(tiny.parent / "val.txt"), patches.read_list(one.parent / "val.txt")):
        with h5py.File(s1) as f, h5py.File(s2) as g:
            assert f["data"][...].tobytes() == g["data"][...].tobytes()
    # another seed: other noise and another order
    other = patches.build_db("denoise-s30", tmp_path / "s1", datasets=datasets_dir, workers=2,
                             seed=1, **TINY)
    c = _arrays(other)
    assert not np.array_equal(a["meta"], c["meta"])
    # the same pair (same image/position/repeat) has other noise under another seed
    key = {tuple(m): i for i, m in enumerate(c["meta"])}
    j = key[tuple(a["meta"][0])]
    np.testing.assert_array_equal(a["label"][0], c["label"][j])
    assert not np.array_equal(a["data"][0], c["data"][j])


def test_noise_statistics_and_labels(tiny, datasets_dir):
    arr = _arrays(tiny)
    noise = arr["data"].astype(np.float64) - arr["label"]
    n = noise.size
    sd = 30 / 255
    assert abs(noise.mean()) < 5 * sd / np.sqrt(n)
    assert abs(noise.std() / sd - 1) < 0.01
    assert arr["data"].min() < 0 and arr["data"].max() > 1          # not clipped
    assert np.unique(arr["data"]).size > 0.9 * arr["data"].size      # not rounded to 1/255
    assert arr["label"].min() >= 0 and arr["label"].max() <= 1
    # labels are the MATLAB rgb2gray patches / 255 of the listed images, at the listed place
    files = D.list_images("BSD300", datasets_dir)
    grays = [to_gray(load_image(f)) for f in files[:3]]
    for lab, (i, y, x, li, r) in zip(arr["label"], arr["meta"]):
        assert li == 0 and r in (0, 1)
        np.testing.assert_array_equal(lab[0], (grays[i][y:y + 50, x:x + 50] / 255.0).astype(np.float32))
    # different noise for the two repeats of one patch
    m = [tuple(t) for t in arr["meta"][:, :3]]
    first = m[0]
    idx = [i for i, t in enumerate(m) if t == first]
    assert len(idx) == 2 and not np.array_equal(arr["data"][idx[0]], arr["data"][idx[1]])


def test_mixed_sigma_gives_each_level_its_noise(datasets_dir, tmp_path):
    lst = patches.build_db("denoise-mixed", tmp_path / "m", datasets=datasets_dir, max_images=4,
                           stride=20, noise_repeats=4, shard_size=2000, progress=False)
    arr = _arrays(lst)
    noise = arr["data"].astype(np.float64) - arr["label"]
    levels = arr["meta"][:, 3]
    counts = np.bincount(levels, minlength=4)
    assert counts.min() == counts.max()                      # every patch gets every sigma once
    for li, sigma in enumerate((10, 30, 50, 70)):
        assert abs(noise[levels == li].std() / (sigma / 255) - 1) < 0.02


@pytest.mark.parametrize("task", ["sr-x3", "sr-mixed"])
def test_sr_input_is_matlab_bicubic_down_up_of_the_label(task, datasets_dir, tmp_path):
    lst = patches.build_db(task, tmp_path / task, datasets=datasets_dir, max_images=2, stride=40,
                           shard_size=200, progress=False, val=(task == "sr-x3"))
    arr = _arrays(lst)
    scales = patches.get_task(task).levels
    files = D.list_images("BSD300", datasets_dir)
    cache = {}
    assert set(arr["meta"][:, 3]) == set(range(len(scales)))
    for k in range(0, len(arr["data"]), 7):
        i, y, x, li, _ = arr["meta"][k]
        s = scales[li]
        if (i, s) not in cache:
            hr = matlab.modcrop(to_luma(load_image(files[i])), s)
            up = matlab.imresize(matlab.imresize(hr / 255.0, 1 / s), s)
            cache[i, s] = hr, up
        hr, up = cache[i, s]
        np.testing.assert_array_equal(arr["label"][k, 0], (hr[y:y + 50, x:x + 50] / 255.0).astype(np.float32))
        np.testing.assert_array_equal(arr["data"][k, 0], up[y:y + 50, x:x + 50].astype(np.float32))
        # the input is a real degradation of the label
        assert np.abs(arr["data"][k, 0] - arr["label"][k, 0]).max() > 0
    if task == "sr-x3":
        val = _arrays(lst.parent / "val.txt")
        names = {p.stem for p in D.list_images("BSD200", datasets_dir)[:10]}
        assert len(val["data"]) > 0 and not names & {p.stem for p in files}


def test_validation_images_are_not_training_or_denoising_test_images(tiny, datasets_dir):
    cfg = patches.make_config("denoise-s30", datasets=datasets_dir)
    val = pairs.source_files(cfg, "val")
    assert [p.stem for p in val] == ["baby", "bird", "head", "woman"]
    test_sets = D.load_set("denoise14", datasets_dir) + D.load_set("BSD200", datasets_dir)
    train = D.load_set("BSD300", datasets_dir)
    gray_val = [to_gray(load_image(p)) for p in val]
    for v in gray_val:
        for _, t in test_sets + train:
            assert t.shape[:2] != v.shape or not np.array_equal(to_gray(t), v)
    arr = _arrays(tiny.parent / "val.txt")
    assert len(arr["data"]) == sum((h // 50) * (w // 50) for h, w in (g.shape for g in gray_val))


def test_resume_after_kill_gives_the_same_database(bsd_datasets, tmp_path):
    """SIGKILL a real build mid-way: no list file, only complete shards; a rerun finishes
    with the same bytes as an uninterrupted build."""
    out = tmp_path / "killed"
    cmd = [str(ROOT / "bin" / "python"), "-m", "rednet", "data", "--task", "denoise-s10",
           "--out", str(out), "--datasets", str(bsd_datasets), "--max-images", "30",
           "--stride", "20", "--noise-repeats", "2", "--shard-size", "300", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        t0 = time.time()
        while not (out / "train_00002.h5").exists() and time.time() - t0 < 120:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = sorted(out.glob("train_*.h5"))
    assert done and not (out / "train.txt").exists()
    for p in done:                                         # every listed-name shard is whole
        with h5py.File(p) as f:
            assert f["data"].shape[0] == 300
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())   # kept, not rebuilt
    assert not list(out.glob(".*.tmp.*"))
    fresh = patches.build_db("denoise-s10", tmp_path / "fresh", datasets=bsd_datasets, max_images=30,
                             stride=20, noise_repeats=2, shard_size=300, workers=2, progress=False)
    a, b = _arrays(out / "train.txt"), _arrays(fresh)
    assert a["data"].tobytes() == b["data"].tobytes() and a["label"].tobytes() == b["label"].tobytes()


def test_up_to_date_rebuild_is_a_no_op_and_a_new_config_replaces(tiny, datasets_dir, tmp_path):
    out = tmp_path / "db"
    lst = patches.build_db("denoise-s30", out, datasets=datasets_dir, **TINY)
    i0 = {p: p.stat().st_ino for p in patches.read_list(lst)}
    patches.build_db("denoise-s30", out, datasets=datasets_dir, **TINY)
    assert {p: p.stat().st_ino for p in patches.read_list(lst)} == i0
    # a lost shard is rebuilt alone, with the same bytes
    before = _arrays(lst)
    victim = patches.read_list(lst)[1]
    victim.unlink()
    patches.build_db("denoise-s30", out, datasets=datasets_dir, **TINY)
    after = _arrays(lst)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    assert victim.is_file()
    # the others were not rewritten (inode: shards are written to a temporary name and renamed)
    assert all(p.stat().st_ino == i for p, i in i0.items() if p != victim)
    small = dict(TINY, stride=50)
    patches.build_db("denoise-s30", out, datasets=datasets_dir, **small)
    assert len(_arrays(lst)["data"]) == 3 * 9 * 6 * 2
    assert json.loads((out / "config.json").read_text())["stride"] == 50
    assert len(list(out.glob("train_*.h5"))) == len(patches.read_list(lst))


def test_the_code_digest_follows_the_pairs_not_the_builder(tmp_path):
    """A database's ``code`` digest covers the code that decides a pair's values (pairs.py,
    imageio_ml.py, matlab.py): an edit of any of them makes every database stale; an edit of
    the builder (the pool, the locks, the shard writer in patches.py) does not, so a rebuilt
    database keeps its fingerprint and the runs made on it still resume. (Before, patches.py
    was hashed whole: a fix in its process pool changed every database's fingerprint.)"""
    pkg = Path(patches.__file__).resolve().parent
    for f in pkg.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    base = patches._code_digest(tmp_path)
    assert base == patches._code_digest() == patches.make_config("denoise-s30", datasets=ROOT).code
    with open(tmp_path / "patches.py", "a") as f:
        f.write("\n# the builder changed\n")
    assert patches._code_digest(tmp_path) == base
    for name in ("pairs.py", "imageio_ml.py", "matlab.py"):
        shutil.copy(pkg / name, tmp_path / name)
        with open(tmp_path / name, "a") as f:
            f.write("\n# a pair changed\n")
        assert patches._code_digest(tmp_path) != base, name
        shutil.copy(pkg / name, tmp_path / name)
    assert patches._code_digest(tmp_path) == base


# --------------------------------------------------------------------------- bad input
def _cli(args, capsys):
    rc = rednet_main(["data", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


@pytest.mark.parametrize("args, message", [
    (["--task", "denoise-x"], "expected one of"),
    (["--task", "denoise", "--sigma", "0"], "SIGMA='0'"),
    (["--task", "denoise", "--sigma", "256"], "SIGMA='256'"),
    (["--task", "denoise-s300"], "sigma must be a number in (0, 255]"),
    (["--task", "sr", "--scale", "5"], "SCALE='5'"),
    (["--task", "sr-x1"], "expected one of"),
    (["--task", "denoise-s30", "--patch", "400"], "smaller than the 400x400 patch"),
    (["--task", "denoise-s30", "--stride", "0"], "stride=0"),
    (["--task", "sr-x4", "--patch", "330"], "480x320 after modcrop by 4, smaller than the 330x330"),
    (["--task", "sr", "--scale", "mixed", "--noise-repeats", "2"], "super-resolution pairs have no noise"),
    (["--task", "denoise-s30", "--max-patches", "0"], "max_patches=0"),
])
def test_bad_input_one_line_nothing_written(args, message, datasets_dir, tmp_path, capsys, request):
    if "smaller than" in message:    # said after the images' sizes are read
        request.getfixturevalue("bsd_datasets")
    out = tmp_path / "db"
    rc, err = _cli([*args, "--out", str(out), "--datasets", str(datasets_dir), "--quiet",
                    "--max-images", "2"], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_missing_datasets_folder_and_undecodable_image(bsd_datasets, tmp_path, capsys):
    out = tmp_path / "db"
    rc, err = _cli(["--task", "denoise-s30", "--out", str(out), "--datasets", str(tmp_path / "none")], capsys)
    assert rc == 2 and len(err) == 1 and "folder does not exist" in err[0]
    # a copy of the data with one training image that does not decode
    root = tmp_path / "ds"
    for f in ("BSD300", "Set5"):
        shutil.copytree(bsd_datasets / f, root / f)
    victim = D.list_images("BSD300", root)[1]
    victim.write_bytes(victim.read_bytes()[:200])
    rc, err = _cli(["--task", "denoise-s30", "--out", str(out), "--datasets", str(root), "--quiet",
                    "--max-images", "3"], capsys)
    assert rc == 2 and len(err) == 1 and victim.name in err[0] and "sha256" in err[0]
    rc, err = _cli(["--task", "denoise-s30", "--out", str(out), "--datasets", str(root), "--quiet",
                    "--max-images", "3", "--no-verify"], capsys)
    assert rc == 2 and len(err) == 1 and victim.name in err[0] and "cannot decode" in err[0], err
    assert not out.exists()


def test_refuses_to_start_without_disk_room(bsd_datasets, tmp_path, monkeypatch):
    monkeypatch.setattr(patches, "_free_bytes", lambda p: 10 << 20)
    out = tmp_path / "db"
    with pytest.raises(UserError, match="needs .* but only 10.5 MB is free"):
        patches.build_db("denoise-s30", out, datasets=bsd_datasets, max_images=2, progress=False)
    assert not out.exists()


def _make(*args, datasets_dir):
    env = dict(os.environ, DATASETS=str(datasets_dir))
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env)


def test_make_preview_and_bad_levels(bsd_datasets, tmp_path):
    r = _make("data", "TASK=denoise", "SIGMA=30", "PREVIEW=1", f"DB_DIR={tmp_path}", datasets_dir=bsd_datasets)
    assert r.returncode == 0, r.stderr
    assert "517,500 patches from 300 images" in r.stdout
    for level in ("SCALE=7", "SIGMA=0"):
        task = "TASK=sr" if level.startswith("SCALE") else "TASK=denoise"
        r = _make("data", task, level, f"DB_DIR={tmp_path}", datasets_dir=bsd_datasets)
        assert r.returncode != 0 and r.stderr.count("error: ") == 1, r.stderr
    assert list(tmp_path.rglob("*")) == []
    r = _make("data", datasets_dir=bsd_datasets)
    assert r.returncode != 0 and "make data needs TASK=" in r.stderr


def test_make_data_builds_once_and_again_when_a_knob_changes(bsd_datasets, tmp_path):
    """`make data` always asks `rednet data`, and the database's config.json alone decides:
    an up-to-date database is left alone, a changed knob rebuilds it."""
    knobs = ["TASK=denoise", "SIGMA=7", "MAX_IMAGES=1", "NOISE_REPEATS=1", f"DB_DIR={tmp_path}"]
    r = _make("data", *knobs, "STRIDE=100", datasets_dir=bsd_datasets)
    assert r.returncode == 0, r.stderr
    lst = tmp_path / "denoise-s7" / "train.txt"
    assert lst.is_file() and (lst.parent / "val.txt").is_file()
    m0 = lst.stat().st_mtime_ns
    shards0 = {p: p.stat().st_ino for p in lst.parent.glob("*.h5")}
    cfg0 = (lst.parent / "config.json").stat().st_mtime_ns
    r = _make("data", *knobs, "STRIDE=100", datasets_dir=bsd_datasets)
    assert r.returncode == 0, r.stderr
    assert lst.stat().st_mtime_ns == m0                      # up to date: not rebuilt
    assert {p: p.stat().st_ino for p in lst.parent.glob("*.h5")} == shards0
    assert (lst.parent / "config.json").stat().st_mtime_ns == cfg0
    assert not list(tmp_path.glob(".args"))                  # no stamp beside the databases
    r = _make("data", *knobs, "STRIDE=90", datasets_dir=bsd_datasets)
    assert r.returncode == 0 and "rednet data --task 'denoise-s7' --out" in r.stdout
    assert json.loads((lst.parent / "config.json").read_text())["stride"] == 90
    h, w = load_image(D.list_images("BSD300", bsd_datasets)[0]).shape[:2]
    assert len(_arrays(lst)["data"]) == ((h - 50) // 90 + 1) * ((w - 50) // 90 + 1)


def test_make_data_follows_the_database_not_a_stamp(bsd_datasets, tmp_path):
    """A database rebuilt with other knobs behind make's back (`rednet data` directly) is
    brought back to what `make data` asks for: make keeps no record of its own that could
    call it up to date."""
    knobs = ["TASK=denoise", "SIGMA=7", "MAX_IMAGES=1", "NOISE_REPEATS=1", "STRIDE=100", f"DB_DIR={tmp_path}"]
    assert _make("data", *knobs, datasets_dir=bsd_datasets).returncode == 0
    out = tmp_path / "denoise-s7"
    assert rednet_main(["data", "--task", "denoise-s7", "--out", str(out), "--datasets", str(bsd_datasets),
                        "--max-images", "1", "--noise-repeats", "1", "--stride", "90", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["stride"] == 90
    r = _make("data", *knobs, datasets_dir=bsd_datasets)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["stride"] == 100
    h, w = load_image(D.list_images("BSD300", bsd_datasets)[0]).shape[:2]
    assert len(_arrays(out / "train.txt")["data"]) == ((h - 50) // 100 + 1) * ((w - 50) // 100 + 1)


@pytest.mark.slow
def test_full_paper_scale_build(datasets_dir, tmp_path):
    """The full sigma=30 database (~0.5M pairs, ~10 GB) builds with bounded memory.

    Run as its own process (the `make bench-data` command): peak RSS (getrusage) is a
    process-lifetime maximum, so measuring inside pytest would count earlier tests."""
    import subprocess
    r = subprocess.run([str(ROOT / "bin" / "python"), "-m", "rednet", "data", "--task", "denoise-s30",
                        "--bench", "--quiet", "--out", str(tmp_path), "--datasets", str(datasets_dir)],
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.splitlines()[0])
    assert info["patches"] == patches.preview("denoise-s30", tmp_path / "x", datasets=datasets_dir,
                                              quiet=True)["train"]["patches"]
    assert max(info["peak_rss_self_mb"], info["peak_rss_child_mb"]) < 1024
    assert not list(tmp_path.iterdir())


def test_dihedral_augmentation_transforms_input_and_label_together(datasets_dir, tmp_path):
    lst = patches.build_db("sr-x2", tmp_path / "aug", datasets=datasets_dir, max_images=1, stride=60,
                           augment="dihedral", val=False, progress=False)
    plain = patches.build_db("sr-x2", tmp_path / "plain", datasets=datasets_dir, max_images=1,
                             stride=60, val=False, progress=False)
    a, p = _arrays(lst), _arrays(plain)
    by_meta = {tuple(m): k for k, m in enumerate(p["meta"])}
    used = set()
    for k, m in enumerate(a["meta"]):
        j = by_meta[tuple(m)]
        found = [t for t in range(8)
                 if np.array_equal(a["label"][k, 0], pairs.dihedral(p["label"][j, 0], t))
                 and np.array_equal(a["data"][k, 0], pairs.dihedral(p["data"][j, 0], t))]
        assert found, k
        used.add(found[0])
    assert len(used) >= 4


def test_patch_size_tasks_and_the_figure_3a_database(datasets_dir, tmp_path):
    """denoise-s70-p243 (Figure 3a): 243x243 pairs in their own database; noise draws and
    shard size scaled with the patch area; validation from the Set5 images that hold a
    243x243 patch (not woman, 228 wide); plain tasks keep their defaults."""
    from rednet.tasks import get_task
    t = get_task("denoise-s70-p243")
    assert (t.name, t.kind, t.levels, t.patch) == ("denoise-s70-p243", "denoise", (70,), 243)
    assert get_task("sr-x3-p99").levels == (3,) and get_task("denoise-mixed-p64").patch == 64
    assert get_task("denoise-s30").patch == 50
    for bad, msg in (("denoise-s70-p50", "every task's patch size; name the task denoise-s70"),
                     ("denoise-s70-px", "the suffix -p<N> is a patch size"),
                     ("denoise-s70-p1", "the suffix -p<N> is a patch size"),
                     ("denoise-s70-p243-p99", "one patch-size suffix"),
                     ("deblur-p243", "expected one of")):
        with pytest.raises(UserError, match=msg):
            get_task(bad)
    cfg = patches.make_config("denoise-s70-p243", datasets=datasets_dir)
    assert (cfg.patch, cfg.noise_repeats, cfg.shard_size, cfg.stride) == (243, 1, 346, 19)
    assert [p.stem for p in pairs.source_files(cfg, "val")] == ["baby", "bird", "head"]
    plain = patches.make_config("denoise-s70", datasets=datasets_dir)
    assert (plain.patch, plain.noise_repeats, plain.shard_size) == (50, 5, 8192)
    assert [p.stem for p in pairs.source_files(plain, "val")] == ["baby", "bird", "head", "woman"]
    with pytest.raises(UserError, match=r"^patch=50: task denoise-s70-p243 has 243x243 patches"):
        patches.make_config("denoise-s70-p243", datasets=datasets_dir, patch=50)
    info = patches.preview("denoise-s70-p243", tmp_path / "none", datasets=datasets_dir, quiet=True)
    assert info["train"]["patches"] == 19500 and info["val"]["patches"] == 38
    assert not (tmp_path / "none").exists()
    lst = patches.build_db("denoise-s70-p243", tmp_path / "db", datasets=datasets_dir, max_images=1,
                           max_patches=6, progress=False, workers=1)
    arr, val = _arrays(lst), _arrays(lst.parent / "val.txt")
    assert arr["data"].shape == arr["label"].shape == (6, 1, 243, 243)
    assert val["data"].shape == (38, 1, 243, 243)
    assert abs((arr["data"] - arr["label"]).std() / (70 / 255) - 1) < 0.01
    gray = to_gray(load_image(D.list_images("BSD300", datasets_dir)[0]))
    for lab, (i, y, x, li, r) in zip(arr["label"], arr["meta"]):
        np.testing.assert_array_equal(lab[0], (gray[y:y + 243, x:x + 243] / 255.0).astype(np.float32))
    assert json.loads((lst.parent / "config.json").read_text())["patch"] == 243


def _large_result(i):
    """A job whose result (48 MB) takes a worker most of its time to send, as a prepared
    source image does."""
    return np.full(12_000_000, i, dtype=np.float32)


def test_an_error_leaves_no_pool_thread_waiting_for_ever():
    """An error while the workers send large results (``pairs.prepare``'s images): killing a
    worker in the middle of its send left half a message in the result pipe, and the
    executor's manager thread waited for the rest for ever; so did the interpreter at exit,
    which joins that thread (a suite that printed its summary and never ended). The pool now
    lets the running jobs end before it stops; every trial must leave no such thread."""
    import multiprocessing as mp

    from conftest import pool_threads_waiting
    for _ in range(4):
        with pytest.raises(RuntimeError, match="stop"):
            with patches._pool(mp.get_context("fork"), 2, {}, None) as pool:
                for i, _r in enumerate(pool.map(_large_result, range(48))):
                    if i == 2:
                        raise RuntimeError("stop")
        assert not pool_threads_waiting(5), "a pool's manager thread is still waiting"
