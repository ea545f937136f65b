"""The training loop's backbone when the inputs are cached feature rows (numpy vectors) and the trainable part is a
small torch module on top of them: domain adaptation's features mode and meta-learning's encoder share it."""

from __future__ import annotations


class FeatureRows:
    """Subclasses set `self.model` (rows -> embeddings) and `self.num_features` (its output width)."""

    modality = "features"
    fine_tuned = False

    def encode(self, rows) -> list:
        return list(rows)

    def lengths(self, encoded) -> None:
        return None

    def collate(self, rows):
        import numpy as np
        import torch

        return torch.from_numpy(np.stack(rows))

    def augment(self, inputs, g, flip: bool = True):
        return inputs  # feature vectors have nothing to crop or flip

    def embed(self, inputs):
        return self.model(inputs)

    def parameter_groups(self) -> list[list]:
        return [list(self.model.parameters())]
