"""Training recipes: the learning-rate schedule a run's solver is rendered with (``RECIPE=``).

The paper gives Adam at a learning rate of 1e-4 and nothing else: no schedule, no iteration
count (docs/recipe.md).  A recipe fills that gap by name, so that a run, its card and the
tables' notes can say what trained a model:

- ``paper``: 1e-4, constant (Caffe ``lr_policy: "fixed"``).  The default: it is the paper's
  setting, and every model of the zoo so far was trained with it; the study of docs/recipe.md
  decides whether another one replaces it.
- ``step``: 1e-4, then x0.1 for the last fifth of the run's budget (``multistep`` at
  0.8 x ITERS), the common step schedule from scratch.
- ``finetune``: 1e-5, constant: continuing (``FROM_MODEL=``) a model trained at 1e-4, the
  one-time gain of a late drop measured in docs/recipe.md.

``LR=``, ``LR_STEPS=`` (iterations, comma-separated), ``LR_GAMMA=``, ``BATCH=`` (patches per
iteration; default 16, the authors' saved training net), ``INIT=`` (the weights' filler:
``xavier``, the authors' saved net's, or ``msra``, He et al.'s), ``BIAS_LR=`` (the biases'
learning-rate multiplier; 0.1 in the authors' saved net) and ``CLIP=`` (Caffe's
``clip_gradients``: the L2 norm all gradients together are scaled down to; none by default)
change a named recipe's fields; the result is recorded as the recipe ``custom`` with its base.  Steps are absolute
iterations, as Caffe counts them (a run started from a model at iteration N counts on from N).

A run records its resolved recipe in ``run.json`` (``recipe``); resuming keeps it, and a
different recipe on an existing run is refused (:func:`for_run`); :func:`describe_history`
phrases the recipes of a model's stretches (cards, the tables' notes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .errors import UserError
from .netgen import TRAIN_BATCH, TRAIN_BIAS_LR, TRAIN_INIT

#: the weight fillers INIT= takes (Caffe's filler types)
INITS = ("xavier", "msra")

#: the name of the default recipe (the paper's constant learning rate)
DEFAULT = "paper"


@dataclass(frozen=True)
class Recipe:
    """A learning-rate schedule: ``base_lr``, multiplied by ``gamma`` at each iteration of
    ``steps`` (none: constant).  ``step_fractions`` are steps given as fractions of the run's
    budget, turned into iterations by :meth:`resolve`."""
    name: str
    base_lr: float = 1e-4
    steps: tuple[int, ...] = ()
    gamma: float = 0.1
    step_fractions: tuple[float, ...] = ()
    base: str | None = None              # for ``custom``: the named recipe it changes
    batch: int = TRAIN_BATCH             # training patches per iteration (the train net's batch_size)
    init: str = TRAIN_INIT               # the weights' filler (the train net's weight_filler type)
    bias_lr: float = TRAIN_BIAS_LR       # the biases' lr_mult in the train net
    clip: float = 0.0                    # the solver's clip_gradients (0: none)
    about: str = field(default="", compare=False)

    @property
    def lr_policy(self) -> str:
        return "multistep" if self.steps else "fixed"

    def resolve(self, max_iter: int) -> "Recipe":
        """The recipe with its fractional steps turned into iterations of a run to ``max_iter``."""
        if not self.step_fractions:
            return self
        steps = sorted(set(self.steps) | {int(round(f * max_iter)) for f in self.step_fractions})
        return replace(self, steps=tuple(steps), step_fractions=())

    def lr_at(self, iteration: int) -> float:
        """The learning rate Caffe uses at ``iteration`` (multistep: after each step passed)."""
        return self.base_lr * self.gamma ** sum(1 for s in self.steps if iteration >= s)

    def is_paper(self) -> bool:
        """The paper's constant 1e-4 (rendered exactly as solvers/ hold it)."""
        return self.lr_policy == "fixed" and self.base_lr == 1e-4

    def to_dict(self) -> dict:
        """What run.json and the card record (after :meth:`resolve`)."""
        d = {"name": self.name, "base_lr": self.base_lr, "lr_policy": self.lr_policy}
        if self.steps:
            d["steps"] = list(self.steps)
            d["gamma"] = self.gamma
        if self.base:
            d["base"] = self.base
        if self.batch != TRAIN_BATCH:        # recorded where it is not the default (older runs: 16)
            d["batch"] = self.batch
        if self.init != TRAIN_INIT:          # the same: written only where not the default
            d["init"] = self.init
        if self.bias_lr != TRAIN_BIAS_LR:
            d["bias_lr"] = self.bias_lr
        if self.clip:
            d["clip"] = self.clip
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "Recipe":
        """A recorded recipe; a run recorded before recipes existed was trained with the paper's."""
        if not d:
            return RECIPES[DEFAULT]
        return cls(name=d["name"], base_lr=float(d["base_lr"]), steps=tuple(int(s) for s in d.get("steps", ())),
                   gamma=float(d.get("gamma", 0.1)), base=d.get("base"),
                   batch=int(d.get("batch", TRAIN_BATCH)), init=d.get("init", TRAIN_INIT),
                   bias_lr=float(d.get("bias_lr", TRAIN_BIAS_LR)), clip=float(d.get("clip", 0.0)))

    def asked(self) -> str:
        """The ``make train`` words that ask for this recipe (as :func:`select` gives it, before
        :meth:`resolve`): ``RECIPE=step``, or for ``custom``
        the fields that differ from its base (``BATCH=32``, ``RECIPE=finetune LR=3e-6``)."""
        if not self.base:
            return f"RECIPE={self.name}"
        b = RECIPES[self.base]
        words = [f"RECIPE={self.base}"] if self.base != DEFAULT else []
        if self.base_lr != b.base_lr:
            words.append(f"LR={self.base_lr:g}")
        if (self.steps, self.step_fractions) != (b.steps, b.step_fractions):
            words.append("LR_STEPS=" + ",".join(str(s) for s in self.steps))
        if self.gamma != b.gamma:
            words.append(f"LR_GAMMA={self.gamma:g}")
        words += self.field_words(b)
        return " ".join(words) or f"RECIPE={self.base}"

    def field_words(self, other: "Recipe") -> list[str]:
        """``BATCH=``, ``INIT=``, ``BIAS_LR=``, ``CLIP=`` for the fields that differ from ``other``."""
        words = []
        if self.batch != other.batch:
            words.append(f"BATCH={self.batch}")
        if self.init != other.init:
            words.append(f"INIT={self.init}")
        if self.bias_lr != other.bias_lr:
            words.append(f"BIAS_LR={self.bias_lr:g}")
        if self.clip != other.clip:
            words.append(f"CLIP={self.clip:g}")
        return words

    def describe(self) -> str:
        """One phrase: ``paper (lr 1e-4 constant)``, ``step (lr 1e-4, x0.1 at 8,000)``."""
        how = f"lr {_lr(self.base_lr)}"
        if self.steps:
            how += f", x{self.gamma:g} at " + ", ".join(f"{s:,}" for s in self.steps)
        elif self.step_fractions:
            how += f", x{self.gamma:g} at " + ", ".join(f"{f:g} of ITERS" for f in self.step_fractions)
        else:
            how += " constant"
        if self.batch != TRAIN_BATCH:
            how += f", batch {self.batch}"
        if self.init != TRAIN_INIT:
            how += f", init {self.init}"
        if self.bias_lr != TRAIN_BIAS_LR:
            how += f", bias lr x{self.bias_lr:g}"
        if self.clip:
            how += f", clip {self.clip:g}"
        name = f"{self.name} of {self.base}" if self.base else self.name
        return f"{name} ({how})"


def describe_history(history: list | None, current: dict | None = None) -> str:
    """``the recipe paper (lr 1e-4 constant)``, or for a model trained in stretches
    (``[{from_iteration, recipe}]``) each with the iteration it began at."""
    if not history or len(history) < 2:
        return f"the recipe {Recipe.from_dict(current or (history[0]['recipe'] if history else None)).describe()}"
    return "; ".join(f"from iteration {h['from_iteration']:,} the recipe {Recipe.from_dict(h['recipe']).describe()}"
                     for h in history)


def _lr(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-") if x > 0 else "0"


#: the named recipes (one registry; docs/recipe.md says what each measured)
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("paper", about="the paper's Adam at 1e-4, constant"),
    Recipe("step", step_fractions=(0.8,), about="1e-4, then 1e-5 for the last fifth of ITERS"),
    Recipe("finetune", base_lr=1e-5, about="1e-5 constant, for continuing a model trained at 1e-4"),
)}


def _parse_lr(v: str, what: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise UserError(f"{what}={v!r}: expected a positive number such as 1e-4") from None
    if not (math.isfinite(x) and 0 < x < 1):
        raise UserError(f"{what}={v!r}: expected a learning rate between 0 and 1 (such as 1e-4)")
    return x


def _parse_steps(v: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in v.replace(" ", "").split(",") if s)
    except ValueError:
        raise UserError(f"LR_STEPS={v!r}: expected iterations separated by commas, such as 8000,9000") from None
    if not steps or any(s < 1 for s in steps) or list(steps) != sorted(set(steps)):
        raise UserError(f"LR_STEPS={v!r}: expected increasing positive iterations, such as 8000,9000")
    return steps


def _parse_batch(v: str) -> int:
    try:
        b = int(v)
    except ValueError:
        raise UserError(f"BATCH={v!r}: expected a whole number of patches per iteration, such as 32") from None
    if not 1 <= b <= 1024:
        raise UserError(f"BATCH={v!r}: expected between 1 and 1024 patches per iteration")
    return b


def _parse_init(v: str) -> str:
    if v not in INITS:
        raise UserError(f"INIT={v!r}: expected one of {', '.join(INITS)} (the weights' filler)")
    return v


def _parse_positive(v: str, what: str, top: float, example: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise UserError(f"{what}={v!r}: expected a positive number such as {example}") from None
    if not (math.isfinite(x) and 0 < x <= top):
        raise UserError(f"{what}={v!r}: expected a number above 0 and at most {top:g} (such as {example})")
    return x


def select(name: str | None = None, lr: str | None = None, steps: str | None = None,
           gamma: str | None = None, batch: str | None = None, init: str | None = None,
           bias_lr: str | None = None, clip: str | None = None) -> Recipe | None:
    """The recipe asked for on the command line (None: none asked for, the run's own or the
    default applies).  ``lr``/``steps``/``gamma``/``batch``/``init``/``bias_lr``/``clip``
    change the named one into ``custom``."""
    fields = (lr, steps, gamma, batch, init, bias_lr, clip)
    if name is None and all(f is None for f in fields):
        return None
    base = name or DEFAULT
    if base not in RECIPES:
        raise UserError(f"RECIPE={base!r}: expected one of {', '.join(RECIPES)} (docs/recipe.md)")
    r = RECIPES[base]
    if all(f is None for f in fields):
        return r
    changes: dict = {"name": "custom", "base": base}
    if lr is not None:
        changes["base_lr"] = _parse_lr(lr, "LR")
    if steps is not None:
        changes["steps"], changes["step_fractions"] = _parse_steps(steps), ()
    if gamma is not None:
        g = _parse_lr(gamma, "LR_GAMMA")
        changes["gamma"] = g
    if batch is not None:
        changes["batch"] = _parse_batch(batch)
    if init is not None:
        changes["init"] = _parse_init(init)
    if bias_lr is not None:
        changes["bias_lr"] = _parse_positive(bias_lr, "BIAS_LR", 10, "1")
    if clip is not None:
        changes["clip"] = _parse_positive(clip, "CLIP", 1e6, "10")
    r = replace(r, **changes)
    if gamma is not None and not (r.steps or r.step_fractions):
        raise UserError(f"LR_GAMMA={gamma}: the recipe has no steps to apply it at; give LR_STEPS= too")
    return r


def for_run(asked: Recipe | None, recorded: dict | None, exists: bool, max_iter: int, where: str) -> Recipe:
    """The resolved recipe of a run: an existing run's own (``recorded``; the paper's for runs
    made before recipes were recorded), a new run's ``asked`` (default: :data:`DEFAULT`).
    A recipe asked for that differs from an existing run's own is refused in one line."""
    if not exists:
        return (asked or RECIPES[DEFAULT]).resolve(max_iter)
    own = Recipe.from_dict(recorded)
    if asked is not None:
        want = asked.resolve(max_iter) if not asked.step_fractions else None
        same = want is not None and want.to_dict() == own.to_dict()
        if not same and not (asked.step_fractions and asked.name == own.name and not asked.base):
            raise UserError(f"{where}: trained with the recipe {own.describe()}; RECIPE {asked.describe()} "
                            f"would change it mid-run; drop RECIPE/LR* to resume, or start a new run "
                            f"(RUN=<another name>, FROM_MODEL=) with it")
    return own
