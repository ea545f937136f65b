"""Named-entity recognition (token classification) building blocks: plain Python over the backbone contract.

- `files`: read and validate a dataset folder (CoNLL columns or JSON lines; IOB2/IOBES) -> `NerDataset`
- `tags`: tag schemes, sequence rules, repair, spans
- `words`: the raw-text word splitter with character offsets
- `metrics`: entity-level precision/recall/F1 (seqeval, strict) overall and per type, token accuracy
- `model`: sub-word alignment, the frozen linear probe, valid-sequence decoding, `NerModel.predict` on raw strings,
  save/load
- `training`: fine-tuning on the shared training loop (sentences as loop data, the token loss, entity-F1 validation)
- `baseline`: the memorising gazetteer
"""
