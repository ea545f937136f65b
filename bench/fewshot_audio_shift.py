"""A cross-domain few-shot audio set for bench/fewshot_selection.py (issue 30): novel spoken words by voices the audio
few-shot demo never uses, built in a minute from the same engines and augmentation (`tlops.data.build_fewshot_audio`).

- Words: 16 words that are in none of the demo's splits (`WORDS` there), so they are novel to meta-training.
- Voices: espeak-ng's non-English language voices reading English words (German, French, Spanish, Italian, Dutch,
  Polish, Swedish, Portuguese: other phonologies, i.e. foreign accents) and its West-Midlands English voice, each with a
  voice variant outside the demo's list (`build_voice_shift.VARIANTS`). The demo draws from seven English accents x 16
  variants of espeak-ng and five flite voices. A third synthesiser would be the stronger shift, but only espeak-ng and
  flite are installed here, and flite's five voices are all in the demo.
- Clips: the demo's augmentation (trim, random onset, gain, white noise at 15-35 dB SNR), 16 kHz mu-law WAV; 30 per word
  in `test` (5-way 5-shot episodes with 15 queries need 20), 5 per word in `train` and `val` (the dataset format wants
  every split; the bench only uses `test`). Deterministic: one seeded stream per word.

Run: `python -m bench.fewshot_audio_shift [OUT_DIR]` (default bench/out/fewshot_audio_shift: bench data, not under
data/, where `make data` refuses any folder no builder of data.dvc makes), then
`python -m bench.fewshot_selection --modalities audio --cross audio=bench/out/fewshot_audio_shift:test`.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np

from bench.common import OUT
from tlops.data.build_fewshot_audio import WORDS, write_word_clips
from tlops.data.build_keywords import require_engines
from tlops.data.build_voice_shift import VARIANTS
from tlops.data.dataset import write_split_csv

NOVEL = ["red", "green", "blue", "black", "white", "lion", "horse", "sheep", "bread", "cheese", "paper", "money", "doctor",
         "island", "planet", "sister"]
LANGUAGES = ["de", "fr", "es", "it", "nl", "pl", "sv", "pt", "en-gb-x-gbcwmd"]
NEW_VARIANTS = ["Andy", "Annie", "anika", "belinda", "boris", "david", "edward", "grandma", "grandpa", "john", "linda",
                "max", "michel", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "m8", "klatt4", "klatt5"]
SPLITS = {"test": 30, "train": 5, "val": 5}  # clips per word


def _seed(key: str) -> int:
    return int(hashlib.sha256(f"tlops-fewshot-audio-shift-v1:{key}".encode()).hexdigest()[:8], 16)


def _draw_voice(rng: np.random.Generator) -> tuple:
    """synthesise_clip's leading arguments for one clip: a language voice + a new variant, espeak speed and pitch."""
    voice = f"{LANGUAGES[int(rng.integers(len(LANGUAGES)))]}+{NEW_VARIANTS[int(rng.integers(len(NEW_VARIANTS)))]}"
    return ("espeak", voice, int(rng.integers(130, 191)), int(rng.integers(25, 76)), None, 0)


def build(out_dir: Path) -> dict[str, int]:
    assert not set(NOVEL) & set(WORDS), "the shift's words must be novel to the demo"
    assert not set(NEW_VARIANTS) & set(VARIANTS), "the shift's voice variants must be new to the demo"
    require_engines()
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, n_clips in SPLITS.items():
            rows = []
            for word in NOVEL:
                rng = np.random.default_rng(_seed(f"{split}:{word}"))
                rows += write_word_clips(out_dir, f"clips/{split}/{word}", word, n_clips, rng, _draw_voice, Path(tmp))
            write_split_csv(out_dir / f"{split}.csv", ["path", "label"], rows)
            counts[split] = len(rows)
    (out_dir / "dataset.yaml").write_text(
        "modality: audio\nname: spoken-words-fewshot-shift\n"
        f"source: {len(NOVEL)} words novel to data/audio_fewshot, spoken by espeak-ng non-English language voices "
        f"({', '.join(LANGUAGES)}) with voice variants the demo does not use; the demo's augmentation; label = word "
        "(bench/fewshot_audio_shift.py)\n", encoding="utf-8")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", nargs="?", type=Path, default=OUT / "fewshot_audio_shift")
    args = ap.parse_args()
    print(f"wrote {args.out_dir}: {build(args.out_dir)}")


if __name__ == "__main__":
    main()
