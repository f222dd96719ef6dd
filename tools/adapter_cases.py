"""The adapter test matrix (like peft's, kept as data): one row per (method, model, options).

The rows are the `AdapterCase`s each chapter declares in its `__chapter__` (see `recipes.core.chapter`); this file
holds only the small test models they run on. `tests/test_adapters.py` runs the generic contract
(`recipes.core.adapters.check_adapter`) on every row: disabled == base exactly, only adapter tensors train,
save -> load identical, merged == unmerged.
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


def _bert():
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=0, bos_token_id=0, eos_token_id=0))


def _bert_encoder():  # a bare BertModel: outputs last_hidden_state, no logits
    return _bert().bert


MODELS = {  # name -> (make_model, inputs)
    "mlp": (_mlp, lambda: torch.randn(4, 16, generator=torch.Generator().manual_seed(1))),
    "llama": (_llama, lambda: {"input_ids": torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1))}),
    "gpt2": (_gpt2, lambda: {"input_ids": torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1))}),
    "bert": (_bert, lambda: {"input_ids": torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1)),
                             "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3])}),  # one padded row
}

MODELS["bert-encoder"] = (_bert_encoder, MODELS["bert"][1])


def _cases() -> list[Case]:
    from recipes.core.chapter import ADAPTER_TEST_MODELS, declared
    assert set(MODELS) == set(ADAPTER_TEST_MODELS), "the test models and recipes.core.chapter.ADAPTER_TEST_MODELS disagree"
    return [Case(c.name, f"{d.module.__name__}:{c.config}", c.kwargs, c.model, c.starts_at_base)
            for d in declared() for c in d.chapter.adapters]


CASES = _cases()
