"""The adapter test matrix, kept as data (like peft's): one row per (method, model, options).

`tests/test_adapters.py` runs the generic contract (`recipes.core.adapters.check_adapter`) on every
row: disabled == base exactly, only adapter tensors train, save -> load identical, merged == unmerged.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Case:
    "One method on one model: the config class, its options, and the model family."
    name: str  # display name
    config: str  # "module:ConfigClass"
    kwargs: dict = field(default_factory=dict)  # the config's options
    model: str = "mlp"  # a key of MODELS
    starts_at_base: bool = True  # the freshly adapted model equals the base model

    def make_config(self):
        module, _, name = self.config.partition(":")
        return getattr(importlib.import_module(module), name)(**self.kwargs)


def _mlp():
    from recipes.core.models import MLP
    torch.manual_seed(0)
    return MLP(d_in=16, hidden=[32, 32], d_out=5)


def _llama():
    from recipes.core.models import tiny_lm, tiny_lm_config
    torch.manual_seed(0)
    return tiny_lm(tiny_lm_config(64, width=32, layers=2, heads=2, ff=64, context=16))


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=16,
                                      bos_token_id=0, eos_token_id=0))


MODELS = {  # name -> (make_model, inputs)
    "mlp": (_mlp, lambda: torch.randn(4, 16, generator=torch.Generator().manual_seed(1))),
    "llama": (_llama, lambda: {"input_ids": torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1))}),
    "gpt2": (_gpt2, lambda: {"input_ids": torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1))}),
}

CASES = [
    Case("LoRA mlp", "recipes.peft.lora:LoraConfig", dict(r=4, alpha=8)),
    Case("LoRA llama q,v", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=["q_proj", "v_proj"]), "llama"),
    Case("LoRA llama regex", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=r".*layers\.1\..*_proj"), "llama"),
    Case("LoRA gpt2 Conv1D", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=["c_attn", "c_fc"]), "gpt2"),
    Case("Asymmetric LoRA (B only) mlp", "recipes.peft.asymmetry:AsymmetricLoraConfig", dict(r=4, train="B")),
    Case("Asymmetric LoRA (A only) llama", "recipes.peft.asymmetry:AsymmetricLoraConfig",
         dict(r=2, train="A", target_modules=["q_proj", "v_proj"]), "llama"),
    Case("SSF mlp", "recipes.peft.ssf:SSFConfig", {}, starts_at_base=False),
    Case("SSF llama (bias-free)", "recipes.peft.ssf:SSFConfig", dict(target_modules=["q_proj", "down_proj"]), "llama",
         starts_at_base=False),
    Case("SSF gpt2 Conv1D", "recipes.peft.ssf:SSFConfig", dict(init_std=0.0, target_modules=["c_attn"]), "gpt2"),
]
