"""The book's training loop runs data-parallel under `accelerate launch` (two CPU processes, gloo)."""
import os, re, subprocess, sys
from pathlib import Path


def test_fit_under_accelerate_launch():
    script = Path(__file__).parent / "scripts" / "ddp_fit.py"
    launcher = Path(sys.executable).parent / "accelerate"
    out = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", str(script)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    m = re.search(r"RESULT world=(\d+) first=([\d.]+) last=([\d.]+) param_sums=\[([^\]]+)\]", out.stdout)
    assert m, out.stdout[-2000:]
    world, first, last = int(m[1]), float(m[2]), float(m[3])
    sums = [float(s) for s in m[4].split(",")]
    assert world == 2, "accelerate must have started two processes"
    assert last < first / 2, f"the loss must fall under DDP: {first} -> {last}"
    assert sums[0] == sums[1], f"replicas diverged: {sums}; DDP must average gradients"
    m = re.search(r"LORA steps=(\d+) lora_sums=\[([^\]]+)\]", out.stdout)
    assert m, out.stdout[-2000:]
    lora = [float(s) for s in m[2].split(",")]
    assert int(m[1]) == 4 and len(lora) == 2 and lora[0] == lora[1], f"LoRA replicas diverged under DDP: {lora}"
