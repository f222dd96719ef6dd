"""One behavioural test over every optimizer in the book (the matrix is tools/optimizer_cases.py)."""
import pytest
import torch
from torch import nn

from optimizer_cases import CASES
from recipes.core.optim import check_optimizer


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_behavioural_contract(case):
    check_optimizer(case.make, **case.contract)


@pytest.mark.parametrize("case", [c for c in CASES if c.reference and c.exact], ids=lambda c: c.name)
def test_matches_reference(case):
    "Same parameters, same gradients, 10 steps: ours and the reference agree."
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    b = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    b.load_state_dict(a.state_dict())
    lr = case.kwargs.get("lr", 1e-3)
    ours, ref = case.make(a.parameters()), case.make_reference(b.parameters(), lr=lr)
    x, y = torch.randn(32, 6), torch.randn(32, 3)
    for _ in range(10):
        for model, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5)  # float32 rounding after 10 steps


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rejects_bad_hyperparameters(case):
    param = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="lr"):
        case.make([param], lr=-1.0)
    with pytest.raises(TypeError, match="lr"):
        case.make([param], lr="fast")
