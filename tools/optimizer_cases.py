"""The optimizer test matrix, kept as data: one row per optimizer in the book.

`tests/test_optimizers.py` runs the behavioural contract (`recipes.core.optim.check_optimizer`) on
every row, and `tools/bench.py` times each row with a reference against that reference.
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

    def make(self, params, **overrides):
        return load(self.ours)(params, **{**self.kwargs, **overrides})

    def make_reference(self, params, **overrides):
        return load(self.reference)(params, **{**self.reference_kwargs, **overrides})


def load(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


CASES = [
    Case("Adam", "recipes.optim.adam:Adam", dict(lr=0.05), "torch.optim:Adam", family="adam"),
    Case("AdamW", "recipes.optim.adam:Adam", dict(lr=0.05, weight_decay=0.01, decoupled=True),
         "torch.optim:AdamW", dict(weight_decay=0.01), family="adam"),
    Case("AMSGrad", "recipes.optim.adam:AMSGrad", dict(lr=0.05), "torch.optim:Adam", dict(amsgrad=True), family="adam"),
]
