"""Meta-transfer with trainable top backbone groups through the flow: `tlops run`'s flow with `trainable: 1,
inner_groups: 1` (second-order MAML through the top group) registers the package (the zoo's inner-groups model;
tests/system/test_fresh_process.py loads it in a fresh process and adapts it to a support set). The tiny
random-weight BERT is a code-path fixture, not a pretrained model."""

from __future__ import annotations


def test_a_flow_run_with_inner_backbone_groups_registers_the_few_shot_model(zoo):
    out = zoo.inner_groups.results[0]
    assert out.version == "1" and "champion" in out.aliases and out.strategy == "maml"
    assert 0 <= out.test_metrics["accuracy_5w1s"] <= 1 and out.test_metrics["ci95_5w1s"] > 0
