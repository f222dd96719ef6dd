"""The optimizer test matrix, kept as data: one row per optimizer in the book, read from the `OptimizerCase`s each
chapter declares in its `__chapter__` (see `recipes.core.chapter`).

`tests/test_optimizers.py` runs the behavioural contract (`recipes.core.optim.check_optimizer`) on
every row, `tests/test_fused.py` compiles every elementwise row and checks every fused row, and
`tools/bench.py` times each row against its reference and against torch's fused AdamW.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    "One optimizer: where it lives, the options the contract runs it with, and its reference."
    name: str  # display name
    ours: str  # "module:Class" of our implementation
    kwargs: dict = field(default_factory=dict)  # options under which check_optimizer passes
    reference: str | None = None  # "module:Class" of a well-kept implementation of the same rule
    reference_kwargs: dict = field(default_factory=dict)  # the reference's options for the same rule
    family: str = ""  # "adam" marks the Adam family (benchmarked against AdamW(foreach=True) too)
    reference_matrix_options: dict = field(default_factory=dict)  # per-group options the reference needs on 2-D weights
    exact: bool = True  # False: the rules agree only under settings the chapter's own equivalence test uses (timed, not compared here)
    contract: dict = field(default_factory=dict)  # options for check_optimizer (e.g. more steps for a deliberately slow rule)
    elementwise: bool = False  # per-coordinate (or per-tensor) rule: its update must compile with no graph break
    fused: bool = False  # its arithmetic is torch's fused Adam/AdamW: fused=True must match its foreach path
    bench_skip: str = ""  # why `make bench` leaves this row out by default (name it on the command line to time it anyway)

    def make(self, params, **overrides):
        return load(self.ours)(params, **{**self.kwargs, **overrides})

    def make_reference(self, params, **overrides):
        "The reference optimizer; if it takes its low-rank options per group, 2-D weights get their own group."
        params = list(params)
        if self.reference_matrix_options:
            matrices = [p for p in params if p.dim() == 2]
            others = [p for p in params if p.dim() != 2]
            params = [{"params": matrices, **self.reference_matrix_options}] + ([{"params": others}] if others else [])
        return load(self.reference)(params, **{**self.reference_kwargs, **overrides})


def load(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _cases() -> list[Case]:
    from dataclasses import fields
    from recipes.core.chapter import OptimizerCase, declared
    shared = [f.name for f in fields(OptimizerCase) if f.name not in ("name", "cls")]
    return [Case(c.name, f"{d.module.__name__}:{c.cls}", **{f: getattr(c, f) for f in shared})
            for d in declared() for c in d.chapter.optimizers]


CASES = _cases()
