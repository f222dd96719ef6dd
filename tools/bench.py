"""Benchmarks: each optimizer's step and our LoRA layer against their references, on the same inputs.

    python tools/bench.py [--repeats N] [--out bench.json] [NAME ...]

For every row of tools/optimizer_cases.py it times one `step()` of ours and of the reference (the
median of `repeats` steps after warm-up) on two parameter sets: the zoo's tiny LM (1.1M parameters,
built from its config: no training needed) and a 10M-parameter stack of linears. It records the
ratio ours/reference and the optimizer-state bytes of both. Every row is also timed against
`torch.optim.AdamW(fused=True)`, the fastest Adam step torch has, together with our `fused=True` path
(Adam, AdamW, AMSGrad) and our step under `torch.compile` (elementwise optimizers, on the 10M stack,
with the compile time); `best_ratio_vs_fused_adamw_equal_state` is the fastest of our paths over fused
AdamW, scaled down when our state is larger than AdamW's (target 1.5). Adam-family rows are also timed
against `torch.optim.AdamW(foreach=True)`. Rows are timed in interleaved rounds, medians, with fewer
rounds for slow rows so that a full run stays near 5 minutes on 2 cores. The adapter section times forward + backward of our
LoRA against `peft`'s on the same model and batch (the tiny LM, and one 4096x4096 linear), and a
merged model's inference against the base model's. `tools/book.py pages` renders the JSON as a book page.
"""
from __future__ import annotations

import argparse, json, os, platform, statistics, sys, time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from optimizer_cases import CASES, Case  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench.json"


def parameter_sets() -> dict[str, list[nn.Parameter]]:
    "Named parameter lists with fixed random gradients."
    from recipes.core.zoo import TINY_LM
    torch.manual_seed(0)
    sets = {"tiny-lm": list(TINY_LM.build(TINY_LM.config).parameters()),
            "10M linears": list(nn.Sequential(*[nn.Linear(1000, 1000) for _ in range(10)]).parameters())}
    for params in sets.values():
        for p in params:
            p.grad = torch.randn_like(p) * 1e-2
    return sets


def _clone(params):
    out = [nn.Parameter(p.detach().clone()) for p in params]
    for p, q in zip(out, params):
        p.grad = q.grad.clone()
    return out


def time_steps(makers: dict, params, repeats: int, compiled: tuple = (), budget: float = 3.0) -> dict[str, dict]:
    """Median seconds per step and state bytes for each maker, timed in interleaved rounds (fair under load).

    Makers named in `compiled` step through `torch.compile(opt.step)`; their first call (tracing and
    code generation) is reported as `compile_s`. A row whose round of steps is slow gets fewer rounds
    (at least 3), so that a row costs about `budget` seconds."""
    from recipes.core.optim import optimizer_state_bytes
    runs = {}
    for name, make in makers.items():
        opt = make(_clone(params))
        closure = (lambda backward=True: torch.tensor(0.0)) if getattr(opt, "requires_closure", False) else None
        fn = torch.compile(opt.step) if name in compiled else opt.step
        runs[name] = {"opt": opt, "step": (lambda fn=fn, c=closure: fn(c) if c else fn()), "times": []}
    for name, r in runs.items():  # the first step creates the state (and compiles)
        t = time.perf_counter()
        r["step"]()
        r["first_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for r in runs.values():  # warm-up round
        r["step"]()
    rounds = max(3, min(repeats, int(budget / max(time.perf_counter() - t, 1e-9))))
    for _ in range(rounds):
        for r in runs.values():
            t = time.perf_counter()
            r["step"]()
            r["times"].append(time.perf_counter() - t)
    out = {}
    for name, r in runs.items():
        med = statistics.median(r["times"])
        out[name] = {"s": med, "bytes": optimizer_state_bytes(r["opt"]), "rounds": rounds}
        if name in compiled:
            out[name]["compile_s"] = r["first_s"] - med  # the first call less one compiled step
    return out


COMPILED_SETS = ("10M linears",)  # compiling every elementwise optimizer costs 5-20 s each: one parameter set


def bench(cases: list[Case], repeats: int, compile_: bool = True) -> list[dict]:
    rows = []
    for set_name, params in parameter_sets().items():
        n = sum(p.numel() for p in params)
        for case in cases:
            lr = case.kwargs.get("lr", 1e-3)
            makers = {"ours": case.make, "fused_adamw": lambda ps: torch.optim.AdamW(ps, lr=lr, fused=True)}
            compiled = ("ours_compiled",) if compile_ and case.elementwise and set_name in COMPILED_SETS else ()
            if compiled:
                makers["ours_compiled"] = case.make
            if case.fused:
                makers["ours_fused"] = lambda ps: case.make(ps, fused=True)
            if case.reference:
                makers["reference"] = lambda ps: case.make_reference(ps, lr=lr)
            if case.family == "adam":
                makers["adamw_foreach"] = lambda ps: torch.optim.AdamW(ps, lr=lr, foreach=True)
            if compiled:
                torch._dynamo.reset()  # every optimizer's step shares torch's `wrapper` code object: without a reset the
                                       # recompile limit (8) is reached after a few rows and later rows run eager
            t = time_steps(makers, params, repeats, compiled)
            fused = t["fused_adamw"]
            row = {"optimizer": case.name, "params": set_name, "numel": n, "rounds": t["ours"]["rounds"],
                   "ours_ms": 1e3 * t["ours"]["s"], "ours_state_bytes": t["ours"]["bytes"],
                   "fused_adamw_ms": 1e3 * fused["s"], "fused_adamw_state_bytes": fused["bytes"],
                   "ratio_vs_fused_adamw": t["ours"]["s"] / fused["s"]}
            if case.reference:
                row |= {"reference": case.reference, "reference_ms": 1e3 * t["reference"]["s"],
                        "reference_state_bytes": t["reference"]["bytes"], "ratio": t["ours"]["s"] / t["reference"]["s"]}
            if case.family == "adam":
                row |= {"adamw_foreach_ms": 1e3 * t["adamw_foreach"]["s"],
                        "ratio_vs_adamw": t["ours"]["s"] / t["adamw_foreach"]["s"]}
            best = t["ours"]["s"]
            if case.fused:
                row |= {"ours_fused_ms": 1e3 * t["ours_fused"]["s"], "fused_ratio_vs_fused_adamw": t["ours_fused"]["s"] / fused["s"]}
                best = min(best, t["ours_fused"]["s"])
            if compiled:
                c = t["ours_compiled"]
                row |= {"ours_compiled_ms": 1e3 * c["s"], "compile_s": c["compile_s"],
                        "compiled_ratio_vs_fused_adamw": c["s"] / fused["s"]}
                best = min(best, c["s"])
            # at equal state size: an optimizer that keeps k times AdamW's state may take k times as long
            row["best_ratio_vs_fused_adamw_equal_state"] = best / fused["s"] * min(1.0, fused["bytes"] / max(1, row["ours_state_bytes"]))
            rows.append(row)
            print(f"{set_name:12s} {case.name:22s} ours {row['ours_ms']:8.2f} ms"
                  + (f"  fused {row['ours_fused_ms']:7.2f} ms" if case.fused else "")
                  + (f"  compiled {row['ours_compiled_ms']:7.2f} ms (compile {row['compile_s']:.1f} s)" if compiled else "")
                  + f"  | AdamW(fused) {row['fused_adamw_ms']:7.2f} ms, best/fused at equal state "
                  + f"{row['best_ratio_vs_fused_adamw_equal_state']:.2f}"
                  + (f"  | ref {row['reference_ms']:8.2f} ms ratio {row['ratio']:.2f}" if case.reference else ""),
                  flush=True)
    return rows


def _interleaved(fns: dict, repeats: int) -> dict[str, float]:
    "Median seconds of each zero-argument function, timed in interleaved rounds after a warm-up."
    times = {k: [] for k in fns}
    for _ in range(2):
        for f in fns.values():
            f()
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_adapters(repeats: int) -> list[dict]:
    "Our LoRA vs peft's (forward + backward), and merged inference vs the base model."
    import copy, warnings
    import peft
    from recipes.core.adapters import merge_adapters
    from recipes.core.zoo import TINY_LM
    from recipes.peft.lora import apply_lora
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Linear(4096, 4096))
    setups = {"tiny-lm": (TINY_LM.build(TINY_LM.config), ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                          lambda m, x: m(input_ids=x).logits, torch.randint(1, 4096, (8, 128))),
              "4096x4096 linear": (wide, ["0"], lambda m, x: m(x), torch.randn(256, 4096))}
    rows = []
    for name, (base, targets, call, x) in setups.items():
        base.eval()
        ours = apply_lora(copy.deepcopy(base), r=8, alpha=16, target_modules=targets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, target_modules=targets))
        def train_step(model):
            def f():
                for p in model.parameters():
                    p.grad = None
                call(model, x).float().pow(2).mean().backward()
            return f
        t = _interleaved({"ours": train_step(ours), "peft": train_step(theirs)}, repeats)
        merged = merge_adapters(copy.deepcopy(ours))
        with torch.no_grad():
            inf = _interleaved({"merged": lambda: call(merged, x), "base": lambda: call(base, x)}, repeats)
        rows.append({"model": name, "ours_ms": 1e3 * t["ours"], "peft_ms": 1e3 * t["peft"], "ratio": t["ours"] / t["peft"],
                     "merged_ms": 1e3 * inf["merged"], "base_ms": 1e3 * inf["base"],
                     "merged_ratio": inf["merged"] / inf["base"], "peft_version": peft.__version__})
        print(f"{name:18s} LoRA fwd+bwd ours {rows[-1]['ours_ms']:8.2f} ms  peft {rows[-1]['peft_ms']:8.2f} ms  "
              f"ratio {rows[-1]['ratio']:.2f};  merged/base inference {rows[-1]['merged_ratio']:.2f}", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="only these optimizers (default: all)")
    ap.add_argument("--repeats", type=int, default=9, help="timed rounds per row, at most (fewer for slow rows)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    unknown = set(args.names) - {c.name for c in CASES}
    if unknown:
        ap.error(f"unknown optimizer(s) {sorted(unknown)}; choose from {[c.name for c in CASES]}")
    cases = [c for c in CASES if (c.name in args.names if args.names else not c.bench_skip)]
    skipped = {c.name: c.bench_skip for c in CASES if c.bench_skip and c not in cases}
    for name, why in skipped.items():
        print(f"not timed: {name} ({why})")
    t0 = time.perf_counter()
    load = os.getloadavg()
    result = {"created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repeats": args.repeats,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
              "load_average_at_start": list(load),
              "targets": {"ratio": 1.1, "ratio_vs_adamw": 1.3, "lora_ratio": 1.05,
                          "best_ratio_vs_fused_adamw_equal_state": 1.5, "galore_ratio_10M": 1.1},
              "skipped": skipped, "rows": bench(cases, args.repeats, not args.no_compile), "adapters": bench_adapters(args.repeats)}
    result["load_average_at_end"] = list(os.getloadavg())
    result["seconds"] = time.perf_counter() - t0
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} in {result['seconds']:.0f} s (load average {load[0]:.2f} at the start, "
          f"{result['load_average_at_end'][0]:.2f} at the end, on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
