"""Entity-level scores for token classification, with seqeval's definitions, and token accuracy.

An entity counts as found only when its type and its exact token span match (seqeval strict mode with the data's
scheme, which is also CoNLL's conlleval rule for valid sequences). Precision, recall and F1 overall are micro
averages over entities; per type they count that type's entities only. Token accuracy is the share of tokens whose
tag is exactly right, 'O' tokens included (so it is high even for a model that finds no entity: F1 is the metric
to select and gate on).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

from tlops.ner.tags import check_scheme


@dataclass
class TypeScores:
    precision: float
    recall: float
    f1: float
    support: int  # entities of this type in the truth


@dataclass
class NerScores:
    precision: float
    recall: float
    f1: float
    accuracy: float  # token accuracy
    support: int  # entities in the truth
    predicted: int  # entities predicted
    per_type: dict[str, TypeScores] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Scalar metrics for a tracker: `{prefix}entity_f1`, `{prefix}f1_PER`, ..."""
        out = {f"{prefix}entity_precision": self.precision, f"{prefix}entity_recall": self.recall,
               f"{prefix}entity_f1": self.f1, f"{prefix}token_accuracy": self.accuracy}
        out.update({f"{prefix}f1_{t}": s.f1 for t, s in self.per_type.items()})
        return out


def entity_scores(truth: list[list[str]], predicted: list[list[str]], scheme: str = "IOB2") -> NerScores:
    """Scores of predicted tag sequences against the true ones (same lengths, sentence by sentence)."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import IOB2, IOBES, Entities

    if len(truth) != len(predicted) or any(len(a) != len(b) for a, b in zip(truth, predicted)):
        raise ValueError("truth and predictions must have the same sentences and tokens")
    scheme = check_scheme(scheme)
    n_tokens = sum(len(t) for t in truth)
    accuracy = float(accuracy_score(truth, predicted)) if n_tokens else 0.0
    cls = {"IOB2": IOB2, "IOBES": IOBES}[scheme]
    with warnings.catch_warnings():  # seqeval averages over no entities with numpy's empty-mean warning
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(truth, predicted, mode="strict", scheme=cls,
                                        output_dict=True, zero_division=0) if n_tokens else {}
    per_type = {k: TypeScores(float(v["precision"]), float(v["recall"]), float(v["f1-score"]), int(v["support"]))
                for k, v in sorted(report.items()) if not k.endswith(" avg")}
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    n_predicted = sum(len(e) for e in Entities(predicted, cls, suffix=False).entities) if n_tokens else 0
    return NerScores(precision=float(micro["precision"]), recall=float(micro["recall"]), f1=float(micro["f1-score"]),
                     accuracy=accuracy, support=int(micro["support"]), predicted=n_predicted, per_type=per_type)
