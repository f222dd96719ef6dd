"""One behavioural test over every optimizer in the book (the matrix is tools/optimizer_cases.py)."""
import pytest
import torch
from torch import nn

from optimizer_cases import CASES
from recipes.core.optim import check_optimizer, reference_gap


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_behavioural_contract(case):
    check_optimizer(case.make, **case.contract)


@pytest.mark.parametrize("case", [c for c in CASES if c.reference and c.exact], ids=lambda c: c.name)
def test_matches_reference(case):
    "Same init, same batches, 10 steps: ours and the reference agree to float32 rounding."
    lr = case.kwargs.get("lr", 1e-3)
    gap = reference_gap(case.make, lambda ps: case.make_reference(ps, lr=lr), steps=10, fresh_batches=False)
    assert gap <= 10 * 16 * torch.finfo(torch.float32).eps, gap  # steps × fan-in × ε (|θ| ≤ 1): rounding only


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rejects_bad_hyperparameters(case):
    param = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="lr"):
        case.make([param], lr=-1.0)
    with pytest.raises(TypeError, match="lr"):
        case.make([param], lr="fast")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_foreach_accepted_or_refused_by_name(case):
    "Every optimizer takes foreach=; a value it cannot honour is refused with an error that names it."
    param = nn.Parameter(torch.zeros(3))
    for foreach in (None, True, False):
        try:
            case.make([param], foreach=foreach)
        except ValueError as e:
            assert f"foreach={foreach}" in str(e), e
    with pytest.raises(TypeError, match="foreach"):
        case.make([param], foreach="yes")
