"""∇τ against its authors' code: on identical batches, `NablaTau` must end at the weights of the
loop in dnl-trpp/Nabla-Tau (commit 1012093), `Unlearning_main_Cifar10.ipynb`, written out here
with torch.optim from the notebook's cells:

- cell 5, `unlearning(...)`: `optim.AdamW(net.parameters(), lr=lr)` (PyTorch defaults: betas
  (0.9, 0.999), eps 1e-8, weight decay 0.01); `LinearLR(start_factor=1.0, end_factor=0.1,
  total_iters=forget_epochs)`, `scheduler.step()` once per forget epoch; `net.eval()` before and
  during every epoch (BatchNorm statistics and dropout frozen; nothing sets `net.train()`);
  `if i%5==0: val_loss, ... = compute_moments(net, validation)` (τ = mean per-sample
  cross-entropy on the validation loader, `Machine_Unlearning/Metrics/metrics.py`);
  `if i % (len(retain)//len(forget))==0: retain_iter = iter(retain)` (the retain loader is one
  pass, so it restarts every n_R // n_F forget epochs); for each forget batch one `next(retain_iter)`;
  `loss = alpha*(relu(val_loss - forget_mean)**2) + (1-alpha)*retain_mean`, `net.zero_grad()`,
  `loss.backward()`, `optimizer.step()`; after the epoch `alpha = alpha_sched(start_alpha, alpha,
  forget_epochs, i)` = `a - start_a/max_ep`.
- cell 6: `forget_epochs = int((len(retain_loader) / (len(forget_loader)*2)) * 6)`,
  `start_alpha = STARTING_ALPHA = SPLIT * 5/3` (cell 1; SPLIT = the forgotten fraction of the
  training set), lr 0.001, batch 256 for both loaders (cell 2, no augmentation, drop_last False).

The per-epoch MIA / accuracy read-outs of cell 5 (`compute_losses`, `accuracy`) only run forwards
in eval mode and are left out: they move no weight. The loaders' shuffles are the one thing the
two sides share: the reference's "DataLoader" pass begun at forget epoch e is
`request.batches(split, b, salt=e)`, and the test checks that our method consumed exactly the
batches the reference did.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data import ArrayDataset
from unlearnkit.methods.nabla_tau import NablaTau
from unlearnkit.request import UnlearnRequest


def blobs(n: int, seed: int, dtype: torch.dtype = torch.float32) -> ArrayDataset:
    centres = torch.randn(4, 8, generator=torch.Generator().manual_seed(1234)) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    return ArrayDataset((centres[y] + torch.randn(n, 8, generator=g)).to(dtype), y)


def trained_model(train: ArrayDataset, dtype: torch.dtype) -> nn.Module:
    """BatchNorm and dropout, so that a loop run in train mode would end elsewhere; trained to
    fit its data, so the forget loss starts below τ and the gate opens."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4)).to(dtype)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    net.train()
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(train.x), train.y).backward()
        opt.step()
    return net.eval()


class Loader:
    """The notebook's `DataLoader(..., batch_size=b, shuffle=True)`: `len()` batches, and each
    `iter()` one shuffled pass that ends (StopIteration) when the split is used up."""

    def __init__(self, request: UnlearnRequest, split: str, batch_size: int):
        self.request, self.split, self.batch_size = request, split, batch_size
        self.n = len(request.indices(split))
        self.epoch = 0  # which pass to hand out: the one begun at this forget epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        return iter([(b.x, b.y, b.idx) for b in
                     self.request.batches(self.split, self.batch_size, augment=False, salt=self.epoch)])


def compute_moments(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """metrics.py `compute_moments`'s first value: the summed per-sample loss / number of samples."""
    total = 0.0
    for xb, yb in zip(x.split(256), y.split(256)):
        total += F.cross_entropy(net(xb), yb, reduction="none").sum().item()
    return total / len(y)


def official_unlearning(net: nn.Module, retain: Loader, forget: Loader, val: ArrayDataset, start_alpha: float,
                        forget_epochs: int, lr: float = 0.001, consumed: list | None = None,
                        gate: list | None = None) -> nn.Module:
    """`unlearning(...)` of Unlearning_main_Cifar10.ipynb, cell 5, without its read-outs."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.1,
                                                  total_iters=forget_epochs)
    net.eval()
    alpha = start_alpha
    retain_iter = iter(retain)
    for i in range(forget_epochs):
        net.eval()
        if i % 5 == 0:
            with torch.no_grad():
                val_loss = compute_moments(net, val.x, val.y)
        if i % (len(retain) // len(forget)) == 0:
            retain.epoch = i
            retain_iter = iter(retain)
        forget.epoch = i
        for inputs, targets, f_idx in forget:
            net.zero_grad()
            out = net(inputs)
            r_inputs, r_targets, r_idx = next(retain_iter)
            r_out = net(r_inputs)
            forget_losses = F.cross_entropy(out, targets, reduction="none")
            retain_losses = F.cross_entropy(r_out, r_targets, reduction="none")
            forget_mean = torch.mean(forget_losses)
            delta_val_loss = val_loss - forget_mean
            retain_mean = torch.mean(retain_losses)
            loss = alpha * (F.relu(delta_val_loss) ** 2) + (1 - alpha) * retain_mean
            loss.backward()
            optimizer.step()
            if consumed is not None:
                consumed += [f_idx.tolist(), r_idx.tolist()]
            if gate is not None:
                gate.append(delta_val_loss.item() > 0)
        alpha = alpha - start_alpha / forget_epochs
        scheduler.step()
    net.eval()
    return net


# (forget, retain) sizes at batch 16: 3 forget / 24 retain batches (E = 24, the retain pass used up
# exactly, its short last batch included, restarts at epochs 0, 8, 16), and 4 (one of 2 samples) /
# 19 (E = 14, restarts every 4 epochs, a pass never used up). τ is re-measured at 0, 5, 10, ...
# Measured worst |Δw|: ~3e-6 in float32 (weights up to ~1.9; AdamW rounding over 56-72 steps), ~2e-10
# in float64, where what is left is τ: our `metrics.outputs` casts the logits to float32 (with the
# reference's τ taken from float32 logits too, float64 agrees to ~3e-15). Moving the reference's lr by
# 1% moves its end point by ~2e-4; refreshing τ every 4 epochs instead of 5 by only ~1.5e-5, which is
# why the float64 case with its tight tolerance is there.
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-8)])
@pytest.mark.parametrize("n_forget, n_retain", [(40, 370), (50, 300)])
def test_nabla_tau_ends_at_the_weights_of_the_authors_loop_on_identical_batches(monkeypatch, n_forget, n_retain,
                                                                                dtype, tolerance):
    batch_size = 16
    train = blobs(n_forget + n_retain, 1, dtype)
    request = UnlearnRequest(train, torch.arange(0, n_forget + n_retain, (n_forget + n_retain) // n_forget)[:n_forget],
                             4, val=blobs(120, 2, dtype))
    assert (len(request.forget), len(request.retain)) == (n_forget, n_retain)
    original = trained_model(train, dtype)

    ours_consumed: list = []
    real_batch = UnlearnRequest.batch
    monkeypatch.setattr(UnlearnRequest, "batch",
                        lambda self, idx, *a, **k: ours_consumed.append(idx.tolist()) or real_batch(self, idx, *a, **k))
    ours = NablaTau(batch_size=batch_size)(copy.deepcopy(original), request)
    monkeypatch.undo()

    forget, retain = Loader(request, "forget", batch_size), Loader(request, "retain", batch_size)
    forget_epochs = int((len(retain) / (len(forget) * 2)) * 6)  # cell 6
    start_alpha = len(request.forget) / len(train) * 5 / 3  # cell 1: SPLIT * 5/3
    ref_consumed: list = []
    gate: list = []
    ref = official_unlearning(copy.deepcopy(original), retain, forget, request.val, start_alpha, forget_epochs,
                              consumed=ref_consumed, gate=gate)

    assert forget_epochs >= 14 and len(gate) == forget_epochs * len(forget)  # ≥ 3 τ refreshes, α decays to ~0
    assert any(gate) and not all(gate), "the τ gate should be open on some steps and closed on others"
    assert ours_consumed == ref_consumed, "our method must see exactly the notebook's batches, in its order"
    assert not ours.training
    worst = max((a - b).abs().max().item() for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    moved = max((a - b).abs().max().item() for a, b in zip(ref.state_dict().values(), original.state_dict().values()))
    assert moved > 1e-2, moved  # the loop moves the weights far more than the tolerance
    assert worst <= tolerance, worst
