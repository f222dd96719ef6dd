"""Adapters as a library: full saves through the stock 🤗 Trainer, peft's layout both ways, peft's config habits,
dtype and usage errors. The round trips compare logits within float32 tolerance (sums over 32-64 terms)."""
import tempfile, warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from safetensors.torch import load_file

from recipes.core.adapters import (AdapterLayer, AdapterConfig, adapter_layers, apply_adapter, load_adapter,
                                   merge_adapters, require_adapters, save_adapter)
from recipes.core.models import tiny_lm, tiny_lm_config
from recipes.peft.bone import BoneConfig
from recipes.peft.dora import DoraConfig
from recipes.peft.givens import OFTConfig
from recipes.peft.glora import GloraConfig
from recipes.peft.interop import config_from_peft, load_peft, lora_config_from_peft, save_peft
from recipes.peft.lora import LoraConfig
from recipes.peft.lora_ga import LoraGAConfig

peft = pytest.importorskip("peft")
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
TOL = dict(atol=1e-5, rtol=1e-5)
CONFIG = tiny_lm_config(64, width=32, layers=2, heads=2, ff=64, context=16)
IDS = torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1))


def base(seed=0):
    torch.manual_seed(seed)
    return tiny_lm(CONFIG).eval()


def logits(m):
    with torch.no_grad():
        return m(input_ids=IDS).logits


def nudge(model, std=0.1):
    "Move adapter tensors (and LoRA-GA's frozen offset) off their init, so a lost or mis-read adapter shows."
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            for n, t in list(layer.named_parameters()) + list(layer.named_buffers()):
                if not n.startswith("base.") and (t.requires_grad or n in ("lora_A0", "lora_B0", "lora_c")):
                    t.add_(std * torch.randn(t.shape, generator=g))
    return model


def _trainer(model, out, **kw):
    from transformers import Trainer, TrainingArguments
    data = [{"input_ids": x, "labels": x} for x in torch.randint(1, 64, (8, 16), generator=torch.Generator().manual_seed(2))]
    # transformers 5 always writes safetensors (its save_safetensors argument is gone)
    args = TrainingArguments(output_dir=str(out), max_steps=2, report_to=[], use_cpu=True, per_device_train_batch_size=4, learning_rate=1e-2, disable_tqdm=True, **kw)
    return Trainer(model=model, args=args, train_dataset=data)


# --- 1. full saves: the merged weight under the plain key, or a refusal ---------------------------------------

def test_trainer_save_model_loads_in_the_plain_class(tmp_path):
    from transformers import LlamaForCausalLM
    model = nudge(apply_adapter(base(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])))
    trainer = _trainer(model, tmp_path / "run")
    trainer.train()
    model.eval()
    trainer.save_model(str(tmp_path / "final"))
    keys = set(load_file(str(tmp_path / "final" / "model.safetensors")))
    assert "model.layers.0.self_attn.q_proj.weight" in keys and "model.layers.0.self_attn.q_proj.lora_A" in keys
    plain = LlamaForCausalLM.from_pretrained(str(tmp_path / "final")).eval()
    assert not any(isinstance(m, AdapterLayer) for m in plain.modules())
    torch.testing.assert_close(logits(plain), logits(model), **TOL)
    assert (logits(model) - logits(base())).abs().max() > 0.05, "the adapter must matter, or the check is vacuous"


def test_trainer_resume_reads_base_and_adapter_exactly(tmp_path):
    model = nudge(apply_adapter(base(), LoraConfig(r=2, target_modules="all-linear")))
    _trainer(model, tmp_path, save_strategy="steps", save_steps=2).train()
    ckpt = tmp_path / "checkpoint-2"
    fresh = apply_adapter(base(seed=1), LoraConfig(r=2, target_modules="all-linear"))  # other weights entirely
    missing, unexpected = fresh.load_state_dict(load_file(str(ckpt / "model.safetensors")), strict=False)
    assert not unexpected and missing == ["lm_head.weight"], (missing, unexpected)  # the head is tied to the embedding
    want = model.state_dict()
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, want[k]), k  # bit-identical: same process, same machine
    again = apply_adapter(base(seed=1), LoraConfig(r=2, target_modules="all-linear"))
    _trainer(again, tmp_path).train(resume_from_checkpoint=str(ckpt))  # Trainer's own resume path: 0 steps left
    for k, v in again.state_dict().items():
        assert torch.equal(v, want[k]), k


def test_merged_model_saves_the_unmerged_base():
    model = nudge(apply_adapter(base(), LoraConfig(r=2, target_modules="q_proj")))
    y = logits(model)
    merge_adapters(model)
    fresh = apply_adapter(base(seed=1), LoraConfig(r=2, target_modules="q_proj"))
    fresh.load_state_dict(model.state_dict(), strict=True)
    torch.testing.assert_close(logits(fresh), y, **TOL)  # the adapter is not applied twice


def test_save_refuses_what_no_plain_model_can_hold(tmp_path):
    # GLoRA's bias supports on Llama's bias-free projections: the merge adds a bias a plain LlamaForCausalLM lacks
    model = apply_adapter(base(), GloraConfig(target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="save_adapter") as e:
        _trainer(model, tmp_path).save_model(str(tmp_path / "final"))
    assert "merge_and_unload" in str(e.value) and "bias" in str(e.value)
    assert not (tmp_path / "final" / "model.safetensors").exists()
    save_adapter(model, tmp_path / "glora.safetensors")  # the adapter path the message names works


class _Gate(AdapterLayer):  # a layer whose update cannot be merged
    mergeable = False
    def __init__(self, base, config):
        super().__init__(base, config)
        self.g = nn.Parameter(torch.zeros(self.d_out))
    def adapted_forward(self, x):
        return self.base(x) * torch.sigmoid(self.g) * 2


class _GateConfig(AdapterConfig):
    layer_class = _Gate


def test_non_mergeable_refuses_save_pretrained(tmp_path):
    model = apply_adapter(base(), _GateConfig(target_modules="q_proj"))
    with pytest.raises(ValueError, match="cannot be merged.*save_adapter.*merge_and_unload"):
        model.save_pretrained(str(tmp_path))
    assert not (tmp_path / "model.safetensors").exists()


# --- 2. peft's layout, both ways --------------------------------------------------------------------------------

OURS = [LoraConfig(r=2, alpha=4, target_modules=["q_proj", "v_proj"]), DoraConfig(r=3, target_modules="q_proj"),
        LoraGAConfig(r=2, target_modules="v_proj"), BoneConfig(r=8, target_modules="q_proj"),
        BoneConfig(r=4, variant="bone", target_modules=["q_proj", "down_proj"]),
        OFTConfig(block_size=8, target_modules=["q_proj", "down_proj"])]


@pytest.mark.parametrize("config", OURS, ids=lambda c: f"{type(c).__name__}-{getattr(c, 'variant', '')}")
def test_save_peft_loads_in_peft(config, tmp_path):
    model = nudge(apply_adapter(base(), config))
    save_peft(model, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    theirs = peft.PeftModel.from_pretrained(base(), str(tmp_path)).eval()
    torch.testing.assert_close(logits(theirs), logits(model), **TOL)
    if type(config) in (LoraConfig, BoneConfig, OFTConfig):  # and back: the same layer type, the same tensors
        again = load_peft(base(), tmp_path)
        torch.testing.assert_close(logits(again), logits(model), **TOL)


PEFTS = [lambda: peft.LoraConfig(r=2, lora_alpha=5, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
         lambda: peft.LoraConfig(r=4, lora_alpha=5, use_rslora=True, target_modules="all-linear", init_lora_weights=False),
         lambda: peft.MissConfig(r=8, init_weights="bat", target_modules=["q_proj"]),
         lambda: peft.MissConfig(r=4, target_modules=["q_proj", "down_proj"]),
         lambda: peft.OFTConfig(oft_block_size=8, r=0, use_cayley_neumann=False, target_modules=["q_proj"])]


@pytest.mark.parametrize("make", PEFTS, ids=["lora", "rslora-all-linear", "miss-bat", "miss", "oft"])
def test_peft_folder_loads_here(make, tmp_path):
    theirs = peft.get_peft_model(base(), make()).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    theirs.save_pretrained(str(tmp_path))
    ours = load_peft(base(), tmp_path)
    torch.testing.assert_close(logits(ours), logits(theirs), **TOL)
    filled = load_peft(apply_adapter(base(), config_from_peft(make().to_dict() | {"target_modules": sorted(adapter_layers(ours))})), tmp_path)
    torch.testing.assert_close(logits(filled), logits(theirs), **TOL)  # into a model that already has the adapters


def test_modules_to_save_head_trains_in_full_and_converts(tmp_path):
    from transformers import LlamaForSequenceClassification
    cfg = tiny_lm_config(64, width=32, layers=2, heads=2, ff=64, context=16)
    cfg.num_labels, cfg.pad_token_id = 3, 0
    def make():
        torch.manual_seed(0)
        return LlamaForSequenceClassification(cfg).eval()
    model = apply_adapter(make(), LoraConfig(r=2, target_modules="all-linear", modules_to_save=["score"]))
    assert isinstance(model.score, nn.Linear) and "score" not in adapter_layers(model)  # not wrapped
    assert model.score.weight.requires_grad  # trained in full
    nudge(model)
    with torch.no_grad():
        model.score.weight.add_(0.5)
        y = model(input_ids=IDS).logits
    save_adapter(model, tmp_path / "a.safetensors")
    assert "score.weight" in load_file(str(tmp_path / "a.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(load_adapter(make(), tmp_path / "a.safetensors")(input_ids=IDS).logits, y, **TOL)
        save_peft(model, tmp_path / "peft")
        theirs = peft.PeftModel.from_pretrained(make(), str(tmp_path / "peft")).eval()
        torch.testing.assert_close(theirs(input_ids=IDS).logits, y, **TOL)
        torch.testing.assert_close(load_peft(make(), tmp_path / "peft")(input_ids=IDS).logits, y, **TOL)
    with pytest.raises(ValueError, match="match no module"):
        apply_adapter(make(), LoraConfig(modules_to_save=["classifier"]))


def test_save_peft_refuses_a_method_peft_lacks(tmp_path):
    from recipes.peft.lotr import LotrConfig
    with pytest.raises(TypeError, match="no peft counterpart.*save_adapter"):
        save_peft(apply_adapter(base(), LotrConfig(r=2, target_modules="q_proj")), tmp_path)


# --- 3., 4. peft users' habits ------------------------------------------------------------------------------------

def test_lora_config_from_peft():
    c = lora_config_from_peft(peft.LoraConfig(r=4, lora_alpha=32, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert (c.r, c.alpha, c.dropout, sorted(c.target_modules)) == (4, 32.0, 0.1, ["q_proj", "v_proj"])
    assert lora_config_from_peft(peft.LoraConfig(r=4, lora_alpha=8, use_rslora=True)).scaling == pytest.approx(8 / 2)
    with pytest.raises(ValueError, match="use_dora"):
        lora_config_from_peft(peft.LoraConfig(use_dora=True))
    with pytest.raises(ValueError, match="rank_pattern"):
        lora_config_from_peft(peft.LoraConfig(rank_pattern={"q_proj": 2}))


def test_bare_name_and_all_linear_targets():
    q = apply_adapter(base(), LoraConfig(target_modules="q_proj"))
    assert sorted(adapter_layers(q)) == [f"model.layers.{i}.self_attn.q_proj" for i in range(2)]
    a = apply_adapter(base(), LoraConfig(target_modules="all-linear"))
    b = peft.get_peft_model(base(), peft.LoraConfig(target_modules="all-linear"))
    assert set(adapter_layers(a)) == {n.removeprefix("base_model.model.") for n, m in b.named_modules() if hasattr(m, "lora_A")}
    assert "lm_head" not in adapter_layers(a)
    r = apply_adapter(base(), LoraConfig(target_modules=r".*layers\.1\..*_proj"))  # a regex stays a regex
    assert all(".layers.1." in n for n in adapter_layers(r))


def test_load_adapter_given_a_folder_says_what_it_expects(tmp_path):
    model = nudge(apply_adapter(base(), LoraConfig(r=2, target_modules="q_proj")))
    save_peft(model, tmp_path / "peft")
    with pytest.raises(IsADirectoryError, match="load_peft"):
        load_adapter(base(), tmp_path / "peft")
    save_adapter(model, tmp_path / "x" / "a.safetensors") if (tmp_path / "x").mkdir() is None else None
    with pytest.raises(IsADirectoryError, match=r"a\.safetensors"):
        load_adapter(base(), tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="save_adapter"):
        load_adapter(base(), tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_peft(base(), tmp_path / "x")


# --- 5., 6. dtypes and the no-adapters message ------------------------------------------------------------------

def test_dtype_mismatch_names_both_dtypes():
    model = apply_adapter(base().to(torch.bfloat16), LoraConfig(r=2, target_modules="q_proj"))
    layer = next(iter(adapter_layers(model).values()))
    assert layer.lora_A.dtype == torch.bfloat16  # adapters follow the base dtype (see the interop chapter for why)
    with pytest.raises(TypeError, match=r"torch\.float32.*torch\.bfloat16"):
        layer(torch.randn(2, 32))
    assert layer(torch.randn(2, 32, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(torch.randn(2, 32))  # autocast is the supported mixed path


def test_no_adapters_message_says_what_to_do():
    with pytest.raises(ValueError) as e:
        require_adapters(base(), caller="adapter_report")
    for word in ("apply_adapter(model", "load_adapter(model", "load_peft(model"):
        assert word in str(e.value)


def test_gpt2_conv1d_lora_both_ways(tmp_path):
    "transformers' Conv1D stores W as (in, out); peft's fan_in_fan_out and our layer agree on lora_A (r, d_in)."
    from transformers import GPT2Config, GPT2LMHeadModel
    def make():
        torch.manual_seed(0)
        return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=16)).eval()
    ours = nudge(apply_adapter(make(), LoraConfig(r=2, target_modules=["c_attn", "c_fc"])))
    save_peft(ours, tmp_path / "ours")
    theirs = peft.PeftModel.from_pretrained(make(), str(tmp_path / "ours")).eval()
    torch.testing.assert_close(logits(theirs), logits(ours), **TOL)
    native = peft.get_peft_model(make(), peft.LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True,
                                                         init_lora_weights=False)).eval()
    native.save_pretrained(str(tmp_path / "theirs"))
    torch.testing.assert_close(logits(load_peft(make(), tmp_path / "theirs")), logits(native), **TOL)
