"""Word and character error rates with jiwer's definitions: (substitutions + deletions + insertions) / reference words
(characters), summed over the corpus (not averaged per utterance). Lower is better; they can exceed 1."""

from __future__ import annotations

from collections.abc import Sequence


def error_rates(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """{"wer", "cer"} over the corpus; an empty prediction counts as deleting every reference word."""
    import jiwer

    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} references but {len(predicted)} predictions")
    if not truth:
        return {"wer": float("nan"), "cer": float("nan")}
    truth, predicted = list(truth), list(predicted)
    return {"wer": float(jiwer.wer(truth, predicted)), "cer": float(jiwer.cer(truth, predicted))}
