"""LTU: Learning to Unlearn for Robust Machine Unlearning (Huang, Foo, Liu, ECCV 2024, arXiv 2407.10494), reconstructed.

No code was released, and the paper's body could not be read offline (its abstract and
third-party summaries only), so no value below is the paper's: the algorithm is an MLDG-style
reading of the abstract ("meta-optimization ... with only a small subset of the remaining set",
"gradient harmonization"), and every open choice is a field whose default is our choice, said why:

1. Support/query (`query_split`): two disjoint random batches of the retain subset D̂_r per step
   ("random"), or batches from two random halves of its classes ("class"). D̂_r is drawn once from
   D_r with `request.generator` (`retain_fraction`/`retain_count`). Some summaries of the paper
   build the meta-tune support from D_f and sum several retain query losses; that variant is not
   offered.
2. MI models (`mi_heads`, `mi_features`, `mi_hidden`, `mi_steps`, `mi_refit_every`, `mi_mode`): K
   two-layer MLPs on standardised per-sample signals of the model's softmax (default: the 3 largest
   log-probabilities and the loss), each fitted on its own bootstrap of members = D̂_r vs
   non-members = `request.val` (held out, never the test set; balanced by subsampling); frozen
   afterwards unless re-fitted every `mi_refit_every` steps. The heads are fitted and applied on
   forwards in one mode (`mi_mode`, eval by default: BatchNorm on running statistics), so what
   they judge is what they were trained on. Without `request.val` there are no non-members: the
   MI term is dropped with a warning, and `extra_forget` must then be set.
3. Audit set: D_f itself, with the request's augmentation when `audit_augment`.
4. Extra explicit forgetting loss (`extra_forget`): none by default (the abstract names only the
   MI feedback); "ascent" (−CE) or "random_label".
5. Gradient Harmonization (`symmetric`, `per_layer`): PCGrad (Yu et al. 2020) made one-sided so
   that remembering is protected, on the flattened model gradient, by default.
6. Meta-gradient (`first_order`): second order by default (double backward through the inner step).
7. |D̂_r|: 20% of D_r by default (at 10% the toy MLP had 36 samples: heads and remembering too noisy).
8. Outer optimiser SGD with momentum 0.9, weight decay 5e-4 and lr 0.01: the SalUn-line baselines'
   (OPTML-Group/Unlearn-Saliency `arg_parser.py`); α (inner_lr) = lr (MLDG's convention);
   β = λ = 1 (no preference); 100 steps of batch 64 (≈ 2 passes over a 10% forget set of CIFAR-10's
   45k, as the baselines' ~10 forget epochs are ~5% of training): our choices.

One step: θ' = θ − α∇CE(θ; S_r), L_rem = CE(θ; S_r) + β CE(θ'; Q_r); θ'' = θ − α∇L_f(θ; S_f),
L_fgt = L_f(θ; S_f) + β L_f(θ''; Q_f) with L_f = mean_k BCE(M_k(signal), non-member) [+ extra];
then harmonise(g_rem, g_fgt), combine g_rem + λ g_fgt, SGD. BatchNorm: only the forward on S_r at θ
updates running statistics; every other forward goes through `loop.call` (copied buffers).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit import transforms as T
from unlearnkit.data import take
from unlearnkit.loop import call, fit, in_mode, trainable, virtual_step
from unlearnkit.method import METHODS, Range, hp
from unlearnkit.metrics import outputs
from unlearnkit.models import device_of
from unlearnkit.request import Batch, Pair, UnlearnRequest

SIGNALS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {  # (log-softmax, labels) -> (n, d)
    "top_logprobs": lambda logp, y: logp.topk(min(3, logp.shape[1]), dim=1).values,
    "confidence": lambda logp, y: logp.exp().gather(1, y[:, None]),
    "loss": lambda logp, y: -logp.gather(1, y[:, None]),
    "entropy": lambda logp, y: -(logp.exp() * logp).sum(1, keepdim=True),
}


@METHODS.register("ltu", family="reproduced", paper="Huang, Foo, Liu, ECCV 2024 (LTU)",
                  defaults="none is the paper's (no code; its body could not be read offline): the outer SGD (lr 0.01, "
                           "momentum 0.9, wd 5e-4) is the SalUn-line baselines'; inner lr = outer lr (MLDG); 3 MI "
                           "heads, a 20% retain subset, 100 steps of batch 64, one-sided PCGrad: our choices")
@dataclass(frozen=True)
class LTU:
    """Meta-learn to forget (MI feedback on D_f) and remember (small retain subset), harmonising the two gradients.

    Args:
        retain_fraction: size of the retain subset D̂_r as a fraction of D_r.
        retain_count: size of D̂_r as a count; overrides `retain_fraction` when set.
        query_split: how support and query batches differ: "random" or "class" (disjoint class halves).
        audit_augment: augment the forget-set (audit) batches with the request's augmentation.
        mi_heads: K, the number of membership-inference heads (0: no MI feedback).
        mi_features: per-sample signals the heads see, from "top_logprobs", "confidence", "loss", "entropy".
        mi_hidden: hidden width of each two-layer MI head.
        mi_steps: full-batch Adam steps (lr 1e-2) to fit the heads.
        mi_refit_every: re-fit the heads on the current model every this many steps (0: frozen).
        extra_forget: explicit forgetting loss added to the MI loss: "none", "ascent" or "random_label".
        inner_lr: α, the meta-tune (virtual) step size.
        meta_weight: β, the weight of the query loss at the lookahead.
        forget_weight: λ, the weight of the forgetting gradient after harmonisation.
        first_order: drop the second-order term of the meta-gradient (FOMAML).
        symmetric: also project the remembering gradient off the forgetting one (two-sided PCGrad).
        per_layer: harmonise each parameter tensor separately instead of the flattened model.
        steps: meta-update steps.
        batch_size: size of each support and query batch.
        lr: outer SGD learning rate.
        momentum: outer SGD momentum.
        weight_decay: outer SGD weight decay.
        mi_mode: the mode of the forwards the MI heads see, when fitted and when applied: "eval"
            (BatchNorm running statistics) or "train" (each batch's statistics).
    """

    retain_fraction: float = hp(0.2, gt=0, le=1, search=Range(0.05, 0.5, log=True))
    retain_count: int | None = hp(None, ge=2)
    query_split: Literal["random", "class"] = "random"
    audit_augment: bool = True
    mi_heads: int = hp(3, ge=0)
    mi_features: tuple[str, ...] = ("top_logprobs", "loss")
    mi_hidden: int = hp(64, ge=1)
    mi_steps: int = hp(100, ge=1)
    mi_refit_every: int = hp(0, ge=0)
    extra_forget: Literal["none", "ascent", "random_label"] = "none"
    inner_lr: float = hp(0.01, ge=0, search=Range(1e-3, 0.1, log=True))
    meta_weight: float = hp(1.0, ge=0)
    forget_weight: float = hp(1.0, ge=0, search=Range(0.1, 10, log=True))
    first_order: bool = False
    symmetric: bool = False
    per_layer: bool = False
    steps: int = hp(100, ge=1, search=Range(20, 300, log=True))
    batch_size: int = hp(64, ge=1)
    lr: float = hp(0.01, gt=0, search=Range(1e-3, 0.1, log=True))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    mi_mode: Literal["eval", "train"] = "eval"

    def __post_init__(self) -> None:
        unknown = set(self.mi_features) - set(SIGNALS)
        if unknown or not self.mi_features:
            raise ValueError(f"mi_features must be a non-empty subset of {sorted(SIGNALS)}, got {self.mi_features}")

    def __call__(self, model: nn.Module, request: UnlearnRequest) -> nn.Module:
        model = copy.deepcopy(model)
        subset = retain_subset(request, self.retain_fraction, self.retain_count)
        return fit(model, self.episodes(request, subset), self.meta_losses(model, request, subset), self.transform(),
                   callbacks=request.callbacks)

    def transform(self) -> T.Transform:
        """Harmonise, combine g_rem + λ g_fgt, then the outer SGD step."""
        return T.chain(T.harmonize("retain", "forget", self.symmetric, self.per_layer),
                       T.weighted(retain=1.0, forget=self.forget_weight),
                       T.sgd(self.lr, self.momentum, self.weight_decay))

    def episodes(self, request: UnlearnRequest, subset: Tensor) -> Iterator[Episode]:
        """Per step a Pair of (forget, retain) support batches and a Pair of query batches."""
        gen = request.generator(17)
        for _ in range(self.steps):
            s_r, q_r = support_query(subset, request.labels, self.batch_size, self.query_split, gen)
            s_f, q_f = support_query(request.forget, request.labels, self.batch_size, "random", gen)
            yield Episode(Pair(request.batch(s_f, self.audit_augment, gen), request.batch(s_r, True, gen)),
                          Pair(request.batch(q_f, self.audit_augment, gen), request.batch(q_r, True, gen)))

    def check(self, request: UnlearnRequest) -> None:
        """ValueError when LTU would have no forgetting signal: no MI heads (or no `request.val` to
        draw their non-members from) and no `extra_forget` loss."""
        if self.extra_forget == "none" and (not self.mi_heads or request.val is None):
            raise ValueError("LTU has no forgetting signal: give the request a `val` set or set extra_forget")

    def meta_losses(self, model: nn.Module, request: UnlearnRequest,
                    subset: Tensor) -> Callable[[Episode], dict[str, Tensor]]:
        """Fit the MI heads, then return the per-episode {"retain": L_rem, "forget": L_fgt}."""
        self.check(request)
        params, refit = trainable(model), self.mi_fitter(model, request, subset)
        state = {"heads": refit() if refit else None, "step": 0}

        def forget_loss(p, b: Batch) -> Tensor:
            with in_mode(model, self.mi_mode == "train"):  # the mode the heads were fitted in
                logits = call(model, p, b.x)
            heads = state["heads"]
            loss = logits.new_zeros(())
            if heads is not None:
                member_logits = heads(signal(logits, b.y, self.mi_features))
                loss = F.binary_cross_entropy_with_logits(member_logits, torch.zeros_like(member_logits))
            if self.extra_forget == "ascent":
                loss = loss - F.cross_entropy(logits, b.y)
            elif self.extra_forget == "random_label":
                loss = loss + F.cross_entropy(logits, torch.randint_like(b.y, request.num_classes))
            return loss

        def losses(ep: Episode) -> dict[str, Tensor]:
            if refit and self.mi_refit_every and state["step"] and state["step"] % self.mi_refit_every == 0:
                state["heads"] = refit()
            state["step"] += 1
            s_r, q_r = ep.support.retain, ep.query.retain
            support = F.cross_entropy(model(s_r.x), s_r.y)  # at θ: the one forward that moves BN stats
            fast = virtual_step(support, params, self.inner_lr, self.first_order)
            remember = support + self.meta_weight * F.cross_entropy(call(model, fast, q_r.x), q_r.y)
            support_f = forget_loss(params, ep.support.forget)
            fast_f = virtual_step(support_f, params, self.inner_lr, self.first_order)
            forget = support_f + self.meta_weight * forget_loss(fast_f, ep.query.forget)
            return {"retain": remember, "forget": forget}

        return losses

    def mi_fitter(self, model: nn.Module, request: UnlearnRequest, subset: Tensor) -> Callable[[], MIHeads] | None:
        """A function fitting the MI heads on the model's current outputs; None when MI feedback is
        off (`mi_heads=0`) or impossible (no `request.val` to draw non-members from)."""
        if not self.mi_heads:
            return None
        if request.val is None:
            warnings.warn("LTU: request.val is None, so there are no non-members to fit MI heads on; "
                          "forgetting uses `extra_forget` only", stacklevel=4)
            return None
        gen = request.generator(19)
        n = min(len(subset), len(request.val))  # type: ignore[arg-type]
        members = take(request.train, subset[torch.randperm(len(subset), generator=gen)[:n]])
        nonmembers = take(request.val, torch.randperm(len(request.val), generator=gen)[:n])  # type: ignore[arg-type]
        return lambda: fit_mi_heads(model, members, nonmembers, self, gen)


@dataclass(frozen=True)
class Episode:
    support: Pair
    query: Pair

    def to(self, device: torch.device | str) -> "Episode":
        return Episode(self.support.to(device), self.query.to(device))


def retain_subset(request: UnlearnRequest, fraction: float, count: int | None) -> Tensor:
    """D̂_r: a fixed random subset of the retain set, drawn with the request's generator."""
    n = min(len(request.retain), count if count is not None else max(2, round(fraction * len(request.retain))))
    return request.retain[torch.randperm(len(request.retain), generator=request.generator(23))[:n]].sort().values


def support_query(ids: Tensor, labels: Tensor, size: int, how: str, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two disjoint batches of `ids` (the same one if there is a single id); with "class", drawn
    from two random halves of the classes present (random split if only one class is present)."""
    ids = ids[torch.randperm(len(ids), generator=gen)]
    classes = labels[ids].unique()
    if how == "class" and len(classes) > 1:
        first = torch.isin(labels[ids], classes[torch.randperm(len(classes), generator=gen)[: len(classes) // 2]])
        return ids[first][:size], ids[~first][:size]
    half = max(1, min(size, len(ids) // 2))
    return ids[:half], (ids[half:2 * half] if len(ids) > 1 else ids)


def signal(logits: Tensor, y: Tensor, features: tuple[str, ...]) -> Tensor:
    """Per-sample membership signals of a model's outputs, differentiable in the logits."""
    logp = logits.float().log_softmax(1)
    return torch.cat([SIGNALS[f](logp, y) for f in features], 1)


class MIHeads(nn.Module):
    """K two-layer MLPs on standardised membership signals."""

    def __init__(self, dim: int, k: int, hidden: int, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
                                   for _ in range(k))
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, s: Tensor) -> Tensor:
        """Signals (n, d), or (n, K, d) with one column per head, -> member logits (n, K)."""
        z = (s - self.mean) / self.std
        z = z if z.dim() == 3 else z[:, None].expand(-1, len(self.heads), -1)
        return torch.cat([head(z[:, k]) for k, head in enumerate(self.heads)], 1)


@torch.no_grad()
def logits_in_mode(model: nn.Module, x: Tensor, train: bool, batch_size: int) -> Tensor:
    """The model's logits on `x`, in eval mode (`metrics.outputs`), or in train mode chunk by chunk
    of `batch_size` (BatchNorm on each chunk's statistics, as in a training forward; the model's
    running statistics are not touched)."""
    if not train:
        return outputs(model, x)
    params, device = trainable(model), device_of(model)
    with in_mode(model, True):
        return torch.cat([call(model, params, c.to(device)).float().cpu() for c in x.split(batch_size)])


def fit_mi_heads(model: nn.Module, members: tuple[Tensor, Tensor], nonmembers: tuple[Tensor, Tensor],
                 cfg: LTU, gen: torch.Generator) -> MIHeads:
    """Fit `cfg.mi_heads` heads, each on its own bootstrap of members (1) vs non-members (0); frozen."""
    s = torch.cat([signal(logits_in_mode(model, x, cfg.mi_mode == "train", cfg.batch_size), y, cfg.mi_features)
                   for x, y in (members, nonmembers)])
    target = torch.cat([torch.ones(len(members[1])), torch.zeros(len(nonmembers[1]))])
    heads = MIHeads(s.shape[1], cfg.mi_heads, cfg.mi_hidden, s.mean(0), s.std(0).clamp_min(1e-6))
    boot = torch.randint(len(s), (len(s), cfg.mi_heads), generator=gen)  # column k: head k's sample
    data = Batch(s[boot], target[boot], boot)
    fit(heads, [data] * cfg.mi_steps, lambda b: F.binary_cross_entropy_with_logits(heads(b.x), b.y), T.adam(1e-2))
    return heads.requires_grad_(False).to(device_of(model))
