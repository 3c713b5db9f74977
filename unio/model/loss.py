"""Token cross-entropy over the unified vocabulary with a per-segment breakdown.

Every target token belongs to one vocabulary segment (special, text, coord, image, mask, audio);
the loss reports the mean cross-entropy of each segment so a run shows *what* it is learning (e.g.
text converges long before image codes). Optional per-segment weights rebalance modalities; the
weighted loss is ``sum(w_seg(t) * ce(t)) / number_of_target_tokens`` so all-one weights give the
plain mean. Label smoothing and z-loss (``z_loss * logsumexp(logits)^2``, keeps the softmax
normaliser near 1, as in PaLM / ST-MoE) are options.

Coordinate targets are ordinal: with ``coord_sigma > 0`` a coordinate token's target is a Gaussian
over the coordinate bins (standard deviation ``coord_sigma`` bins, centred on the true bin) instead
of a one-hot, so a prediction one bin off costs little and the gradient points towards the right
bin rather than only away from the wrong one (the idea of distance-aware soft labels for ordinal
regression; it makes boxes learn faster in short runs, docs/results.md). Its cross-entropy includes
the soft target's entropy, so the reported coord loss no longer reaches 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from unio.vocab import Vocabulary

IGNORE_INDEX = -100


@dataclass
class LossConfig:
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    segment_weights: dict[str, float] = field(default_factory=dict)  # segment name -> weight (default 1)
    coord_sigma: float = 0.0  # > 0: Gaussian soft targets over the coordinate bins (module docstring)

    def __post_init__(self) -> None:
        if self.coord_sigma < 0:
            raise ValueError(f"LossConfig.coord_sigma must be >= 0, got {self.coord_sigma}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"LossConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.z_loss < 0:
            raise ValueError(f"LossConfig.z_loss must be >= 0, got {self.z_loss}")


@dataclass
class LossOutput:
    loss: Tensor  # scalar to optimise (weighted CE + z-loss)
    ce: Tensor  # unweighted mean cross-entropy (detached)
    z_loss: Tensor  # mean z-loss term before its coefficient (detached)
    per_segment: dict[str, Tensor]  # mean CE of targets in each segment present (detached)
    tokens_per_segment: dict[str, int]
    num_tokens: int
    # Raw per-segment / per-group CE sums and token counts (detached), for summing across ranks and
    # micro-batches; group_* are empty unless `groups` was passed.
    segment_sums: Tensor | None = None
    segment_counts: Tensor | None = None
    group_sums: Tensor | None = None
    group_counts: Tensor | None = None

    def metrics(self, prefix: str = "loss") -> dict[str, float]:
        out = {prefix: self.loss.item(), f"{prefix}/ce": self.ce.item(), f"{prefix}/z": self.z_loss.item()}
        out.update({f"{prefix}/{k}": v.item() for k, v in self.per_segment.items()})
        return out


class SequenceLoss:
    """``SequenceLoss(vocab, config)(logits [B, T, V], targets [B, T]) -> LossOutput``."""

    def __init__(self, vocab: Vocabulary, config: LossConfig | None = None) -> None:
        self.vocab = vocab
        self.config = config or LossConfig()
        unknown = set(self.config.segment_weights) - set(vocab.segment_names)
        if unknown:
            raise ValueError(
                f"LossConfig.segment_weights has unknown segments {sorted(unknown)}; "
                f"segments are {vocab.segment_names}"
            )
        self.weights = torch.tensor([self.config.segment_weights.get(n, 1.0) for n in vocab.segment_names])
        self.weighted = any(w != 1.0 for w in self.config.segment_weights.values())

    def __call__(
        self,
        logits: Tensor,
        targets: Tensor,
        groups: Tensor | None = None,
        num_groups: int = 0,
        token_weights: Tensor | None = None,
    ) -> LossOutput:
        """`groups` ([B, T], optional; e.g. the collator's `target_group`): a group index per target
        token, reported as `group_sums` / `group_counts` of size `num_groups` (e.g. loss per task).
        `token_weights` (the shape of `targets`, optional): the loss becomes the weighted mean
        ``sum(w * ce) / sum(w)`` over the real targets, e.g. ``1 / target length`` per token for a mean
        over examples instead of tokens (`per_example_weights`)."""
        cfg = self.config
        flat_logits = logits.reshape(-1, logits.shape[-1])
        flat_targets = targets.reshape(-1)
        valid = flat_targets != IGNORE_INDEX
        num_tokens = int(valid.sum())
        if num_tokens == 0:
            raise ValueError("SequenceLoss: the batch has no target tokens (all targets are -100)")
        if bool((flat_targets[valid] >= self.vocab.used_size).any()) or bool((flat_targets[valid] < 0).any()):
            bad = flat_targets[valid & ((flat_targets >= self.vocab.used_size) | (flat_targets < 0))][0]
            raise ValueError(f"SequenceLoss: target id {int(bad)} is outside the vocabulary")
        ce = F.cross_entropy(
            flat_logits.float(),
            flat_targets,
            ignore_index=IGNORE_INDEX,
            reduction="none",
            label_smoothing=cfg.label_smoothing,
        )
        segment = self.vocab.segment_of(flat_targets.clamp(min=0))
        if cfg.coord_sigma > 0:
            ce = self._soft_coordinates(ce, flat_logits, flat_targets, segment, valid)
        if self.weighted:
            weight = self.weights.to(ce.device)[segment] * valid
            loss = (ce * weight).sum() / num_tokens
        else:
            weight = None
            loss = ce.sum() / num_tokens
        if token_weights is not None:
            if token_weights.shape != targets.shape:
                raise ValueError(
                    f"SequenceLoss: token_weights has shape {tuple(token_weights.shape)}, "
                    f"targets {tuple(targets.shape)}"
                )
            w = token_weights.reshape(-1).to(ce.device, torch.float32) * valid
            loss = (ce * w * (1.0 if weight is None else weight)).sum() / w.sum()
        z = torch.zeros((), device=ce.device)
        if cfg.z_loss > 0:
            lse = torch.logsumexp(flat_logits[valid].float(), dim=-1)
            z = lse.pow(2).mean()
            loss = loss + cfg.z_loss * z
        with torch.no_grad():
            counts = torch.bincount(segment[valid], minlength=len(self.vocab.segment_names))
            sums = torch.zeros(len(self.vocab.segment_names), device=ce.device).index_add_(
                0, segment[valid], ce[valid].detach()
            )
            group_sums = group_counts = None
            if groups is not None:
                g = groups.reshape(-1)[valid].to(ce.device)
                group_counts = torch.bincount(g, minlength=num_groups)[:num_groups]
                group_sums = torch.zeros(num_groups, device=ce.device).index_add_(0, g, ce[valid].detach())
        per_segment, tokens = {}, {}
        for i, name in enumerate(self.vocab.segment_names):
            n = int(counts[i])
            if n:
                per_segment[name] = sums[i] / n
                tokens[name] = n
        return LossOutput(
            loss,
            ce[valid].detach().mean(),
            z.detach(),
            per_segment,
            tokens,
            num_tokens,
            sums,
            counts,
            group_sums,
            group_counts,
        )

    def _soft_coordinates(
        self, ce: Tensor, logits: Tensor, targets: Tensor, segment: Tensor, valid: Tensor
    ) -> Tensor:
        """`ce` with each coordinate target's term replaced by the cross-entropy against a Gaussian
        over the coordinate bins (``coord_sigma`` bins wide)."""
        coord = self.vocab.segment_names.index("coord")
        rows = (valid & (segment == coord)).nonzero().squeeze(1)
        if rows.numel() == 0:
            return ce
        offset, bins = self.vocab.offset("coord"), self.vocab.segment_size("coord")
        log_p = F.log_softmax(logits[rows].float(), dim=-1)[:, offset : offset + bins]
        centre = (targets[rows] - offset).float()[:, None]
        grid = torch.arange(bins, device=logits.device, dtype=torch.float32)[None]
        soft = torch.softmax(-0.5 * ((grid - centre) / self.config.coord_sigma) ** 2, dim=-1)
        return ce.index_put((rows,), -(soft * log_p).sum(-1))


def per_example_weights(targets: Tensor) -> Tensor:
    """Token weights (the shape of `targets`, [B, T]) that make `SequenceLoss` a mean over examples:
    each row's real targets share the weight 1, so a one-word answer counts as much as a 30-token
    caption. Rows without real targets get 0."""
    real = (targets != IGNORE_INDEX).float()
    return real / real.sum(-1, keepdim=True).clamp(min=1.0)
