"""README's config-key table names every key a config takes (issue 27 item 11: it missed features.shard_rows and the
execution keys of Dask and DDP), and its commands name models a shipped config registers."""

from __future__ import annotations

import re

from tests.helpers import REPO


def _table() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Config keys", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        m = re.match(r"\| `(\w+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = rows.get(m.group(1), "") + " " + m.group(2)
    return rows


def test_every_config_key_is_in_the_readme_table():
    from pydantic import BaseModel

    from tlops.config import RunConfig
    from tlops.strategies.registry import all_strategies

    rows = _table()
    missing = []
    for section, field in RunConfig.model_fields.items():
        if section == "strategy" or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            continue
        missing += [f"{section}.{key}" for key in field.annotation.model_fields if f"`{key}`" not in rows.get(section, "")]
    for name, entry in all_strategies().items():
        missing += [f"strategy.{key} ({name})" for key in entry.config.model_fields
                    if key != "name" and f"`{key}`" not in rows["strategy"]]  # name: written `name: finetune`
    assert "| top level | `seed` |" in (REPO / "README.md").read_text(encoding="utf-8")
    assert not missing, missing


def test_readme_predicts_with_models_the_configs_register():
    import yaml

    text = (REPO / "README.md").read_text(encoding="utf-8")
    registered = {yaml.safe_load(p.read_text())["registry"]["model_name"] for p in (REPO / "configs").glob("*.yaml")}
    named = set(re.findall(r"tlops predict models:/([\w.-]+)@", text))
    named = {n for n in named if not n.startswith("my-")}  # my-data, my-fewshot: the walk-throughs' own configs
    assert named and named <= registered, named - registered
