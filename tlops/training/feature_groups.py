"""The backbone's parameter groups as a training loop should count them: only groups the features depend on.

A backbone's `parameter_groups()` covers every parameter (its contract), input to output. Some of those
groups never reach the features tlops uses: a BERT's pooler is the top group of a Hugging Face text model,
yet the features are pooled hidden states, so `trainable: 1` would train nothing and `layer_decay` would give
the pooler the top rate. Which groups matter is read off one backward pass on two real inputs; the others are
frozen and left out of the optimizer."""

from __future__ import annotations

from typing import Any, Sequence

_OWN = ("backbone", "groups")


class FeatureGroups:
    """`backbone` with `parameter_groups()` narrowed to the groups its features depend on; everything else
    (embed, model, export, attributes set on it) passes through to the backbone."""

    def __init__(self, backbone: Any, probe_items: Sequence[Any]):
        import torch

        groups = backbone.parameter_groups()
        flat = [p for g in groups for p in g]
        was = [p.requires_grad for p in flat]
        try:
            for p in flat:
                p.requires_grad_(True)
            with torch.enable_grad():
                z = backbone.embed(backbone.collate(backbone.encode(list(probe_items[:2]))))
                grads = torch.autograd.grad(z.sum(), flat, allow_unused=True)
        finally:
            for p, w in zip(flat, was):
                p.requires_grad_(w)
        used = {id(p) for p, g in zip(flat, grads) if g is not None}
        object.__setattr__(self, "backbone", backbone)
        object.__setattr__(self, "groups", [])
        for g in groups:
            if any(id(p) in used for p in g):
                self.groups.append(g)
            else:  # never trained: no optimizer slot, no gradient buffers, unchanged in the export
                for p in g:
                    p.requires_grad_(False)

    def parameter_groups(self) -> list:
        return self.groups

    def __getattr__(self, name: str):
        return getattr(self.backbone, name)

    def __setattr__(self, name: str, value: Any) -> None:  # e.g. `fine_tuned = True` is the backbone's flag
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.backbone, name, value)
