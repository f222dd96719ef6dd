"""The optimizer test matrix, kept as data: one row per optimizer in the book.

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


CASES = [
    Case("Adam", "recipes.optim.adam:Adam", dict(lr=0.05), "torch.optim:Adam", family="adam", elementwise=True, fused=True),
    Case("AdamW", "recipes.optim.adam:Adam", dict(lr=0.05, weight_decay=0.01, decoupled=True),
         "torch.optim:AdamW", dict(weight_decay=0.01), family="adam", elementwise=True, fused=True),
    Case("AMSGrad", "recipes.optim.adam:AMSGrad", dict(lr=0.05), "torch.optim:Adam", dict(amsgrad=True), family="adam",
         elementwise=True, fused=True),
    Case("OptimisticAMSGrad", "recipes.optim.adam:OptimisticAMSGrad", dict(lr=0.05), family="adam", elementwise=True),
    Case("Lion", "recipes.optim.lion:Lion", dict(lr=0.01), "lion_pytorch:Lion", elementwise=True),
    Case("Gravity", "recipes.optim.gravity:Gravity", dict(lr=2.0, alpha=0.0), "pytorch_optimizer:Gravity", dict(alpha=0.0),
         contract=dict(steps=500), elementwise=True),
    Case("AdaBelief", "recipes.optim.adabelief:AdaBelief", dict(lr=0.05), "pytorch_optimizer:AdaBelief",
         dict(rectify=False), family="adam", elementwise=True),
    Case("AdaBound", "recipes.optim.adabound:AdaBound", dict(lr=0.05), "pytorch_optimizer:AdaBound",
         dict(weight_decouple=False), family="adam", elementwise=True),
    Case("AMSBound", "recipes.optim.adabound:AMSBound", dict(lr=0.05), "pytorch_optimizer:AdaBound",
         dict(weight_decouple=False, ams_bound=True), family="adam", elementwise=True),
    # group-wide sums amplify float32 rounding (1e-5 after 10 steps); its chapter matches bit for bit on its own setup
    Case("DAdaptSGD", "recipes.optim.lr_free:DAdaptSGD", dict(momentum=0.9), "dadaptation:DAdaptSGD", dict(momentum=0.9),
         exact=False),
    Case("DoG", "recipes.optim.lr_free:DoG"),
    Case("U-DoG", "recipes.optim.lr_free:UDoG"),
    Case("AdaGradNorm", "recipes.optim.lr_free:AdaGradNorm"),
    Case("SANIA", "recipes.optim.sania:SANIA"),
    Case("Shampoo", "recipes.optim.shampoo:Shampoo", dict(lr=0.3, eps=1e-4), "pytorch_optimizer:Shampoo",
         dict(matrix_eps=1e-4), exact=False,
         bench_skip="an eigendecomposition of every Kronecker factor at every step (update_freq=1): about 30 s per step on "
                    "the tiny LM's 4096-row embedding"),
    # no library implements the proximal step; its chapter checks l1=0 against torch's SGD and the result against sklearn's Lasso
    Case("ProximalSGD", "recipes.optim.nondifferentiable:ProximalSGD", dict(lr=0.1, l1=1e-3), elementwise=True),
    Case("MeZO", "recipes.optim.zeroth_order:MeZO", dict(lr=5e-3), contract=dict(forward_only=True)),
    Case("ZOAdam", "recipes.optim.zeroth_order:ZOAdam", dict(lr=3e-2), contract=dict(forward_only=True)),
    Case("GaLore", "recipes.optim.low_rank:GaLore", dict(lr=0.05, rank=2, update_gap=10, eps=1e-12),
         "galore_torch:GaLoreAdamW", dict(no_deprecation_warning=True, eps=1e-12),
         reference_matrix_options=dict(rank=2, update_proj_gap=10, scale=1.0, proj_type="std")),
    Case("DCTAdam (SVD-free)", "recipes.optim.low_rank:DCTAdam", dict(lr=0.05, rank=2, update_gap=10)),
    Case("FRUGAL", "recipes.optim.low_rank:Frugal", dict(lr=0.02, rank=2, update_gap=10)),
    Case("Fira", "recipes.optim.low_rank:Fira", dict(lr=0.05, rank=2, update_gap=100, eps=1e-12), "pytorch_optimizer:Fira",
         dict(eps=1e-12), reference_matrix_options=dict(rank=2, update_proj_gap=100, scale=1.0, projection_type="std")),
    Case("SubsetNormAdam", "recipes.optim.low_rank:SubsetNormAdam", dict(lr=0.1), "pytorch_optimizer:AdamWSN",
         reference_matrix_options=dict(sn=True), exact=False),
    Case("SNSM", "recipes.optim.low_rank:SNSM", dict(lr=0.1, rank=2, update_gap=10)),
]
