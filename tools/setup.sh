#!/usr/bin/env bash
# make setup: install everything this project needs, from nothing, idempotently.
#
#   1. Debian packages Caffe builds against (apt-get; needs root)
#   2. the project virtualenv .venv/ with the pinned Python packages of requirements.txt,
#      and the project package itself (pip install -e .: the `rednet` command)
#   3. stock BVLC Caffe (CPU), from the PyPI sdist brocolli-caffe==9.0.2, sha256-checked,
#      built with Caffe's own Makefile into .caffe/ (ignored by git)
#   4. the batch-parallel build of the same source (stock patches + patches/fast/, OpenMP)
#      into .caffe-fast/ (ignored by git), with .caffe-fast/env; bin/caffe and bin/python use
#      it unless CAFFE=stock (docs/training.md).  FAST=0 skips it.
#   .caffe/env: where bin/caffe and bin/python find the stock caffe binary and pycaffe
#
# Bring your own Caffe instead of step 3:
#   CAFFE_HOME=/path/to/caffe   a built Caffe tree (build/tools/caffe.bin, python/caffe)
#                               or an install prefix (bin/caffe, python3.X/site-packages)
#   or a Python in which `import caffe` already works, given as PYTHON=... (conda route).
# Other knobs: JOBS (make -j), CAFFE_BUILD_DIR (default .caffe), EXTRA_APT_PACKAGES, FAST=0.
#
# Every step prints what it does; a failing step says which one and what to install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CAFFE_SDIST=brocolli-caffe
CAFFE_VERSION=9.0.2
CAFFE_SHA256_FILE="$ROOT/data/brocolli-caffe.sha256"
CAFFE_DIR="${CAFFE_BUILD_DIR:-$ROOT/.caffe}"   # where Caffe is fetched and built
ENV_FILE="$ROOT/.caffe/env"                     # read by bin/caffe and bin/python
FAST_DIR="$ROOT/.caffe-fast"                    # the batch-parallel build
FAST_ENV="$FAST_DIR/env"
SRC="$CAFFE_DIR/src"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-}"
CAFFE_HOME="${CAFFE_HOME:-}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

APT_PACKAGES=(build-essential patch python3-dev python3-venv
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-regex-dev
  libboost-python-dev libprotobuf-dev protobuf-compiler libgoogle-glog-dev
  libgflags-dev libhdf5-dev libopenblas-dev)
# oneDNN, for the fast build's Convolution/Deconvolution (patches/fast/0003-onednn-convolution.patch)
[ "${FAST:-1}" = 0 ] || APT_PACKAGES+=(libdnnl-dev)
# EXTRA_APT_PACKAGES: more Debian packages to install with the same checks (space separated)
read -r -a EXTRA <<< "${EXTRA_APT_PACKAGES:-}"
APT_PACKAGES+=("${EXTRA[@]}")

step() { printf '\n==> [setup] %s\n' "$*"; }
say() { printf '    %s\n' "$*"; }
CURRENT_STEP=""
fail() { printf '\nsetup failed at step "%s": %s\n' "$CURRENT_STEP" "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -ne 0 ] && printf "\nsetup failed at step \"%s\" (exit %s); see the output above\n" "$CURRENT_STEP" "$rc" >&2' EXIT

did_something=0

# Bring-your-own Python (conda route): PYTHON=... already imports caffe.  Its caffe binary is
# the one on PATH or the one beside the interpreter ($CONDA_PREFIX/bin/caffe).
BYO_PY=""; BYO_CAFFE=""
if [ -n "$PYTHON" ] && [ -z "$CAFFE_HOME" ] && "$PYTHON" -c 'import caffe' >/dev/null 2>&1; then
  BYO_PY=1
  if [ -x "$(dirname "$PYTHON")/caffe" ]; then BYO_CAFFE="$(dirname "$PYTHON")/caffe"
  elif command -v caffe >/dev/null 2>&1; then BYO_CAFFE="$(command -v caffe)"; fi
fi

# ---------------------------------------------------------------- 1. Debian packages
CURRENT_STEP="Debian packages"
step "$CURRENT_STEP"
if [ -n "$CAFFE_HOME" ]; then
  say "CAFFE_HOME given: Caffe build packages are not needed"
  missing=()
elif [ -n "$BYO_PY" ] && [ -n "$BYO_CAFFE" ]; then
  say "PYTHON=$PYTHON already imports caffe, and there is $BYO_CAFFE: Caffe build packages are not needed"
  missing=()
else
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -eq 0 ]; then
  say "all present"
else
  say "missing: ${missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    fail "no apt-get on this machine. Install by hand the equivalents of: ${missing[*]} (or use the conda route: conda env create -f environment.yml, then make setup PYTHON=\$CONDA_PREFIX/bin/python)"
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      fail "not root and no password-less sudo. Run as root: apt-get install -y ${missing[*]}"
    fi
  fi
  say "apt-get update && apt-get install ${missing[*]}"
  $SUDO apt-get update -qq || fail "apt-get update failed (network or sources). Install by hand: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || fail "apt-get install failed. Install by hand: ${missing[*]}"
  did_something=1
fi

# ---------------------------------------------------------------- 2. virtualenv
CURRENT_STEP="Python virtualenv .venv"
step "$CURRENT_STEP"
if [ -z "$PYTHON" ]; then
  # The system Python: Debian's boost_python is built for it.
  if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON="$(command -v python3)"; fi
fi
[ -x "$PYTHON" ] || fail "no Python interpreter at '$PYTHON' (set PYTHON=/path/to/python3)"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
say "base interpreter: $PYTHON (Python $PYVER)"
req_hash="$(sha256sum requirements.txt | cut -d' ' -f1)"
# what .venv was made from: pinned or kept (BYO), the requirements, the base interpreter
route="$([ -n "$BYO_PY" ] && echo byo || echo pinned)"
base="$(readlink -f "$PYTHON")"
marker="$route $req_hash $base"
old_marker="$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)"
if [ -x "$VENV/bin/python" ] && [ "$old_marker" = "$marker" ]; then
  say "up to date ($VENV)"
else
  read -r old_route _ old_base <<< "$old_marker"
  if [ -e "$VENV" ] && [ -n "$old_base" ] && [ "$old_route $old_base" != "$route $base" ]; then
    say "$VENV was made from another interpreter or route ($old_route $old_base): making it again"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    # --system-site-packages lets a conda/system pycaffe stay importable (bring-your-own route)
    "$PYTHON" -m venv --system-site-packages "$VENV" || fail "could not create $VENV (Debian: apt-get install python3-venv)"
  fi
  if [ -n "$BYO_PY" ]; then
    # keep the environment's numpy/protobuf (its pycaffe is compiled against them); add only
    # what is missing, holding everything present at its version
    byo="$ROOT/tools/caffe_build/byo_python_deps.py"
    # .venv sees what PYTHON sees (its site-packages even when PYTHON is itself a venv)
    vsite="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$PYTHON" "$byo" paths > "$vsite/_rednet_byo_python.pth" || fail "could not read the import paths of $PYTHON"
    need="$("$VENV/bin/python" "$byo" missing requirements.txt)" || fail "could not check the packages of $PYTHON"
    if [ -n "$need" ]; then
      say "PYTHON=$PYTHON imports caffe: keeping its packages, installing the missing: $(echo $need)"
      cons="$VENV/.byo-constraints.txt"
      "$VENV/bin/python" "$byo" constraints > "$cons"
      "$VENV/bin/python" -m pip install -q -c "$cons" $need \
        || fail "pip install of $(echo $need) into $VENV failed (install them into $PYTHON's environment, e.g. with conda)"
    else
      say "PYTHON=$PYTHON imports caffe and has every package the project needs: nothing installed"
    fi
    say "in use: $("$VENV/bin/python" "$byo" versions) (the pins of requirements.txt are what CI tests)"
  else
    say "pip install -r requirements.txt (pinned)"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -r requirements.txt || fail "pip install -r requirements.txt failed"
  fi
  echo "$marker" > "$VENV/.requirements.sha256"
  did_something=1
fi
VPY="$VENV/bin/python"

# ---------------------------------------------------------------- 2b. the `rednet` command
# `pip install -e .` (pyproject.toml): the package rednet from tools/, editable, without
# dependencies (step 2 installed them); it gives .venv/bin/rednet. A .venv that is a link to
# another checkout's (a git worktree sharing it) is left alone: its command is that checkout's.
CURRENT_STEP="the rednet command (pip install -e .)"
step "$CURRENT_STEP"
pkg_marker="$(sha256sum pyproject.toml | cut -d' ' -f1) $(readlink -f "$ROOT")"
venv_real="$(readlink -f "$VENV")"
if [ "${venv_real#"$(readlink -f "$ROOT")"/}" = "$venv_real" ]; then
  say "$VENV is $venv_real, another checkout's: its rednet command is left to that checkout"
elif [ -x "$VENV/bin/rednet" ] && [ "$(cat "$VENV/.rednet-package" 2>/dev/null || true)" = "$pkg_marker" ]; then
  say "up to date ($VENV/bin/rednet)"
else
  say "pip install -e . (the package rednet, editable; no dependencies: requirements.txt has them)"
  # setuptools >= 64 in .venv builds it without fetching anything; else pip fetches it
  iso=""
  "$VPY" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 64)' >/dev/null 2>&1 \
    && iso="--no-build-isolation"
  "$VPY" -m pip install -q --no-deps $iso -e "$ROOT" || fail "pip install -e . into $VENV failed"
  echo "$pkg_marker" > "$VENV/.rednet-package"
  did_something=1
fi

mkdir -p "$CAFFE_DIR"
write_env() { write_env_file "$ENV_FILE" "$@"; }
write_env_file() {  # write an env file atomically: CAFFE_BIN, CAFFE_PYTHONPATH, CAFFE_LD_LIBRARY_PATH
  local file="$1"; shift
  mkdir -p "$(dirname "$file")"
  local tmp="$file.tmp.$$"
  {
    echo "# written by tools/setup.sh; read by bin/caffe and bin/python"
    echo "CAFFE_BIN='$1'"
    echo "CAFFE_PYTHONPATH='$2'"
    echo "CAFFE_LD_LIBRARY_PATH='$3'"
    echo "CAFFE_ORIGIN='$4'"
  } > "$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv "$tmp" "$file"; did_something=1; fi
}
write_config() {  # Makefile.config for the tree $1 from Makefile.config.in, plus the file $2 if given
  sed -e "s|@PYTHON_INCLUDE@|$PY_INC $NUMPY_INC|" -e "s|@PYTHON_LIBRARIES@|$BOOST_PY|" \
      -e "s|@HDF5_INC@|$HDF5_INC|" -e "s|@HDF5_LIB@|$HDF5_LIB|" \
      "$ROOT/tools/caffe_build/Makefile.config.in" > "$1/Makefile.config"
  [ -z "${2:-}" ] || cat "$2" >> "$1/Makefile.config"
}
SDIST_BUILT=""   # set when Caffe is built from the sdist (the batch-parallel build needs it)

# ---------------------------------------------------------------- 3. Caffe
CURRENT_STEP="Caffe"
step "$CURRENT_STEP"
if [ -n "$CAFFE_HOME" ]; then
  [ -d "$CAFFE_HOME" ] || fail "CAFFE_HOME=$CAFFE_HOME is not a folder"
  bin=""; pyp=""
  for c in "$CAFFE_HOME/build/tools/caffe.bin" "$CAFFE_HOME/build/tools/caffe" "$CAFFE_HOME/bin/caffe" "$CAFFE_HOME/tools/caffe"; do
    [ -x "$c" ] && { bin="$c"; break; }
  done
  [ -n "$bin" ] || fail "CAFFE_HOME=$CAFFE_HOME has no caffe binary (looked for build/tools/caffe.bin, bin/caffe)"
  for c in "$CAFFE_HOME/python" "$CAFFE_HOME"/lib/python3*/site-packages; do
    [ -f "$c/caffe/__init__.py" ] && { pyp="$c"; break; }
  done
  [ -n "$pyp" ] || fail "CAFFE_HOME=$CAFFE_HOME has no pycaffe (looked for python/caffe, lib/python3*/site-packages/caffe)"
  say "using your Caffe: $bin, pycaffe in $pyp"
  write_env "$bin" "$pyp" "$CAFFE_HOME/build/lib:$CAFFE_HOME/lib" "CAFFE_HOME"
elif [ -n "$BYO_PY" ]; then
  [ -n "$BYO_CAFFE" ] || fail "PYTHON=$PYTHON imports caffe, but there is no caffe binary beside it or on PATH"
  "$VPY" -c 'import caffe' >/dev/null 2>&1 || fail "$VPY cannot import caffe although $PYTHON can"
  say "using your Caffe: $BYO_CAFFE, pycaffe of $PYTHON"
  write_env "$BYO_CAFFE" "" "" "PYTHON"
elif [ -z "${FORCE_BUILD:-}" ] && [ ! -f "$ENV_FILE" ] && "$VPY" -c 'import caffe' >/dev/null 2>&1 && command -v caffe >/dev/null 2>&1; then
  say "pycaffe already importable and caffe on PATH: using them ($(command -v caffe))"
  write_env "$(command -v caffe)" "" "" "preinstalled"
else
  sdist="$CAFFE_DIR/$CAFFE_SDIST-$CAFFE_VERSION.tar.gz"
  expected="$(cut -d' ' -f1 "$CAFFE_SHA256_FILE")"
  PATCHES=("$ROOT"/tools/caffe_build/patches/*.patch)
  patch_sum="$(cat "${PATCHES[@]}" "$ROOT/tools/caffe_build/Makefile.config.in" | sha256sum | cut -c1-16)"
  built="$SRC/.built-$expected-$patch_sum"
  # the sdist's Makefile builds into temp/ (BVLC's into build/)
  find_build() { for d in temp build; do [ -x "$SRC/$d/tools/caffe.bin" ] && { echo "$SRC/$d"; return; }; done; }
  if [ -f "$built" ] && [ -n "$(find_build)" ] && [ -f "$SRC/python/caffe/_caffe.so" ]; then
    say "already built ($SRC)"
  else
    if [ ! -f "$sdist" ]; then
      say "pip download $CAFFE_SDIST==$CAFFE_VERSION (source distribution)"
      tmpd="$(mktemp -d "$CAFFE_DIR/dl.XXXXXX")"
      "$VPY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation "$CAFFE_SDIST==$CAFFE_VERSION" -d "$tmpd" \
        || { rm -rf "$tmpd"; fail "pip download $CAFFE_SDIST==$CAFFE_VERSION failed (is PyPI reachable?)"; }
      mv "$tmpd/$CAFFE_SDIST-$CAFFE_VERSION.tar.gz" "$sdist.part" && rm -rf "$tmpd"
    else
      cp "$sdist" "$sdist.part"
    fi
    actual="$(sha256sum "$sdist.part" | cut -d' ' -f1)"
    if [ "$actual" != "$expected" ]; then
      rm -f "$sdist.part" "$sdist"
      fail "sha256 mismatch for $CAFFE_SDIST-$CAFFE_VERSION.tar.gz: expected $expected, got $actual (refusing to build it)"
    fi
    mv "$sdist.part" "$sdist"
    say "sha256 ok: $actual"
    if [ ! -f "$SRC/Makefile" ]; then
      rm -rf "$SRC" "$SRC.tmp"; mkdir -p "$SRC.tmp"
      tar -xzf "$sdist" -C "$SRC.tmp" --strip-components=1 || fail "could not unpack $sdist"
      # the sdist ships a caffe_pb2.py made by an old protoc, which current protobuf
      # refuses; remove it so that `make pycaffe` generates it with this machine's protoc
      rm -f "$SRC.tmp/python/caffe/proto/caffe_pb2.py"
      mv "$SRC.tmp" "$SRC"
    fi
    for p in "${PATCHES[@]}"; do
      if patch -d "$SRC" -p1 -R --dry-run -s -f < "$p" >/dev/null 2>&1; then
        say "patch already applied: $(basename "$p")"
      else
        say "applying $(basename "$p")"
        patch -d "$SRC" -p1 -s -f < "$p" || fail "could not apply tools/caffe_build/patches/$(basename "$p")"
      fi
    done
    NUMPY_INC="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
    PY_INC="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    BOOST_PY="boost_python${PYVER/./}"
    compgen -G "/usr/lib/*/lib${BOOST_PY}.so" >/dev/null || compgen -G "/usr/lib/lib${BOOST_PY}.so" >/dev/null || compgen -G "/usr/local/lib/lib${BOOST_PY}.so" >/dev/null \
      || fail "lib${BOOST_PY}.so not found: Boost.Python for Python $PYVER is needed (Debian: libboost-python-dev; or set PYTHON= to the Python it was built for)"
    HDF5_INC=/usr/include/hdf5/serial
    HDF5_LIB="$(ls -d /usr/lib/*/hdf5/serial 2>/dev/null | head -1)"
    write_config "$SRC"
    say "Makefile.config written from tools/caffe_build/Makefile.config.in (CPU_ONLY, OpenBLAS, HDF5 on, $BOOST_PY)"
    say "make -j$JOBS all pycaffe  (about 5 minutes on 2 cores; log: .caffe/build.log)"
    start=$(date +%s)
    if ! make -C "$SRC" -j"$JOBS" all pycaffe > "$CAFFE_DIR/build.log" 2>&1; then
      tail -n 25 "$CAFFE_DIR/build.log" >&2
      fail "Caffe build failed (full log: .caffe/build.log). Check that these Debian packages are installed: ${APT_PACKAGES[*]}"
    fi
    say "built in $(( $(date +%s) - start )) s"
    # _caffe.so and the tools find libcaffe through an rpath into build/lib
    [ -e "$SRC/build" ] || ln -s temp "$SRC/build"
    touch "$built"
    did_something=1
  fi
  BUILD="$(find_build)"
  [ -n "$BUILD" ] || fail "the Caffe build left no tools/caffe.bin (see .caffe/build.log)"
  # the origin names the patch set (its sha256, as in the build stamp): cards and run.json record it
  write_env "$BUILD/tools/caffe.bin" "$SRC/python" "$BUILD/lib" "brocolli-caffe-$CAFFE_VERSION+patches@$patch_sum"
  SDIST_BUILT=1
fi

# ---------------------------------------------------------------- 4. batch-parallel Caffe
# The same sdist in a fresh tree, the stock patches and then tools/caffe_build/patches/fast/,
# built with OpenMP and oneDNN (Makefile.config.fast).  Always from a fresh tree: Caffe's Makefile does
# not track header dependencies (its -isystem include paths hide them from -MMD).
CURRENT_STEP="Caffe, batch-parallel build (.caffe-fast)"
step "$CURRENT_STEP"
if [ -z "$SDIST_BUILT" ]; then
  say "not built: it is built from the sdist, and your own Caffe is in use"
  if [ -f "$FAST_ENV" ]; then rm -f "$FAST_ENV"; say "removed the old .caffe-fast/env, so that bin/caffe uses yours"; did_something=1; fi
elif [ "${FAST:-1}" = 0 ]; then
  say "FAST=0: skipped (an existing one is kept; CAFFE=stock selects the stock build)"
else
  FSRC="$FAST_DIR/src"
  FAST_PATCHES=("$ROOT"/tools/caffe_build/patches/fast/*.patch)
  fast_sum="$(cat "${PATCHES[@]}" "${FAST_PATCHES[@]}" "$ROOT/tools/caffe_build/Makefile.config.in" \
              "$ROOT/tools/caffe_build/Makefile.config.fast" | sha256sum | cut -c1-16)"
  fbuilt="$FSRC/.built-$expected-$fast_sum"
  if [ -f "$fbuilt" ] && [ -x "$FSRC/temp/tools/caffe.bin" ] && [ -f "$FSRC/python/caffe/_caffe.so" ]; then
    say "already built ($FSRC)"
  else
    [ -f "$sdist" ] && [ "$(sha256sum "$sdist" | cut -d' ' -f1)" = "$expected" ] \
      || fail "$sdist is missing or altered: remove .caffe/src and run make setup again"
    say "fresh source tree .caffe-fast/src from $(basename "$sdist")"
    rm -rf "$FSRC" "$FSRC.tmp"; mkdir -p "$FSRC.tmp"
    tar -xzf "$sdist" -C "$FSRC.tmp" --strip-components=1 || fail "could not unpack $sdist"
    rm -f "$FSRC.tmp/python/caffe/proto/caffe_pb2.py"
    for p in "${PATCHES[@]}" "${FAST_PATCHES[@]}"; do
      say "applying ${p#$ROOT/tools/caffe_build/patches/}"
      patch -d "$FSRC.tmp" -p1 -s -f < "$p" || fail "could not apply ${p#$ROOT/}"
    done
    NUMPY_INC="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
    PY_INC="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    BOOST_PY="boost_python${PYVER/./}"
    HDF5_INC=/usr/include/hdf5/serial
    HDF5_LIB="$(ls -d /usr/lib/*/hdf5/serial 2>/dev/null | head -1)"
    write_config "$FSRC.tmp" "$ROOT/tools/caffe_build/Makefile.config.fast"
    mv "$FSRC.tmp" "$FSRC"
    say "Makefile.config: as stock, plus tools/caffe_build/Makefile.config.fast (-fopenmp, -ldnnl)"
    say "make -j$JOBS all pycaffe  (about 5 minutes on 2 cores; log: .caffe-fast/build.log)"
    start=$(date +%s)
    if ! make -C "$FSRC" -j"$JOBS" all pycaffe > "$FAST_DIR/build.log" 2>&1; then
      tail -n 25 "$FAST_DIR/build.log" >&2
      fail "the batch-parallel Caffe build failed (full log: .caffe-fast/build.log); FAST=0 skips it"
    fi
    say "built in $(( $(date +%s) - start )) s"
    [ -e "$FSRC/build" ] || ln -s temp "$FSRC/build"
    touch "$fbuilt"
    did_something=1
  fi
  write_env_file "$FAST_ENV" "$FSRC/temp/tools/caffe.bin" "$FSRC/python" "$FSRC/temp/lib" \
    "brocolli-caffe-$CAFFE_VERSION+patches/fast@$fast_sum"
fi

# ---------------------------------------------------------------- 5. check
CURRENT_STEP="check"
step "$CURRENT_STEP"
if [ -f "$FAST_ENV" ]; then
  CAFFE=fast "$ROOT/bin/caffe" --version >/dev/null 2>&1 || fail "CAFFE=fast bin/caffe --version does not run"
  CAFFE=fast "$ROOT/bin/python" -c 'import caffe' >/dev/null 2>&1 || fail "CAFFE=fast bin/python cannot import caffe"
  say "batch-parallel build: runs; bin/caffe and bin/python use it (CAFFE=stock: the stock build)"
fi
export CAFFE=stock
"$ROOT/bin/caffe" --version >/dev/null 2>&1 || fail "bin/caffe --version does not run"
if ! imp_err="$("$ROOT/bin/python" -c 'import caffe, h5py, jinja2' 2>&1)"; then
  printf '%s\n' "$imp_err" | tail -5 >&2
  hint=""
  if printf '%s' "$imp_err" | grep -qi "numpy 1\.x\|_ARRAY_API\|numpy.core.multiarray failed"; then
    hint=" (that pycaffe was compiled against numpy 1.x, .venv has numpy 2: use make setup PYTHON=<the Python it was built for>, which keeps that Python's numpy)"
  fi
  fail "bin/python cannot import caffe, h5py, jinja2$hint"
fi
say "bin/caffe: $("$ROOT/bin/caffe" --version 2>&1 | head -1)"
say "bin/python: import caffe ok"
trap - EXIT
if [ "$did_something" -eq 0 ]; then
  echo; echo "setup: everything already in place, nothing to do."
else
  echo; echo "setup: done."
fi
