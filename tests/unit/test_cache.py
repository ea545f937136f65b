"""Feature cache: hit, miss on every key part, corrupt entries, atomic writes."""

import numpy as np

from tlops.backbones import load_backbone
from tlops.cache import FeatureCache
from tlops.features import cached_features

TEXTS = ["the cat sat", "a dog ran home", "bread and butter", "the cat sat"]  # one duplicate


def _run(backbone, cache, texts=TEXTS):
    return cached_features(backbone, texts, cache, batch_size=2)


def test_second_run_never_calls_the_backbone(tiny_bert, tmp_path):
    cache = FeatureCache(tmp_path / "c")
    x1, s1 = _run(load_backbone(f"hf:{tiny_bert}"), cache)
    assert (s1.hits, s1.misses) == (0, 3)  # distinct inputs: the duplicate is embedded once
    b2 = load_backbone(f"hf:{tiny_bert}")
    x2, s2 = _run(b2, cache)
    assert (s2.hits, s2.misses) == (3, 0) and b2.calls == 0 and not b2.loaded
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(x1[0], x1[3])


def test_new_item_is_the_only_miss(tiny_bert, tmp_path):
    cache = FeatureCache(tmp_path / "c")
    _run(load_backbone(f"hf:{tiny_bert}"), cache)
    _, s = _run(load_backbone(f"hf:{tiny_bert}"), cache, TEXTS + ["something new"])
    assert (s.hits, s.misses) == (3, 1)
    _, s = _run(load_backbone(f"hf:{tiny_bert}"), cache, ["the cat sat."])  # content changed by one byte
    assert s.misses == 1


def test_every_key_part_misses(tiny_bert, tmp_path):
    from tests.helpers import make_tiny_bert

    cache = FeatureCache(tmp_path / "c")
    _run(load_backbone(f"hf:{tiny_bert}"), cache)
    variants = {
        "layers": load_backbone(f"hf:{tiny_bert}", layers=[-2]),
        "pooling": load_backbone(f"hf:{tiny_bert}", pooling="cls"),
        "preprocessing": load_backbone(f"hf:{tiny_bert}", max_length=16),
        "weights": load_backbone(f"hf:{make_tiny_bert(tmp_path / 'w', seed=3)}"),
    }
    for part, b in variants.items():
        _, s = _run(b, cache)
        assert s.hits == 0 and b.calls > 0, part


def test_corrupt_entry_is_detected_and_recomputed(tiny_bert, tmp_path):
    cache = FeatureCache(tmp_path / "c")
    x1, _ = _run(load_backbone(f"hf:{tiny_bert}"), cache)
    (shard,) = list((tmp_path / "c").rglob("*.npz"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside the stored vectors
    shard.write_bytes(bytes(data))
    b = load_backbone(f"hf:{tiny_bert}")
    x2, s = _run(b, cache)
    assert s.corrupt_shards == [str(shard)] and s.misses == 3 and b.calls > 0
    np.testing.assert_allclose(x1, x2, atol=1e-6)
    _, s3 = _run(load_backbone(f"hf:{tiny_bert}"), cache)
    assert s3.hits == 3 and not s3.corrupt_shards


def test_truncated_entry_is_detected(tiny_bert, tmp_path):
    cache = FeatureCache(tmp_path / "c")
    _run(load_backbone(f"hf:{tiny_bert}"), cache)
    (shard,) = list((tmp_path / "c").rglob("*.npz"))
    shard.write_bytes(shard.read_bytes()[:100])
    _, s = _run(load_backbone(f"hf:{tiny_bert}"), cache)
    assert len(s.corrupt_shards) == 1 and s.misses == 3


def test_writes_leave_no_temp_files(tiny_bert, tmp_path):
    cache = FeatureCache(tmp_path / "c")
    _run(load_backbone(f"hf:{tiny_bert}"), cache)
    files = [p.name for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert not [f for f in files if f.startswith(".tmp-")]
    assert sorted(f.split(".")[-1] for f in files) == ["json", "npz"]
