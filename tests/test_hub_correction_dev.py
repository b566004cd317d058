"""benchmarks/hub_correction_dev.py: the centring statistic is the per-verb mean logit over a pool of images, read
in batches from the images' features only (no label is read)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import hub_correction_dev as hub  # noqa: E402


class _Student(torch.nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = w

    def encode(self, x):
        return x, x.mean(1)  # (B, T, D) tokens -> (B, D) scene

    def verb_logits(self, scene):
        return scene @ self.w


class _Data:
    """StudentData's interface as the script uses it; its labels raise if read."""

    def __init__(self, x):
        self._x = x

    def __len__(self):
        return len(self._x)

    def take(self, idx, device):
        return SimpleNamespace(x=self._x[idx])

    @property
    def verb(self):
        raise AssertionError("the centring statistic read a label")


def test_mean_verb_logits_is_the_pool_mean_and_centring_zeroes_it():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(300, 4, 8, generator=g), torch.randn(8, 5, generator=g)
    model = _Student(w)
    centre = hub.mean_verb_logits(model, _Data(x), batch_size=64)  # 300 = 4 full batches + 44
    assert torch.allclose(centre, (x.mean(1) @ w).mean(0), atol=1e-5)
    centred = model.verb_logits(x.mean(1)) - centre
    assert torch.allclose(centred.mean(0), torch.zeros(5), atol=1e-5)
