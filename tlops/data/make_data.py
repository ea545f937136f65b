"""`make data`: build the demo sets into `data/`, skipping every set whose files already match `data.dvc`.

Each set has one deterministic builder (`BUILDERS`, in build order). What `data.dvc` records is the DVC md5 of
the whole `data/` folder; DVC's cache holds that version's `.dir` object, the md5 of every file, once `dvc add`
has run on this machine. So:
- `data/` as a whole has the recorded md5: nothing to build (a second `make test` costs a second, not minutes);
- otherwise, with the recorded `.dir` object in the cache: rebuild only the sets whose files differ from it;
- without it (a fresh clone): rebuild every set.
After a build, `dvc add` records `data/` and the caller (the Makefile) fails unless `data.dvc` is unchanged, so a
builder that no longer reproduces its set is caught. `SET ...` builds only those sets (`make demo`: the text
set), checked against the recorded files where the cache has them, and leaves `data.dvc` alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tlops.data.versions import _object_path, dir_entries, dir_md5

# folder under data/ -> the module that builds it (`python -m MODULE data/FOLDER`)
BUILDERS: dict[str, str] = {
    "text_wordnet": "tlops.data.build_wordnet",
    "image_fashion_mnist": "tlops.data.build_fashion_mnist",
    "audio_keywords": "tlops.data.build_keywords",
    "image_digit_shift": "tlops.data.build_digit_shift",
    "audio_voice_shift": "tlops.data.build_voice_shift",
    "text_wordnet_shift": "tlops.data.build_wordnet_shift",
    "text_fewshot": "tlops.data.build_fewshot_text",
    "image_fewshot": "tlops.data.build_fewshot_image",
    "audio_fewshot": "tlops.data.build_fewshot_audio",
    "text_regression": "tlops.data.build_regression_text",
    "image_regression": "tlops.data.build_regression_image",
    "audio_regression": "tlops.data.build_regression_audio",
    "audio_pitch": "tlops.data.build_pitch_audio",
    "image_fewshot_regression": "tlops.data.build_fewshot_regression_image",
    "text_qa": "tlops.data.build_qa_wordnet",
    "text_ner": "tlops.data.build_ner_wordnet",
    "image_detection": "tlops.data.build_detect_fashion",
    "image_segmentation": "tlops.data.build_seg_fashion",
    "audio_asr": "tlops.data.build_asr_digits",
}


def recorded_md5(dvc_file: Path) -> str:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]


def recorded_entries(md5: str, cache: Path) -> list[dict[str, str]] | None:
    """The recorded version's file list from DVC's cache (None when this machine never added that version)."""
    obj = _object_path(cache, md5.removesuffix(".dir") + ".dir")
    try:
        return json.loads(obj.read_bytes())
    except (OSError, ValueError):
        return None


def _by_set(entries: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for e in entries:
        top, _, rest = e["relpath"].partition("/")
        out.setdefault(top, {})[rest] = e["md5"]
    return out


def stale_sets(data: Path, wanted: list[str], recorded: list[dict[str, str]] | None) -> list[str]:
    """The sets of `wanted` to build: those whose files differ from the recorded ones (all of them when nothing is
    recorded on this machine)."""
    if recorded is None:
        return list(wanted)
    want = _by_set(recorded)
    stale = []
    for name in wanted:
        folder = data / name
        have = _by_set([{"relpath": f"{name}/{e['relpath']}", "md5": e["md5"]} for e in dir_entries(folder)]) if folder.is_dir() else {}
        if have.get(name, {}) != want.get(name):
            stale.append(name)
    return stale


def build(data: Path, names: list[str], jobs: int) -> None:
    """Run the builders of `names` (each in its own process, `jobs` at a time); stop at the first that fails."""
    def one(name: str) -> tuple[str, float, subprocess.CompletedProcess]:
        t0 = time.perf_counter()
        shutil.rmtree(data / name, ignore_errors=True)  # a generated folder: rebuilt from nothing, so no stray file stays
        out = subprocess.run([sys.executable, "-m", BUILDERS[name], str(data / name)], capture_output=True, text=True)
        return name, time.perf_counter() - t0, out

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, seconds, out in pool.map(one, names):
            sys.stdout.write(out.stdout)
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"error: building data/{name} failed ({BUILDERS[name]}, exit {out.returncode})")
            print(f"built data/{name} in {seconds:.0f} s", flush=True)


def main(argv: list[str]) -> int:
    root = Path.cwd()
    data, dvc_file, cache = root / "data", root / "data.dvc", root / ".dvc" / "cache"
    unknown = [n for n in argv if n not in BUILDERS]
    if unknown:
        print(f"error: unknown demo set(s) {', '.join(unknown)}; known: {', '.join(BUILDERS)}", file=sys.stderr)
        return 2
    md5 = recorded_md5(dvc_file)
    if not argv and data.is_dir() and dir_md5(data) == md5:
        print(f"data/ matches data.dvc ({md5}): nothing to build")
        return 0
    names = list(argv) or list(BUILDERS)
    if not argv and data.is_dir():
        extra = sorted(p.name for p in data.iterdir() if p.name not in BUILDERS)
        if extra:
            print(f"error: data/ holds {', '.join(extra)}, which no builder makes; remove it or add its builder to "
                  f"tlops/data/make_data.py", file=sys.stderr)
            return 2
    recorded = recorded_entries(md5, cache)
    todo = stale_sets(data, names, recorded)
    why = "differ from data.dvc's files" if recorded is not None else "cannot be checked before building (data.dvc's version is not in this DVC cache yet)"
    kept = [n for n in names if n not in todo]
    if kept:
        print(f"up to date: {', '.join(kept)}")
    if todo:
        print(f"building {len(todo)} set(s) that {why}: {', '.join(todo)}", flush=True)
        build(data, todo, jobs=min(2, os.cpu_count() or 1))
    if argv:  # a partial build is checked set by set against the recorded files, where this machine has them
        still = stale_sets(data, names, recorded) if recorded is not None else []
        if still:
            print(f"error: {', '.join(still)} rebuilt, but not to the files data.dvc records", file=sys.stderr)
            return 1
        return 0
    # the whole folder: `dvc add` records it (and puts the version's files in the DVC cache); data.dvc must not change
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], check=True)
    if recorded_md5(dvc_file) != md5:
        print(f"error: data/ does not reproduce the md5 in data.dvc ({md5}); `git diff data.dvc` shows the new one",
              file=sys.stderr)
        return 1
    print(f"data/ matches data.dvc ({md5})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
