"""The restoration tasks of the paper, by name.

A task name is used everywhere a task is meant: generated nets (``gen/<net>/<task>/``),
solvers (``solvers/<net>_<task>.prototxt``), databases (``data/db/<task>/``), run records
and tables.

| name            | paper                            | levels            |
|-----------------|----------------------------------|-------------------|
| denoise-s10 ... | Tables 1, 2 (one model a level)  | sigma 10/30/50/70 |
| denoise-mixed   | Table 6 (one model, all levels)  | sigma 10,30,50,70 |
| sr-x2 ...       | Tables 3-5 (one model a scale)   | x2 / x3 / x4      |
| sr-mixed        | Table 7 (one model, all scales)  | x2,x3,x4          |

Every task trains on 50x50 patches (the paper's size).  A name with the suffix ``-p<N>``
is the same task on N x N patches, with its own database ``data/db/<task>-p<N>/``: e.g.
``denoise-s70-p243``, the 243x243 sigma=70 patches of the paper's Figure 3(a) (5
convolutions of stride 3 bring 243 down to 1).  Such names are not in :data:`TASKS` (the
presets are not rendered for them); :func:`get_task` knows them.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError

SIGMAS = (10, 30, 50, 70)
SCALES = (2, 3, 4)
PATCH = 50                 # the paper's training patch size (Sec. 2.3)


@dataclass(frozen=True)
class Task:
    name: str
    kind: str              # "denoise" or "sr"
    levels: tuple          # sigmas (denoise) or scales (sr) the model is trained on
    patch: int = PATCH     # training patches are patch x patch

    @property
    def mixed(self) -> bool:
        return len(self.levels) > 1


TASKS: dict[str, Task] = {}
for _s in SIGMAS:
    TASKS[f"denoise-s{_s}"] = Task(f"denoise-s{_s}", "denoise", (_s,))
TASKS["denoise-mixed"] = Task("denoise-mixed", "denoise", SIGMAS)
for _s in SCALES:
    TASKS[f"sr-x{_s}"] = Task(f"sr-x{_s}", "sr", (_s,))
TASKS["sr-mixed"] = Task("sr-mixed", "sr", SCALES)


def get_task(name: str) -> Task:
    """The task called ``name``: a paper task, or ``denoise-s<sigma>`` for any sigma in (0, 255];
    either with ``-p<N>`` appended for N x N training patches instead of 50 x 50."""
    if name in TASKS:
        return TASKS[name]
    if isinstance(name, str) and "-p" in name:
        base_name, size = name.rsplit("-p", 1)
        if not size.isdigit() or not 2 <= int(size) <= 4096:
            raise UserError(f"task {name!r}: the suffix -p<N> is a patch size, expected an integer "
                            f"from 2 to 4096 (e.g. denoise-s70-p243)")
        base = get_task(base_name)
        if base.patch != PATCH:
            raise UserError(f"task {name!r}: expected one patch-size suffix -p<N>")
        if int(size) == PATCH:
            raise UserError(f"task {name!r}: {PATCH}x{PATCH} is every task's patch size; name the task {base.name}")
        return Task(f"{base.name}-p{int(size)}", base.kind, base.levels, int(size))
    if name.startswith("denoise-s"):
        try:
            sigma = float(name[len("denoise-s"):])
        except ValueError:
            sigma = None
        if sigma is not None and 0 < sigma <= 255:
            level = int(sigma) if sigma.is_integer() else sigma
            return Task(f"denoise-s{level}", "denoise", (level,))
        raise UserError(f"task {name!r}: sigma must be a number in (0, 255]")
    raise UserError(f"task {name!r}: expected one of {', '.join(TASKS)} (or denoise-s<sigma>)")


def task_name(kind: str, level: int | float | str | None = None) -> str:
    """Task name from the Makefile's words: ``task_name("denoise", 30) == "denoise-s30"``,
    ``task_name("sr", 3) == "sr-x3"``, ``task_name("denoise", "mixed")``; a full name passes."""
    if kind in TASKS and level in (None, ""):
        return kind
    if kind == "denoise":
        if str(level) == "mixed":
            return "denoise-mixed"
        try:
            sigma = float(level)
        except (TypeError, ValueError):
            raise UserError(f"SIGMA={level!r}: expected a number in (0, 255] or mixed") from None
        if not 0 < sigma <= 255:
            raise UserError(f"SIGMA={level!r}: expected a number in (0, 255] or mixed")
        return get_task(f"denoise-s{int(sigma) if sigma.is_integer() else sigma}").name
    if kind == "sr":
        if str(level) == "mixed":
            return "sr-mixed"
        name = f"sr-x{level}"
        if name not in TASKS:
            raise UserError(f"SCALE={level!r}: expected one of {', '.join(map(str, SCALES))} or mixed")
        return name
    raise UserError(f"TASK={kind!r}: expected denoise or sr (or one of {', '.join(TASKS)})")


def task_from_words(task: str | None, sigma=None, scale=None) -> str | None:
    """The task named on a command line: ``denoise`` + ``sigma``, ``sr`` + ``scale``, or a
    full task name (``denoise-s30``, ``sr-mixed``); ``None`` stays ``None``."""
    if task is None:
        return None
    if task in ("denoise", "sr"):
        level = sigma if task == "denoise" else scale
        if level in (None, ""):
            raise UserError(f"TASK={task}: needs {'SIGMA' if task == 'denoise' else 'SCALE'}= "
                            f"(a level or mixed), or a full task name such as denoise-s30, sr-x3")
        return task_name(task, level)
    return get_task(task).name
