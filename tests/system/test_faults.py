"""Faults injected and survived (issue 14): a full disk under the feature cache and the checkpoints, the worker
killed during the train step on a work pool, the MLflow server stopped mid-run. Each test injects the real fault
(a small tmpfs, SIGKILL, a stopped server) and checks that nothing is lost and nothing is half-registered."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tlops.backbones import load_backbone
from tlops.cache import FeatureCache
from tlops.checkpoint import latest_checkpoint, read_checkpoint, save_checkpoint
from tlops.diskspace import DiskFull
from tlops.features import cached_features

KIB = 1024


@contextlib.contextmanager
def tmpfs(folder: Path, size_kib: int):
    """A real size-limited filesystem at `folder` (root only: CI and this machine run tests as root)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        # CI and `make test` run as root (apt installs need it): a failed mount is a broken environment, not a reason to skip
        pytest.fail(f"cannot mount a tmpfs at {folder} (needs root; run the tests as CI does): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path, leave_kib: int) -> Path:
    """Leave about `leave_kib` free on `folder`'s filesystem: one filler file, removed to free the space again."""
    import shutil

    filler = folder / "filler"
    free = shutil.disk_usage(folder).free
    filler.write_bytes(b"\0" * max(free - leave_kib * KIB, 0))
    return filler


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "filler")


def test_full_disk_under_the_cache_keeps_no_shard_and_the_next_run_recomputes(tiny_bert, tmp_path):
    texts = [f"sentence number {i} about the river and the market" for i in range(300)]  # ~40 KiB of shard
    with tmpfs(tmp_path / "cache", 256) as root:
        filler = _fill(root, leave_kib=12)
        with pytest.raises(DiskFull) as err:
            cached_features(load_backbone(f"hf:{tiny_bert}"), texts, FeatureCache(root))
        msg = str(err.value)
        assert str(root) in msg and "features.cache_dir" in msg and "Free space" in msg, msg
        leftovers = [f for f in _files(root) if f.endswith(".npz") or "/.tmp-" in f]
        assert not leftovers, f"a failed write left files behind: {leftovers}"

        filler.unlink()  # space freed: the next run recomputes every row, and then finds them all
        x1, s1 = cached_features(load_backbone(f"hf:{tiny_bert}"), texts, FeatureCache(root))
        assert (s1.hits, s1.misses, s1.corrupt_shards) == (0, len(texts), [])
        b = load_backbone(f"hf:{tiny_bert}")
        x2, s2 = cached_features(b, texts, FeatureCache(root))
        assert (s2.hits, s2.misses, b.calls) == (len(texts), 0, 0)
        np.testing.assert_array_equal(x1, x2)


def _weights(value: float, rows: int = 64) -> dict[str, dict[str, torch.Tensor]]:
    return {"model.safetensors": {"w": torch.full((rows, 64), value)}}  # 16 KiB at 64 rows


def test_full_disk_under_the_checkpoints_keeps_the_last_complete_one(tmp_path):
    with tmpfs(tmp_path / "work", 512) as root:
        ckpts = root / "checkpoints" / "run"
        save_checkpoint(ckpts, "best", _weights(1.0), meta={"epoch": 1})
        save_checkpoint(ckpts, "step-00000010", _weights(1.0), meta={"step": 10}, state={"opt": torch.zeros(64, 64)})
        filler = _fill(root, leave_kib=20)

        # where the disk fills: the manifest after the weights (replacing `best`), torch.save's trainer state,
        # safetensors' weights (each library reports it its own way)
        for name, rows, state in (("best", 64, None), ("step-00000020", 64, {"opt": torch.zeros(256, 64)}), ("step-00000030", 128, None)):
            with pytest.raises(DiskFull) as err:
                save_checkpoint(ckpts, name, _weights(2.0, rows), meta={"step": 20}, state=state)
            msg = str(err.value)
            assert str(ckpts) in msg and "execution.work_dir" in msg and "Free space" in msg, msg
        assert not [p.name for p in ckpts.iterdir() if p.name.startswith((".tmp-", ".old-"))], list(ckpts.iterdir())
        best = read_checkpoint(ckpts / "best")
        assert best is not None and best.meta == {"epoch": 1}, "the failed replace lost the previous best checkpoint"
        assert float(best.tensors("model.safetensors")["w"][0, 0]) == 1.0
        latest, skipped = latest_checkpoint(ckpts)
        assert latest is not None and latest.path.name == "step-00000010" and skipped == []  # what a resume picks

        filler.unlink()
        save_checkpoint(ckpts, "step-00000020", _weights(2.0), meta={"step": 20}, state={"opt": torch.zeros(256, 64)})
        assert latest_checkpoint(ckpts)[0].meta == {"step": 20}


POOL = "tlops-faults-pool"


FT = {"name": "finetune", "epochs": 2, "batch_size": 8, "head_lr": 1e-2, "backbone_lr": 1e-3, "warmup_ratio": 0.0,
      "checkpoint_every_steps": 4}  # 6 steps an epoch: a checkpoint at step 4, mid-epoch


async def _train_step_runs(api: str, pool: str) -> list:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    async with PrefectClient(api) as client:
        return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["tlops-train-step"])),
                                           work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))


def test_worker_killed_in_the_train_step_fails_the_run_and_the_rerun_resumes(tmp_path, text_dataset, tiny_bert, prefect_api):
    import asyncio
    import json
    import sys

    import yaml
    from mlflow.tracking import MlflowClient

    from tests.helpers import REPO, tiny_config
    from tests.servers import BIN, Services, prefect_env
    from tlops.training.callbacks import SIGKILL_ENV

    svc = Services(tmp_path)
    env = prefect_env(tmp_path, prefect_api)
    try:
        subprocess.run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"], env=env, check=True,
                       capture_output=True, timeout=120)
        # the flow-run process the worker starts SIGKILLs itself right after optimizer step 4 (its checkpoint written);
        # the rerun resumes at step 4 and never reaches that step again
        worker = svc.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
                           {**env, SIGKILL_ENV: "4"})
        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy=FT, execution__train_pool=POOL)
        cfg_file = tmp_path / "pool.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg))

        def tlops_run() -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "flows.cli", "run", str(cfg_file), "--json"], capture_output=True,
                                  text=True, cwd=REPO, env=env, timeout=600)

        crashed = tlops_run()
        assert crashed.returncode == 1, crashed.stdout[-2000:] + crashed.stderr[-4000:] + svc.log(worker).read_text()[-3000:]
        (step_run,) = asyncio.run(_train_step_runs(prefect_api, POOL))
        assert step_run.state.is_crashed(), (step_run.state, svc.log(worker).read_text()[-3000:])
        assert "Crashed" in crashed.stderr and str(step_run.id) in crashed.stderr, crashed.stderr[-3000:]
        assert "run the same command again to resume" in crashed.stderr and "is a worker running" not in crashed.stderr

        uri = cfg["tracking"]["uri"]
        client = MlflowClient(uri, registry_uri=uri)
        (run,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
        assert run.info.status == "FAILED", run.info.status  # closed by the CLI's process, not left RUNNING
        assert "Crashed" in run.data.tags["tlops.error"], run.data.tags
        assert not client.search_model_versions("name='tiny-text'"), "a crashed train step registered a version"
        (ckpt,) = (tmp_path / "runs" / "checkpoints").iterdir()
        assert read_checkpoint(ckpt / "step-000000004") is not None, sorted(p.name for p in ckpt.iterdir())

        resumed = tlops_run()
        assert resumed.returncode == 0, resumed.stderr[-4000:] + svc.log(worker).read_text()[-3000:]
        result = json.loads(resumed.stdout.strip().splitlines()[-1])
        assert result["resumed_from"] == {"checkpoint": "step-000000004", "epoch": 0, "batch": 4, "global_step": 4}, result
        assert result["work_pool"] == POOL and worker.pid in result["train_executed_by"]["ancestors"]
        assert client.get_run(result["run_id"]).info.status == "FINISHED"
        assert client.get_registered_model("tiny-text").aliases == {"champion": 1, "challenger": 1} and result["version"] == "1"
        assert run.info.run_id != result["run_id"]
    finally:
        svc.stop()


def test_mlflow_server_stopped_mid_run_fails_clearly_and_registers_nothing_half(tmp_path, text_dataset, tiny_bert, prefect_api):
    import json
    import os
    import sys
    import time
    import urllib.parse

    import yaml
    from mlflow.tracking import MlflowClient

    from tests.helpers import REPO, tiny_config
    from tests.servers import Services, start_mlflow_server

    svc = Services(tmp_path)
    try:
        url = start_mlflow_server(svc)
        port = urllib.parse.urlparse(url).port
        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, strategy={**FT, "epochs": 6}, tracking__uri=url)  # epochs left after we stop it
        cfg_file = tmp_path / "c.yaml"
        cfg_file.write_text(yaml.safe_dump(cfg))
        # few, quick HTTP retries: the failure shows in seconds, not after MLflow's default ~2 minutes of backoff
        env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
        cmd = [sys.executable, "-m", "flows.cli", "run", str(cfg_file), "--json"]
        run = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        checkpoints = tmp_path / "runs" / "checkpoints"
        deadline = time.time() + 400
        while run.poll() is None and time.time() < deadline and not list(checkpoints.rglob("step-*/manifest.json")):
            time.sleep(0.5)
        assert run.poll() is None, "the run ended before the server could be stopped: " + run.communicate()[1][-3000:]
        server = next(p for p, log in svc.procs if log.name == "mlflow-server.log" and p.poll() is None)
        svc.stop_one(server)  # mid-training: the epoch logger's next call finds no server
        out, err = run.communicate(timeout=300)
        assert run.returncode != 0, out[-2000:]
        (tmp_path / "stopped-run.stderr").write_text(err)
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: the MLflow tracking server") and url in last and "rerun the same command" in last, err[-4000:]

        start_mlflow_server(svc, port=port)  # the same store, back on the same address
        client = MlflowClient(url, registry_uri=url)
        (stopped,) = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
        assert stopped.info.status != "FINISHED"
        assert not client.search_registered_models(), "a version was registered while the server was down"

        again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-4000:]
        result = json.loads(again.stdout.strip().splitlines()[-1])
        assert result["resumed_from"] is not None, "the rerun did not resume from the kept checkpoint"
        assert client.get_run(stopped.info.run_id).info.status == "KILLED"  # its process is gone: closed by the rerun
        mv = client.get_model_version_by_alias("tiny-text", "champion")
        assert mv.version == result["version"] == "1" and mv.run_id == result["run_id"]
        files = {a.path for a in client.list_artifacts(result["run_id"], "registry")}
        assert "registry/package_manifest.json" in files, files
    finally:
        svc.stop()
