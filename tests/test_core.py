"""Property tests of the core library (the notebooks hold the example-based tests)."""
import torch
from hypothesis import given, settings, strategies as st

from recipes.core.data import add_label_noise
from recipes.core.setup import config_hash
from recipes.core.train import EnsembleLoader


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(20, 300), st.floats(0.0, 0.95), st.integers(0, 10**6))
def test_symmetric_noise_flips_exactly_rate(classes, n, rate, seed):
    y = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))
    noisy, flipped = add_label_noise(y, rate, num_classes=classes, seed=seed)
    assert int(flipped.sum()) == round(rate * n)
    assert torch.equal(noisy != y, flipped) and int(noisy.max()) < classes


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 40), st.integers(1, 4), st.integers(1, 3), st.integers(1, 8))
def test_ensemble_loader_pairs_groups_and_covers_data(n, n_seeds, groups, batch):
    batch = min(batch, n)
    seeds = list(range(n_seeds))
    y = torch.arange(n).repeat(n_seeds, 1) * 10 + torch.arange(n_seeds)[:, None]  # per-seed labels
    loader = EnsembleLoader({"x": torch.arange(n).float(), "y": y}, batch, seeds, groups, per_seed={"y"})
    seen = []
    for b in loader:
        assert b["x"].shape == (groups * n_seeds, batch)
        for g in range(1, groups):  # every group sees its seed's batch: paired
            assert torch.equal(b["index"][g * n_seeds:(g + 1) * n_seeds], b["index"][:n_seeds])
        assert torch.equal(b["y"] % 10, torch.arange(n_seeds).repeat(groups)[:, None].expand_as(b["y"]))
        assert torch.equal(b["x"].long(), b["index"])
        seen.append(b["index"][:n_seeds])
    idx = torch.cat(seen, 1)
    assert all(len(set(row.tolist())) == idx.shape[1] for row in idx), "an epoch must not repeat examples"


@settings(deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers() | st.floats(allow_nan=False) | st.text(max_size=5), max_size=6))
def test_config_hash_ignores_key_order(cfg):
    assert config_hash(cfg) == config_hash(dict(reversed(list(cfg.items()))))
