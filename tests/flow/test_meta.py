"""Meta-transfer (issue 12, part 1): prototypes, the one functional inner loop (MAML / FOMAML / Meta-SGD),
episodes, resume, the few-shot dataset contract, and a `tlops run` that registers a few-shot model."""

from __future__ import annotations


from tests.helpers import TOPICS, make_few_shot_text, tiny_config


def test_tlops_run_registers_a_few_shot_model_and_logs_the_episodic_metrics(tmp_path, tiny_bert):
    import mlflow
    from mlflow.tracking import MlflowClient

    from flows.train import train_flow

    data = make_few_shot_text(tmp_path / "data")
    cfg = tiny_config(tmp_path, data, tiny_bert, registry__model_name="tiny-fewshot",
                      strategy={"name": "fomaml", "meta_epochs": 2, "episodes_per_epoch": 16, "hidden": 16, "embedding_dim": 8,
                                "shots": 2, "queries": 5, "eval_shots": [1, 2, 5, 10], "inner_lr": 0.05,
                                "baselines": ["protonet0"]})
    out = train_flow(cfg, progress=False)
    assert out.version == "1" and "champion" in out.aliases and out.strategy == "fomaml"
    for k in ("accuracy_5w1s", "accuracy_5w5s", "ci95_5w1s", "ci95_5w5s", "protonet0_accuracy_5w1s",
              "accuracy", "macro_f1"):
        assert k in out.test_metrics, k
    m = out.test_metrics  # 26 rows per test class - 5 carved support rows = 21 >= 10 shots + 5 queries: every shot count scored
    assert m["accuracy_5w10s"] > m["accuracy_5w1s"] and "accuracy_5w2s" in m, m
    client = MlflowClient(cfg["tracking"]["uri"], registry_uri=cfg["tracking"]["uri"])
    run = client.get_run(out.run_id).data.metrics
    assert run["test_accuracy_5w5s"] == out.test_metrics["accuracy_5w5s"]
    assert len(client.get_metric_history(out.run_id, "train_val_episode_accuracy")) == 2
    assert "plots/accuracy_vs_shots.png" in {a.path for a in client.list_artifacts(out.run_id, "plots")}
    # issue 30: the registered head is the candidate the support set preferred, and the run says which and why
    sel = out.selection
    names = [c["name"] for c in sel["candidates"]]
    assert sel["family"] == "meta_transfer" and sel["chosen"] in names and {"meta_learned", "protonet0", "meta_probe"} <= set(names), sel
    assert sel["criterion"] == "support_loo_accuracy, credibility-scaled, with the validation favourite as prior", sel
    assert all(c["scores"]["support_loo_accuracy"] is not None and c["scores"]["val_episode_accuracy"] is not None for c in sel["candidates"])
    assert "selection.json" in {a.path for a in client.list_artifacts(out.run_id)}
    assert "meta_probe_accuracy_5w5s" in m and set(sel["oracle"]) >= {"meta_learned", "protonet0", "meta_probe"}, sel.get("oracle")
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    model = mlflow.pyfunc.load_model("models:/tiny-fewshot@champion")
    pred = model.predict(["a violin seen near the river", "a rose seen near the lake"])
    assert len(pred) == 2 and set(pred) <= set(TOPICS[15:20]), f"the registered model knows test's (support) classes only: {pred}"
