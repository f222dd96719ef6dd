"""`fit` as a user runs it: gradient accumulation, checkpoint and resume, progress output, clear errors,
and the PEFT comparison's summary table rendering as an HTML table in the book."""
import io, json, time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from recipes.core.train import Callback, EnsembleLoader, Ensemble, Progress, fit, member_cross_entropy, progress

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def _data(n=96, d=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, (x[:, :classes] * 3).argmax(1)


def _model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 4))


def ce(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


class Count(Callback):
    def before_fit(self, trainer): self.before = self.after = self.losses = self.backwards = 0
    def before_step(self, trainer): self.before += 1
    def after_loss(self, trainer): self.losses += 1
    def after_backward(self, trainer): self.backwards += 1
    def after_step(self, trainer): self.after += 1


# --- gradient accumulation ------------------------------------------------------------------------------------------

def _sgd_run(batches, k, steps=1, lr=0.5):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    count = Count()
    hist = fit(model, ce, batches, opt, steps=steps, scheduler=sched, callbacks=[count], progress=False,
               accelerator=Accelerator(cpu=True, gradient_accumulation_steps=k))
    return model, hist, count, sched


def test_accumulating_four_micro_batches_equals_one_batch_of_32():
    x, y = _data(32)
    whole, h_whole, _, _ = _sgd_run([(x, y)], k=1)
    micro, h_micro, count, sched = _sgd_run([(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)], k=4)
    start = _model()
    moved = max((a - b).abs().max().item() for a, b in zip(whole.parameters(), start.parameters()))
    gap = max((a - b).abs().max().item() for a, b in zip(whole.parameters(), micro.parameters()))
    # fp32: the two gradients differ by the rounding of a sum of 32 terms in another order, ~1e-7 relative
    assert moved > 1e-2, "the step must move the parameters"
    assert gap <= 1e-5 * moved, f"4 micro-batches of 8 must step like one batch of 32: gap {gap:.2e}, step {moved:.2e}"
    assert (count.before, count.losses, count.backwards, count.after) == (1, 4, 1, 1)
    assert sched.last_epoch == 1 and len(h_micro["loss"]) == 1
    assert h_micro["loss"][0] == pytest.approx(h_whole["loss"][0], abs=1e-6)


def test_accumulation_counts_optimizer_steps_and_epochs():
    x, y = _data(48)
    micro = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 48, 8)]  # 6 micro-batches: 2 steps of k=4 per epoch
    _, hist, count, sched = _sgd_run(micro, k=4, steps=5, lr=0.1)
    assert count.after == 5 and sched.last_epoch == 5 and hist.steps("loss").tolist() == [1, 2, 3, 4, 5]
    assert count.losses == 4 + 2 + 4 + 2 + 4  # never spans an epoch: the second step of each epoch has 2 batches
    # epochs= counts ceil(6 / 4) = 2 optimizer steps per epoch
    model = _model()
    count = Count()
    fit(model, ce, micro, torch.optim.SGD(model.parameters(), lr=0.1), epochs=3, callbacks=[count], progress=False,
        accelerator=Accelerator(cpu=True, gradient_accumulation_steps=4))
    assert count.after == 6 and count.losses == 18


def test_a_short_last_group_is_a_mean_of_what_is_left():
    x, y = _data(16)
    lone, _, _, _ = _sgd_run([(x[:8], y[:8])], k=4)  # one micro-batch in its group: its own mean, not a quarter of it
    plain, _, _, _ = _sgd_run([(x[:8], y[:8])], k=1)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(lone.parameters(), plain.parameters()))


def test_closure_optimizers_refuse_accumulation():
    class NeedsClosure(torch.optim.SGD):
        requires_closure = True
    model = _model()
    with pytest.raises(ValueError, match="closure.*gradient_accumulation_steps=1"):
        fit(model, ce, [_data(8)], NeedsClosure(model.parameters(), lr=0.1), steps=1, progress=False,
            accelerator=Accelerator(cpu=True, gradient_accumulation_steps=2))
    Accelerator(cpu=True)  # accelerate's gradient state is process-wide: leave it at 1 for the next test


# --- checkpoint and resume ------------------------------------------------------------------------------------------

def _resumable(steps, total=20, k=1, **kw):
    from recipes.optim.schedules import WarmupCosine
    model = _model(dropout=0.3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = WarmupCosine(opt, total_steps=total, warmup_steps=3)
    x, y = _data(96)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), 16, shuffle=True,
                                     generator=torch.Generator().manual_seed(7))  # 6 batches per epoch
    hist = fit(model, ce, dl, opt, steps=steps, scheduler=sched, progress=False,
               accelerator=Accelerator(cpu=True, gradient_accumulation_steps=k), **kw)
    return model, opt, sched, hist


@pytest.mark.parametrize("k", [1, 2])
def test_resume_is_bit_identical(tmp_path, k):
    full, full_opt, full_sched, h_full = _resumable(20, k=k)
    _resumable(10, k=k, save_every=4, checkpoint_dir=tmp_path)  # step 10 falls mid-epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-10", "step-4", "step-8"]
    resumed, res_opt, res_sched, h_res = _resumable(20, k=k, resume_from=tmp_path)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming"
    for a, b in zip(full_opt.state_dict()["state"].values(), res_opt.state_dict()["state"].values()):
        assert all(torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])) for key in a)
    assert full_sched.state_dict() == res_sched.state_dict()
    assert h_full["loss"].tolist() == h_res["loss"].tolist()
    Accelerator(cpu=True)


def test_resume_of_an_ensemble_restores_its_loaders_generators(tmp_path):
    x, y = _data(64)
    def run(steps, **kw):
        ens = Ensemble(lambda: _model(dropout=0.2), [0, 1])
        loader = EnsembleLoader({"x": x, "y": y}, 16, [0, 1])
        loss = lambda m, b: member_cross_entropy(m(b["x"]), b["y"]).sum()
        fit(ens, loss, loader, torch.optim.Adam(ens.param_groups([1e-2])), steps=steps, progress=False, **kw)
        return ens
    full = run(10)
    run(6, save_every=6, checkpoint_dir=tmp_path)
    resumed = run(10, resume_from=tmp_path / "step-6")
    assert all(torch.equal(a, b) for a, b in zip(full.parameters(), resumed.parameters()))


def test_resume_of_a_lora_llama_with_tied_embeddings(tmp_path):
    "safetensors' save_model drops the tied copy; the adapters' state-dict hooks round-trip; resume stays exact."
    from recipes.core.models import lm_loss, tiny_lm, tiny_lm_config
    from recipes.peft.lora import apply_lora
    def run(steps, **kw):
        torch.manual_seed(0)
        model = apply_lora(tiny_lm(tiny_lm_config(32, width=32, layers=1, heads=2, ff=64, context=16)), r=4, alpha=8)
        blocks = torch.randint(1, 32, (64, 16), generator=torch.Generator().manual_seed(0))
        dl = torch.utils.data.DataLoader(blocks, 8, shuffle=True, generator=torch.Generator().manual_seed(0))
        fit(model, lm_loss, dl, steps=steps, lr=1e-2, progress=False, **kw)
        return model
    full = run(12)
    run(5, save_every=5, checkpoint_dir=tmp_path)
    resumed = run(12, resume_from=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))


def test_checkpoints_hold_no_pickles(tmp_path):
    _resumable(3, save_every=3, checkpoint_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "step-3").iterdir())
    assert files == ["model.safetensors", "state.json", "state.safetensors"]
    state = json.loads((tmp_path / "step-3" / "state.json").read_text())
    assert state["state"]["step"] == 3 and state["optimizer"]["param_groups"][0]["lr"] > 0
    from safetensors.torch import load_file
    assert any(k.startswith("optimizer.state") for k in load_file(tmp_path / "step-3" / "state.safetensors"))


def test_an_early_stop_is_checkpointed_and_the_latest_step_wins(tmp_path):
    from recipes.core.train import latest_checkpoint
    class StopAt7(Callback):
        def after_step(self, trainer): trainer.stop = trainer.step == 7
    _resumable(20, save_every=5, checkpoint_dir=tmp_path, callbacks=[StopAt7()])
    (tmp_path / "step-99.tmp").mkdir()  # a half-written checkpoint left by a crash is never picked
    (tmp_path / "step-99.tmp" / "state.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.glob("step-?")) == ["step-5", "step-7"]
    assert latest_checkpoint(tmp_path).name == "step-7" and latest_checkpoint(tmp_path / "step-5").name == "step-5"


def test_checkpoint_errors_name_the_arguments(tmp_path):
    with pytest.raises(ValueError, match="save_every= and checkpoint_dir= together"):
        _resumable(2, save_every=1)
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        _resumable(2, resume_from=tmp_path)
    _resumable(4, save_every=4, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="past this run's 2 steps"):
        _resumable(2, resume_from=tmp_path)


# --- progress ------------------------------------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self): return True


def test_progress_prints_one_line_per_loop_outside_a_terminal():
    out = io.StringIO()
    with Progress(4, "seeds", file=out) as outer:
        for _ in range(4):
            model = _model()
            fit(model, ce, [_data(16)], steps=3, desc="inner fit")  # nested: silent, the outer line stands for it
            outer.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seeds: 100%") and "4/4" in lines[0] and "it/s" in lines[0], lines


def test_progress_shows_rate_and_eta_in_long_loops_and_terminals():
    log = io.StringIO()
    bar = Progress(10, "long", file=log, interval=0.02)
    bar.update(); time.sleep(0.03); bar.update(loss=torch.tensor(2.5))
    assert "2/10" in log.getvalue() and "<" in log.getvalue() and "loss=2.5" in log.getvalue()  # elapsed<ETA
    bar.close()
    tty = _Terminal()
    with Progress(5, "live", file=tty) as live:
        for _ in range(5): live.update(loss=0.5)
    assert "\r" in tty.getvalue() and "5/5" in tty.getvalue() and "it/s" in tty.getvalue()  # tqdm's live bar
    assert list(progress(range(3), desc="loop")) == [0, 1, 2]


def test_fit_prints_its_line_to_stdout(capsys):
    model = _model()
    fit(model, ce, [_data(16)], steps=5, desc="digits")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("digits: 100%") and "5/5" in out[0] and "loss=" in out[0], out


# --- clear messages ------------------------------------------------------------------------------------------------

def test_warmup_longer_than_the_run_names_the_arguments():
    from recipes.optim.schedules import Constant, WarmupCosine, WarmupStableDecay
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=r"warmup_steps=10 is longer than the run, total_steps=5.*warmup_steps <= 5"):
        WarmupCosine(opt, total_steps=5, warmup_steps=10)
    with pytest.raises(ValueError, match=r"warmup_steps=10 \+ decay_steps=1 \(the default"):
        WarmupStableDecay(opt, total_steps=5, warmup_steps=10)
    with pytest.raises(ValueError, match=r"warmup_steps=10 is longer than the run, total_steps=5"):
        Constant(opt, total_steps=5, warmup_steps=10)


# --- the comparison page's table in the built book ------------------------------------------------------------------

def _summary_output():
    "The display bundle the comparison page shows for its summary (fake results, the real summary_frame)."
    import numpy as np
    from IPython.core.formatters import format_display_data
    from recipes.core.finetune import FinetuneResult, FinetuneTask
    from recipes.peft.comparison import summary_frame
    task = FinetuneTask("toy", nn.Identity(), None, None, lambda m: 0.5, "accuracy", True, 1)
    res = {n: FinetuneResult(n, [1e-2], [0, 1, 2], np.array([s]), np.zeros((1, 3, 1)), p, 0.002, True, {"total": 4096})
           for n, s, p in [("LoRA", [0.7, 0.72, 0.71], 100), ("full FT", [0.9, 0.91, 0.92], 1000)]}
    data, _ = format_display_data(summary_frame(task, res))
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _build_with_myst_nb(tmp_path, outputs=None, notebook: Path | None = None):
    "Render one notebook (given, or holding `outputs`) with myst-nb and the book's own Sphinx settings; return its HTML."
    import yaml
    from sphinx.application import Sphinx
    cfg = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    src = tmp_path / "src"
    src.mkdir()
    conf = {"extensions": ["myst_nb"], "nb_execution_mode": "off", "exclude_patterns": ["_build"],
            "myst_enable_extensions": cfg["parse"]["myst_enable_extensions"],
            **{k: v for k, v in cfg["sphinx"]["config"].items() if k.startswith(("nb_", "suppress"))}}
    (src / "conf.py").write_text("".join(f"{k} = {v!r}\n" for k, v in conf.items()))
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "python3",
                                                                          "language": "python"}},
          "cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# Page"},
                    {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 1, "source": "x",
                     "outputs": outputs}]}
    (src / "index.ipynb").write_text(notebook.read_text() if notebook is not None else json.dumps(nb))
    app = Sphinx(str(src), str(src), str(tmp_path / "html"), str(tmp_path / "doctrees"), "html",
                 status=None, warning=io.StringIO(), freshenv=True)
    app.build()
    return (tmp_path / "html" / "index.html").read_text()


def test_comparison_summary_renders_as_an_html_table(tmp_path):
    html = _build_with_myst_nb(tmp_path, [_summary_output()])
    assert "<table" in html and "dataframe" in html and "full FT" in html and "| Rank |" not in html and "|---|" not in html
    # and a Markdown table a chapter displays renders too: the book reads Markdown outputs as GitHub-flavoured
    # (nb_render_markdown_format: gfm); myst-nb's default, CommonMark, has no tables and would show raw pipes
    pipes = {"output_type": "display_data", "metadata": {},
             "data": {"text/markdown": "| Rank | Method |\n|---|---|\n| 1 | LoRA |", "text/plain": "<Markdown>"}}
    (tmp_path / "md").mkdir()
    md_html = _build_with_myst_nb(tmp_path / "md", [pipes])
    assert "<table" in md_html and "|---|" not in md_html, "Markdown tables in outputs must render as tables"


def test_executed_comparison_page_shows_an_html_table():
    "The executed copy the book renders (after `tools/book.py run peft/comparison`): an HTML table, no raw pipes."
    path = ROOT / "book" / "chapters" / "peft" / "comparison.ipynb"
    if not path.exists():
        pytest.skip("peft/comparison has not been executed in this checkout")
    nb = json.loads(path.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" and "display(summary_frame(" in "".join(c["source"])
               for o in c["outputs"]]
    if not outputs:
        pytest.skip("the executed copy predates summary_frame; re-run tools/book.py run peft/comparison")
    html = [o for o in outputs if "<table" in "".join(o.get("data", {}).get("text/html", ""))]
    pipes = [o for o in outputs if "| Rank |" in "".join(o.get("data", {}).get("text/markdown", ""))]
    text = ["".join(o["text"]) if o["output_type"] == "stream" else "".join(o.get("data", {}).get("text/plain", ""))
            for o in outputs if o["output_type"] == "stream" or "text/html" not in o.get("data", {})]
    bars = [line for t in text for line in t.splitlines() if "%|" in line]  # tqdm's bar: "desc: 100%|████| n/n [...]"
    assert html and not pipes, "the summary must be an HTML table output, not a Markdown pipe table"
    assert len(bars) == 1, f"progress must be one line for the comparison's loop, got {len(bars)}: {bars[:5]}"


def test_built_comparison_page_has_an_html_table(tmp_path):
    "The executed comparison page rendered by myst-nb with the book's settings: a real table, no raw pipes."
    path = ROOT / "book" / "chapters" / "peft" / "comparison.ipynb"
    if not path.exists() or "display(summary_frame(" not in path.read_text():
        pytest.skip("run tools/book.py run peft/comparison first")
    html = _build_with_myst_nb(tmp_path, notebook=path)
    assert 'class="dataframe' in html and "LoRA-GA" in html
    assert "| Rank |" not in html and "|---|" not in html and "|—|" not in html


def test_trainer_progress_is_one_line(tmp_path, capsys):
    "RecipesProgress replaces the 🤗 Trainer's tqdm bar and printed log dicts with one line per run."
    from transformers import Trainer, TrainingArguments
    from recipes.core.hf_trainer import use_recipes_progress
    from recipes.core.models import tiny_lm, tiny_lm_config
    torch.manual_seed(0)
    model = tiny_lm(tiny_lm_config(16, width=16, layers=1, heads=2, ff=32, context=8))
    ids = torch.randint(1, 16, (32, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": x, "labels": x} for x in ids]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=6, logging_steps=2,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                             dataloader_pin_memory=False)
    use_recipes_progress(Trainer(model=model, args=args, train_dataset=data), desc="tiny").train()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("tiny: 100%") and "6/6" in out[0] and "loss=" in out[0], out
    with pytest.raises(TypeError, match="transformers.Trainer"):
        use_recipes_progress(object())
    Accelerator(cpu=True)
