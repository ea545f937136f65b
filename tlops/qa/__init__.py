"""Extractive question answering (SQuAD v1.1 / v2.0) on Hugging Face text backbones: the building blocks the
`extractive_qa` task type is made of.

- `tlops.qa.files`: `read_qa_dataset(root, seed, val_fraction) -> QADataset` (train/val/test lists of `QAExample`),
  `check_squad(path) -> (examples, problems)`, `read_squad(path)`, `carve_val(...)`; problems raise `DataError`.
- `tlops.qa.metrics`: `squad_scores(golds, preds)` (exact, f1, HasAns_*/NoAns_*), `best_threshold(...)`,
  `normalize_answer`, `compute_exact`, `compute_f1` (the official SQuAD evaluation script's definitions).
- `tlops.qa.model`: `QAModel(backbone, QAConfig)` with `fit(train, val, mode="probe"|"finetune")`,
  `predict(rows) -> [{"answer", "start", "end", "score"}]`, `evaluate(examples)`, `save(folder)`,
  `QAModel.load(folder, backbone=None)`; `encode_windows(...)` for the overlapping windows.
- `tlops.qa.baseline`: `SlidingWindowBaseline().fit(contexts).predict(rows)`, the lexical peer.
Nothing is imported here, so importing one module does not load torch for the others.
"""
