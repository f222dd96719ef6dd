"""The book's `fit`, exactly as a chapter calls it, run data-parallel by `accelerate launch`.

`accelerate launch --cpu --num_processes 2` uses accelerate's simple launcher, which starts one
process unless MPI is set up; `--multi_gpu --num_processes 2` starts two through torchrun, and on
a machine without GPUs accelerate runs them on the CPU with the gloo backend."""
import torch
from accelerate import Accelerator

from recipes.core.data import load_digits_split
from recipes.core.models import MLP
from recipes.core.setup import seed_everything, set_threads
from recipes.core.train import fit

set_threads(1)
g = seed_everything(0)
d = load_digits_split()
model = MLP(hidden=32)
dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(d.x_train, d.y_train), 32, shuffle=True, generator=g)
loss_fn = lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1])
hist = fit(model, loss_fn, dl, epochs=3, lr=1e-2, progress=False)  # fit builds its own Accelerator
acc = Accelerator()  # the same process-wide state, to gather results
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
sums = acc.gather(flat.sum().view(1))
acc.print(f"RESULT world={acc.num_processes} first={hist['loss'][:5].mean():.4f} last={hist['loss'][-5:].mean():.4f} "
          f"param_sums={sums.tolist()}")

# Chapter code under DDP: LoRA fine-tuning of the zoo's tiny-LM architecture (as in nbs/peft/lora.ipynb). Freshly
# initialised rather than pretrained: replica agreement does not depend on the weights, and the test needs no zoo build.
from recipes.core.models import lm_loss
from recipes.core.zoo import TINY_LM
from recipes.core.adapters import adapter_state_dict
from recipes.peft.lora import apply_lora

seed_everything(0)
lm = apply_lora(TINY_LM.build(TINY_LM.config), r=4, alpha=8)
blocks = torch.randint(1, 4096, (64, 32), generator=torch.Generator().manual_seed(0))
dl = torch.utils.data.DataLoader(blocks, 8, shuffle=True, generator=torch.Generator().manual_seed(0))
hist = fit(lm, lm_loss, dl, steps=4, lr=1e-2, progress=False)
lora_sum = torch.stack([v.double().sum() for v in adapter_state_dict(lm).values()]).sum()
acc.print(f"LORA steps={len(hist['loss'])} lora_sums={acc.gather(lora_sum.float().view(1)).tolist()}")
