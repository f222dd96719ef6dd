"""The fast paths: fused=True against our foreach path, compile-friendly updates, foreach and fp16 checks.

The compile test traces each elementwise optimizer's `update` with dynamo (`fullgraph=True`, the
counting backend, no inductor code generation): 0.1-0.8 s per optimizer, about 4 s for the ten.
One test runs the real compiler (inductor) once, on Adam with two small tensors: 7 s with a cold
inductor cache on this 2-core machine. The whole file takes about 20 s; the compiled kernels'
speed is measured by `make bench`, not here.
"""
import copy, warnings

import pytest
import torch
from torch import nn

from optimizer_cases import CASES
from recipes.core.optim import reference_gap

ELEMENTWISE = [c for c in CASES if c.elementwise]
FUSED = [c for c in CASES if c.fused]
EPS32 = torch.finfo(torch.float32).eps


def _params():
    torch.manual_seed(0)
    ps = [nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(5))]
    for p in ps:
        p.grad = torch.randn_like(p)
    return ps


@pytest.mark.parametrize("case", ELEMENTWISE, ids=lambda c: c.name)
def test_update_compiles_without_graph_breaks_or_recompiles(case):
    "The update traces into one graph (fullgraph=True) and is not recompiled as the step counter grows."
    from torch._dynamo.testing import CompileCounter
    torch._dynamo.reset()
    ps = _params()
    opt = case.make(ps)
    opt.step()  # eager: the state exists
    group, states, grads = opt.param_groups[0], [opt.state[p] for p in ps], [p.grad for p in ps]
    expected = [p.detach().clone() for p in ps]
    twin = case.make([nn.Parameter(p.detach().clone()) for p in ps])  # an eager copy from the same point
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict would alias the tensors
    for q, p in zip(twin.param_groups[0]["params"], ps):
        q.grad = p.grad.clone()
    counter = CompileCounter()
    compiled = torch.compile(torch.no_grad()(lambda: opt.update(group, ps, grads, states)), fullgraph=True, backend=counter)
    for _ in range(3):
        compiled()
        twin.step()
    assert counter.frame_count == 1, f"{case.name}: {counter.frame_count} compilations for 3 steps (a guard on the step?)"
    assert all(isinstance(s["step"], torch.Tensor) for s in states), "the step counter must be a tensor"
    scale = max(1.0, max(p.abs().max().item() for p in ps))
    for p, q in zip(ps, twin.param_groups[0]["params"]):  # 3 steps × 16 ε × |θ|: the same arithmetic, reordered
        torch.testing.assert_close(p, q, rtol=0, atol=3 * 16 * EPS32 * scale)
    assert any(not torch.equal(p, e) for p, e in zip(ps, expected)), "the compiled update did not move the parameters"


@pytest.mark.parametrize("case", FUSED, ids=lambda c: c.name)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_fused_matches_foreach(case, weight_decay):
    "fused=True runs torch's fused kernel on our state: step by step the same iterates, to float32 rounding."
    steps = 25
    for n in (1, 5, steps):
        gap = reference_gap(lambda ps: case.make(ps, fused=True, weight_decay=weight_decay),
                            lambda ps: case.make(ps, foreach=True, weight_decay=weight_decay), steps=n)
        assert gap <= 2 * n * EPS32, (n, gap)  # n steps × ε × |θ| ≤ 2: rounding only


@pytest.mark.parametrize("case", FUSED, ids=lambda c: c.name)
def test_fused_state_dict_round_trip(case):
    "A fused run saved and restored continues exactly (the step counter stays a float32 tensor)."
    ps = _params()
    opt = case.make(ps, fused=True)
    opt.step()
    other = case.make([nn.Parameter(p.detach().clone()) for p in ps], fused=True)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    for q, p in zip(other.param_groups[0]["params"], ps):
        q.grad = p.grad.clone()
    opt.step(); other.step()
    for p, q in zip(ps, other.param_groups[0]["params"]):
        assert torch.equal(p, q)
    assert all(s["step"].dtype == torch.float32 for s in other.state.values())


@pytest.mark.parametrize("case", [c for c in CASES if not c.fused], ids=lambda c: c.name)
def test_fused_refused_by_name(case):
    "An optimizer whose arithmetic is not torch's fused Adam refuses fused=True with an error naming the argument."
    with pytest.raises((TypeError, ValueError), match="fused"):
        case.make([nn.Parameter(torch.zeros(3))], fused=True)


@pytest.mark.parametrize("case", [c for c in CASES if "eps" in c.make([nn.Parameter(torch.zeros(1))]).defaults],
                         ids=lambda c: c.name)
def test_fp16_eps_underflow_warns(case):
    "float16 parameters with an ε that rounds to 0 in float16 get a warning; a representable ε does not."
    half = nn.Parameter(torch.zeros(4, 4, dtype=torch.float16))
    with pytest.warns(UserWarning, match="underflows to 0 in float16"):
        case.make([half], eps=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        keys = [k for k in case.make([nn.Parameter(torch.zeros(1))]).defaults if k == "eps" or k.endswith("_eps")]
        case.make([half], **{k: 1e-3 for k in keys})
        case.make([nn.Parameter(torch.zeros(4, 4))], eps=1e-8)  # float32: 1e-8 is fine


def test_inductor_compiles_adam_update_to_one_kernel_and_matches_eager():
    "The real compiler, once: Adam's update becomes one fused C++ kernel and gives eager's iterates to rounding."
    import re
    from torch._inductor.utils import run_and_get_code
    from recipes.optim.adam import Adam
    torch._dynamo.reset()
    ps = _params()
    opt = Adam(ps, lr=1e-2, weight_decay=0.1, decoupled=True)
    opt.step()
    twin = Adam([nn.Parameter(p.detach().clone()) for p in ps], lr=1e-2, weight_decay=0.1, decoupled=True)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    for q, p in zip(twin.param_groups[0]["params"], ps):
        q.grad = p.grad.clone()
    group, states, grads = opt.param_groups[0], [opt.state[p] for p in ps], [p.grad for p in ps]
    compiled = torch.compile(torch.no_grad()(lambda: opt.update(group, ps, grads, states)), fullgraph=True)
    _, code = run_and_get_code(compiled)
    kernels = set(re.findall(r"(cpp_fused_\w+)\s*=\s*async_compile", "\n".join(code)))
    assert len(kernels) == 1, f"expected one fused kernel for the whole update, got {sorted(kernels)}"
    twin.step()
    compiled(); twin.step()
    for p, q in zip(ps, twin.param_groups[0]["params"]):
        torch.testing.assert_close(p, q, rtol=0, atol=2 * 16 * EPS32 * 3)  # 2 steps × 16 ε × |θ| ≤ 3
