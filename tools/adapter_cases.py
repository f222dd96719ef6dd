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
BERT_ATTENTION = ["query", "key", "value"]  # BERT's names (the layers the MiniLM page adapts)

CASES = [
    Case("LoRA mlp", "recipes.peft.lora:LoraConfig", dict(r=4, alpha=8)),
    Case("LoRA llama q,v", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=["q_proj", "v_proj"]), "llama"),
    Case("LoRA llama regex", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=r".*layers\.1\..*_proj"), "llama"),
    Case("LoRA gpt2 Conv1D", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=["c_attn", "c_fc"]), "gpt2"),
    Case("Asymmetric LoRA (B only) mlp", "recipes.peft.asymmetry:AsymmetricLoraConfig", dict(r=4, train="B")),
    Case("Asymmetric LoRA (A only) llama", "recipes.peft.asymmetry:AsymmetricLoraConfig",
         dict(r=2, train="A", target_modules=["q_proj", "v_proj"]), "llama"),
    Case("DoRA (dynamic rank) mlp", "recipes.peft.dora:DoraConfig", dict(r=3, alpha=4)),
    Case("DoRA (dynamic rank) llama", "recipes.peft.dora:DoraConfig", dict(r=3, target_modules=["q_proj", "v_proj", "down_proj"]), "llama"),
    Case("LoLDU full-rank mlp", "recipes.peft.loldu:LolduConfig", {}),
    Case("LoLDU r=2 mlp", "recipes.peft.loldu:LolduConfig", dict(r=2, train_scale=False)),
    Case("LoLDU llama", "recipes.peft.loldu:LolduConfig", dict(target_modules=["q_proj", "v_proj", "down_proj"]), "llama"),
    Case("Bone (Bat) mlp", "recipes.peft.bone:BoneConfig", dict(r=8, target_modules=["0", "2"])),
    Case("Bone (Bone variant) mlp", "recipes.peft.bone:BoneConfig", dict(r=4, variant="bone")),
    Case("Bone (Bat) llama", "recipes.peft.bone:BoneConfig", dict(r=8), "llama"),
    Case("Bone (Bat) gpt2 Conv1D", "recipes.peft.bone:BoneConfig", dict(r=8, target_modules=["c_attn", "c_fc"]), "gpt2"),
    Case("LoTR mlp", "recipes.peft.lotr:LotrConfig", dict(r=4)),
    Case("LoTR llama", "recipes.peft.lotr:LotrConfig", dict(r=4), "llama"),
    Case("LoTR gpt2 Conv1D", "recipes.peft.lotr:LotrConfig", dict(r=2, target_modules=["c_attn", "c_fc"]), "gpt2"),
    Case("LoRA-GA mlp", "recipes.peft.lora_ga:LoraGAConfig", dict(r=2)),
    Case("LoRA-GA llama", "recipes.peft.lora_ga:LoraGAConfig", dict(r=2, target_modules=["q_proj", "v_proj", "down_proj"]), "llama"),
    Case("CorDA mlp", "recipes.peft.corda:CordaConfig", dict(r=2, mode="kpm")),
    Case("CorDA llama", "recipes.peft.corda:CordaConfig", dict(r=2, mode="ipm", target_modules=["q_proj", "v_proj", "down_proj"]), "llama"),
    Case("SVFT mlp", "recipes.peft.spectral:SVFTConfig", {}, starts_at_base=False),
    Case("SVFT random mlp", "recipes.peft.spectral:SVFTConfig", dict(pattern="random", rank=8), starts_at_base=False),
    Case("SVFT llama", "recipes.peft.spectral:SVFTConfig", dict(target_modules=["q_proj", "v_proj", "down_proj"]), "llama",
         starts_at_base=False),
    Case("Spectral Adapter mlp", "recipes.peft.spectral:SpectralAdapterConfig", dict(rank=3)),
    Case("Spectral Adapter rotational mlp", "recipes.peft.spectral:SpectralAdapterConfig", dict(rank=3, mode="rotational")),
    Case("Spectral Adapter llama", "recipes.peft.spectral:SpectralAdapterConfig", dict(rank=2, target_modules=["q_proj", "down_proj"]), "llama"),
    Case("OFT mlp", "recipes.peft.givens:OFTConfig", dict(block_size=4)),
    Case("OFT llama", "recipes.peft.givens:OFTConfig", dict(block_size=8, target_modules=["q_proj", "down_proj"]), "llama"),
    Case("qGOFT mlp", "recipes.peft.givens:GivensConfig", {}),
    Case("Givens exact mlp", "recipes.peft.givens:GivensConfig", dict(quasi=False, scale=False)),
    Case("qGOFT llama", "recipes.peft.givens:GivensConfig", dict(target_modules=["q_proj", "v_proj", "down_proj"]), "llama"),
    Case("Sparse FT mlp", "recipes.peft.sparse_ft:SparseConfig", dict(r=2)),
    Case("Sparse FT llama", "recipes.peft.sparse_ft:SparseConfig", dict(r=1), "llama"),
    Case("Sparse FT gpt2 Conv1D", "recipes.peft.sparse_ft:SparseConfig", dict(r=1, target_modules=["c_attn", "c_fc"]), "gpt2"),
    Case("RoSA mlp", "recipes.peft.sparse_ft_rosa:RosaConfig", dict(r=2, sparse_r=1)),
    Case("RoSA llama", "recipes.peft.sparse_ft_rosa:RosaConfig", dict(r=1, sparse_r=1, target_modules=["q_proj", "down_proj"]), "llama"),
    Case("RoSA gpt2 Conv1D", "recipes.peft.sparse_ft_rosa:RosaConfig", dict(r=1, sparse_r=1, target_modules=["c_attn", "c_fc"]), "gpt2"),
    Case("GLoRA mlp", "recipes.peft.glora:GloraConfig", {}),
    Case("GLoRA llama", "recipes.peft.glora:GloraConfig",
         dict(A="vector", C="lowrank", D="scalar", E="scalar", target_modules=["q_proj", "v_proj", "down_proj"]), "llama"),
    Case("SSF mlp", "recipes.peft.ssf:SSFConfig", {}, starts_at_base=False),
    Case("SSF llama (bias-free)", "recipes.peft.ssf:SSFConfig", dict(target_modules=["q_proj", "down_proj"]), "llama",
         starts_at_base=False),
    Case("SSF gpt2 Conv1D", "recipes.peft.ssf:SSFConfig", dict(init_std=0.0, target_modules=["c_attn"]), "gpt2"),
    # an encoder with BERT's module names, padding mask included
    Case("LoRA bert", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=BERT_ATTENTION), "bert"),
    Case("LoRA bert encoder (no head)", "recipes.peft.lora:LoraConfig", dict(r=2, target_modules=["query", "value"]),
         "bert-encoder"),
    Case("DoRA (dynamic rank) bert", "recipes.peft.dora:DoraConfig", dict(r=3, target_modules=BERT_ATTENTION), "bert"),
    Case("LoLDU bert", "recipes.peft.loldu:LolduConfig", dict(target_modules=BERT_ATTENTION), "bert"),
    Case("Bone (Bat) bert", "recipes.peft.bone:BoneConfig", dict(r=8, target_modules=BERT_ATTENTION), "bert"),
    Case("LoTR bert", "recipes.peft.lotr:LotrConfig", dict(r=2, target_modules=BERT_ATTENTION), "bert"),
    Case("SVFT bert", "recipes.peft.spectral:SVFTConfig", dict(target_modules=BERT_ATTENTION), "bert", starts_at_base=False),
    Case("Spectral Adapter bert", "recipes.peft.spectral:SpectralAdapterConfig", dict(rank=2, target_modules=BERT_ATTENTION), "bert"),
    Case("OFT bert", "recipes.peft.givens:OFTConfig", dict(block_size=8, target_modules=BERT_ATTENTION), "bert"),
    Case("qGOFT bert", "recipes.peft.givens:GivensConfig", dict(target_modules=BERT_ATTENTION), "bert"),
    Case("Sparse FT bert", "recipes.peft.sparse_ft:SparseConfig", dict(r=1, target_modules=BERT_ATTENTION), "bert"),
    Case("RoSA bert", "recipes.peft.sparse_ft_rosa:RosaConfig", dict(r=1, sparse_r=1, target_modules=BERT_ATTENTION), "bert"),
    Case("GLoRA bert", "recipes.peft.glora:GloraConfig", dict(target_modules=BERT_ATTENTION), "bert"),
    Case("SSF bert", "recipes.peft.ssf:SSFConfig", dict(target_modules=BERT_ATTENTION), "bert", starts_at_base=False),
    Case("Asymmetric LoRA (B only) bert", "recipes.peft.asymmetry:AsymmetricLoraConfig",
         dict(r=2, train="B", target_modules=BERT_ATTENTION), "bert"),
    Case("LoRA-GA bert", "recipes.peft.lora_ga:LoraGAConfig", dict(r=2, target_modules=BERT_ATTENTION), "bert"),
    Case("CorDA bert", "recipes.peft.corda:CordaConfig", dict(r=2, mode="ipm", target_modules=BERT_ATTENTION), "bert"),
]
