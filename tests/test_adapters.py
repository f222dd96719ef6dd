"""One generic test over every adapter method in the book (the matrix is tools/adapter_cases.py)."""
import pytest
import torch

from adapter_cases import CASES, MODELS
from recipes.core.adapters import apply_adapter, check_adapter


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_adapter_contract(case):
    make_model, inputs = MODELS[case.model]
    check_adapter(lambda: make_model().eval(), case.make_config(), inputs(), starts_at_base=case.starts_at_base)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_unknown_target_lists_candidates(case):
    make_model, _ = MODELS[case.model]
    kwargs = {**case.kwargs, "target_modules": ["no_such_layer"]}
    config = type(case.make_config())(**kwargs)
    with pytest.raises(ValueError, match="Candidates"):
        apply_adapter(make_model(), config)


def test_model_type_is_checked():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        apply_adapter("model", CASES[0].make_config())
    with pytest.raises(TypeError, match="AdapterConfig"):
        apply_adapter(torch.nn.Linear(2, 2), {"r": 2})
