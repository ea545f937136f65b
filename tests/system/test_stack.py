"""The team stack. docker/compose.yaml and the native docker/stack.sh must run the same services with the same
commands and environment keys. On the native stack (PostgreSQL 15, a Prefect and an MLflow server on it, a CPU
process worker; started and stopped here): the GPU work-pool templates create pools and render GPU requests,
`tlops schedule` runs through the worker, a data change retrains exactly once and unchanged data never, a scheduled
drift check's `drift` verdict retrains through its event, and 4 `tlops run`s at once all register (versions 1..4)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, tiny_config
from tests.cli import cli
from tests.servers import BIN, STACK, NativeStack
from tlops.secrets import is_secret_name

DOCKER = REPO / "docker"
IMAGE_CMD = {"postgres:15": ["postgres"]}  # services that keep their image's own command


def _example_env(tmp_path: Path) -> dict:
    env_file = tmp_path / "stack.env"
    shutil.copy(DOCKER / ".env.example", env_file)  # so `stack.sh spec` writes nothing into docker/
    return {**os.environ, "TLOPS_STACK_ENV": str(env_file), "TLOPS_STACK_DIR": str(tmp_path / "state")}


def _native_spec(env: dict) -> dict[str, tuple[str, set[str]]]:
    out = subprocess.run([str(STACK), "spec"], env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    return {s: (cmd, set(keys.split())) for s, cmd, keys in (line.split("|") for line in out.strip().splitlines())}


def _dockerfile_cmds() -> dict[str, list[str]]:
    """The CMD of each build stage of docker/Dockerfile.worker."""
    cmds, stage = {}, None
    for line in (DOCKER / "Dockerfile.worker").read_text().splitlines():
        if m := re.match(r"FROM \S+ AS (\w+)", line):
            stage = m.group(1)
        elif line.startswith("CMD "):
            cmds[stage] = json.loads(line[4:])
    return cmds


def test_compose_and_the_native_stack_run_the_same_services(tmp_path):
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    native = _native_spec(_example_env(tmp_path))
    assert set(services) == set(native)
    for name, svc in services.items():
        command = svc.get("command") or IMAGE_CMD[svc["image"]]
        assert " ".join(command) == native[name][0], name
        assert set(svc["environment"]) == native[name][1], name
        assert "healthcheck" in svc, f"{name} has no health check"
    # the worker images start the same worker as compose, on the same pools
    cmds = _dockerfile_cmds()
    assert cmds["cpu"] == services["worker-cpu"]["command"] and cmds["gpu"] == services["worker-gpu"]["command"]
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # the servers on PostgreSQL: Prefect through asyncpg, MLflow through psycopg2
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")


def test_compose_has_no_secret_and_every_setting_in_env_example():
    text = (DOCKER / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    resolve = lambda v: re.sub(r"\$\{(\w+)[^}]*\}", lambda m: example[m.group(1)], str(v))  # noqa: E731
    secrets = {v for k, v in example.items() if is_secret_name(k)}  # the passwords, the auth string, the Flask key
    for name, svc in compose["services"].items():
        for key, value in svc.get("environment", {}).items():
            if is_secret_name(key):
                assert str(value).startswith("${"), f"{name}.{key} is a literal secret"
            else:  # a secret reaches a service only under a key named like one (never inside a URI or a command)
                assert not [s for s in secrets if s in resolve(value)], f"{name}.{key} carries a secret"
        assert not [s for s in secrets if s in resolve(svc.get("command", ""))], name
    # both servers require credentials: MLflow's basic-auth app, Prefect's API auth string; the workers send them
    assert compose["services"]["mlflow"]["command"][-2:] == ["--app-name", "basic-auth"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in compose["services"]["prefect-server"]["environment"]
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING"} <= set(compose["services"]["worker-cpu"]["environment"])
    used = set(re.findall(r"\$\{(\w+)", text))
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    # the images run the servers the project installs (and this test's stack runs)
    assert example["PREFECT_VERSION"] == version("prefect") and example["MLFLOW_VERSION"] == version("mlflow"), \
        "update PREFECT_VERSION / MLFLOW_VERSION in docker/.env.example"


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (Debian package) not installed")
def test_docker_compose_accepts_the_file(tmp_path):
    env = {**os.environ, "TLOPS_PROJECT_DIR": str(REPO)}
    out = subprocess.run(["docker-compose", "-f", str(DOCKER / "compose.yaml"), "--env-file", str(DOCKER / ".env.example"),
                          "--profile", "gpu", "config", "--services"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == {"postgres", "prefect-server", "mlflow", "worker-cpu", "worker-gpu"}


def test_the_servers_listen_on_loopback_unless_the_settings_name_a_team_address(tmp_path):
    """Issue 25: Prefect and MLflow listened on 0.0.0.0 (PostgreSQL on 127.0.0.1). TLOPS_STACK_BIND (loopback by default)
    says where; compose publishes their ports there and PostgreSQL's on loopback only."""
    env = _example_env(tmp_path)
    exports = subprocess.run([str(STACK), "env"], env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "export PREFECT_API_URL=http://127.0.0.1:" in exports and "export MLFLOW_TRACKING_URI=http://127.0.0.1:" in exports
    team = subprocess.run([str(STACK), "env"], env={**env, "TLOPS_STACK_BIND": "10.9.8.7"}, capture_output=True, text=True,
                          check=True, timeout=60).stdout
    assert "export PREFECT_API_URL=http://10.9.8.7:" in team and "export MLFLOW_TRACKING_URI=http://10.9.8.7:" in team
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines() if line and not line.startswith("#"))
    assert example["TLOPS_STACK_BIND"] == "127.0.0.1"
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    for name in ("prefect-server", "mlflow"):
        assert [p.split(":")[0] for p in services[name]["ports"]] == ["${TLOPS_STACK_BIND"], services[name]["ports"]
    assert [p.split(":")[0] for p in services["postgres"]["ports"]] == ["127.0.0.1"], services["postgres"]["ports"]


# ---------------------------------------------------------------- the native stack, up for the tests below


CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING")
# in the environment `stack.sh up` runs in: a secret of the caller's shell, which no service may inherit
PLANTED = ("TLOPS_TEST_PLANTED_TOKEN", "planted-stack-token-6c0e1f")


@pytest.fixture(scope="module")
def stack():
    stack = NativeStack(PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2", PREFECT_WORKER_QUERY_SECONDS="1", **dict([PLANTED]))
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update({k: stack.env[k] for k in CREDENTIALS})  # this process's MlflowClients sign in too
    try:
        yield stack
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        stack.stop()


def _status(url: str, auth: tuple[str, str] | None = None, method: str = "GET", body: dict | None = None) -> int:
    import requests

    return requests.request(method, url, auth=auth, json=body, timeout=30).status_code


def test_both_servers_refuse_requests_without_credentials(stack):
    mlflow_url, api = stack.mlflow, stack.env["PREFECT_API_URL"]
    search = f"{mlflow_url}/api/2.0/mlflow/experiments/search"
    admin = (stack.env["MLFLOW_TRACKING_USERNAME"], stack.env["MLFLOW_TRACKING_PASSWORD"])
    assert _status(search, body={"max_results": 1}, method="POST") == 401
    assert _status(search, ("admin", "wrong-password"), "POST", {"max_results": 1}) == 401
    assert _status(f"{mlflow_url}/get-artifact?path=x&run_uuid=0") == 401  # the file-reading routes too
    assert _status(search, admin, "POST", {"max_results": 1}) == 200
    flows = f"{api}/flows/filter"
    assert _status(flows, method="POST", body={}) == 401
    assert _status(flows, tuple(stack.env["PREFECT_API_AUTH_STRING"].split(":", 1)), "POST", {}) == 200
    assert _status(f"{api}/health") == 200 and _status(f"{mlflow_url}/health") == 200  # health checks need none
    # the secrets are random per stack (no default), and `stack.sh env` hands them to clients
    settings = dict(re.findall(r"(\w+)=(\S*)", (stack.root / "stack.env").read_text()))
    assert "change-me" not in (settings["MLFLOW_ADMIN_PASSWORD"] + settings["PREFECT_AUTH_STRING"] + settings["MLFLOW_FLASK_SECRET_KEY"])
    assert len(settings["MLFLOW_ADMIN_PASSWORD"]) >= 32 and stack.env["MLFLOW_TRACKING_PASSWORD"] == settings["MLFLOW_ADMIN_PASSWORD"]


def test_the_stack_reports_healthy_services_on_postgresql(stack):
    status = subprocess.run([str(STACK), "status"], env=stack.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout
    assert [l for l in status.stdout.splitlines() if "running, healthy" in l][:4] == [
        f"{s}: running, healthy" for s in ("postgres", "prefect-server", "mlflow", "worker-cpu")]
    # both servers keep their state in PostgreSQL (not a SQLite file)
    password = dict(re.findall(r"(\w+)=(\S*)", (stack.root / "stack.env").read_text()))["POSTGRES_PASSWORD"]
    for db, table in (("prefect", "flow_run"), ("mlflow", "registered_models")):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", stack.env["POSTGRES_PORT"], "-U", "tlops", "-d", db, "-Atc",
                              f"select to_regclass('public.{table}') is not null"], env={**os.environ, "PGPASSWORD": password},
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "t", (db, out.stderr)
    assert password not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout  # never on a command line


def _environ(pid: int) -> dict[str, str] | None:
    try:
        raw = (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):  # a child that just ended
        return None
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_each_service_holds_only_its_own_secrets_and_listens_on_loopback(stack):
    """Issue 25: stack.sh exported every key of its settings file to every service (the worker held PostgreSQL's password
    and MLflow's Flask key), and the caller's shell secrets too; Prefect and MLflow listened on 0.0.0.0. Each process of
    each service (MLflow's and the worker's children too) is read from /proc."""
    import psutil

    settings = dict(re.findall(r"(\w+)=(\S*)", (stack.root / "stack.env").read_text()))
    secrets = ("POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SECRET_KEY", "PREFECT_AUTH_STRING")
    own = {"postgres": set(), "prefect-server": {"POSTGRES_PASSWORD", "PREFECT_AUTH_STRING"},
           "mlflow": {"POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SECRET_KEY"},
           "worker-cpu": {"MLFLOW_ADMIN_PASSWORD", "PREFECT_AUTH_STRING"}}
    state = stack.root / "state"
    for service, allowed in own.items():
        pid_file = state / "pgdata" / "postmaster.pid" if service == "postgres" else state / "pids" / f"{service}.pid"
        root = psutil.Process(int(pid_file.read_text().split()[0]))
        for i, proc in enumerate([root, *root.children(recursive=True)]):
            environ = _environ(proc.pid)
            if environ is None:
                continue
            text = "\n".join(f"{k}={v}" for k, v in environ.items())
            held = {k for k in secrets if settings[k] in text}
            assert held <= allowed, f"{service} (pid {proc.pid}) holds {sorted(held - allowed)}"
            if i == 0 and service != "postgres":  # (postgres writes its process titles over its environment)
                assert held == allowed, f"{service} lacks {sorted(allowed - held)}"
            assert not set(secrets) & set(environ), f"{service} got settings-file keys {sorted(set(secrets) & set(environ))}"
            assert PLANTED[1] not in text and PLANTED[0] not in environ, f"{service} inherited the caller's secret"
    ports = {int(stack.env[k]): k for k in ("POSTGRES_PORT", "PREFECT_PORT", "MLFLOW_PORT", "WORKER_CPU_HEALTH_PORT")}
    listening = [(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
                 and c.laddr.port in ports]
    assert {port for _, port in listening} == set(ports), (listening, ports)
    assert {ip for ip, _ in listening} <= {"127.0.0.1", "::1"}, [(ip, ports[port]) for ip, port in listening]


async def _rendered_jobs(api: str) -> tuple:
    from prefect.client.orchestration import PrefectClient
    from prefect_docker.worker import DockerWorkerJobConfiguration
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async with PrefectClient(api, auth_string=os.environ.get("PREFECT_API_AUTH_STRING")) as client:
        k8s, dock = await client.read_work_pool("tlops-k8s-gpu"), await client.read_work_pool("tlops-docker-gpu")
    return (k8s, dock,
            await KubernetesWorkerJobConfiguration.from_template_and_values(k8s.base_job_template, {}),
            await KubernetesWorkerJobConfiguration.from_template_and_values(k8s.base_job_template, {"gpu_count": 2}),
            await DockerWorkerJobConfiguration.from_template_and_values(dock.base_job_template, {}))


def test_gpu_pool_templates_create_pools_that_request_gpus(stack):
    import docker.types
    from prefect_docker.worker import DockerWorker
    from prefect_kubernetes.worker import KubernetesWorker

    for name, kind, template in (("tlops-k8s-gpu", "kubernetes", "kubernetes-gpu.json"), ("tlops-docker-gpu", "docker", "docker-gpu.json")):
        out = subprocess.run([str(BIN / "prefect"), "work-pool", "create", name, "--type", kind, "--base-job-template",
                              str(DOCKER / "pools" / template), "--overwrite"], env=stack.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
    k8s, dock, job, job2, container = asyncio.run(_rendered_jobs(stack.env["PREFECT_API_URL"]))
    assert (k8s.type, dock.type) == ("kubernetes", "docker")
    # the templates keep every variable of the installed workers' own templates (not stale)
    assert set(KubernetesWorker.get_default_base_job_template()["variables"]["properties"]) <= set(k8s.base_job_template["variables"]["properties"])
    assert set(DockerWorker.get_default_base_job_template()["variables"]["properties"]) <= set(dock.base_job_template["variables"]["properties"])

    pod = job.job_manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["containers"][0]["image"] == "tlops-worker-gpu"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert job2.job_manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    # docker-py turns the pool's container_create_kwargs into the engine's device request for all GPUs
    host = docker.types.HostConfig(version="1.44", **{k: v for k, v in container.container_create_kwargs.items()})
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]
    assert container.image == "tlops-worker-gpu"


async def _active_train_runs(api: str, states: tuple[str, ...] = ("PENDING", "RUNNING")) -> list:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    async with PrefectClient(api, auth_string=os.environ.get("PREFECT_API_AUTH_STRING")) as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["tlops-train"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType[s] for s in states]))))


def _versions(client: MlflowClient, name: str) -> list:
    try:
        return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    except Exception:
        return []


def _wait(predicate, timeout: float, what: str, logs) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}:\n{logs()}")


async def _has_work_pool(api: str, name: str) -> bool:
    from prefect.client.orchestration import PrefectClient
    from prefect.exceptions import ObjectNotFound

    async with PrefectClient(api, auth_string=os.environ.get("PREFECT_API_AUTH_STRING")) as client:
        try:
            return bool(await client.read_work_pool(name))
        except ObjectNotFound:
            return False


async def _start_deployment_run(api: str, name: str) -> None:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api, auth_string=os.environ.get("PREFECT_API_AUTH_STRING")) as client:
        await client.create_flow_run_from_deployment((await client.read_deployment_by_name(name)).id)


async def _completed_watch_runs(api: str) -> int:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    async with PrefectClient(api, auth_string=os.environ.get("PREFECT_API_AUTH_STRING")) as client:
        return len(await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["tlops-watch"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])))))


def test_schedule_runs_on_the_worker_and_a_data_change_retrains_once(stack, tmp_path, text_dataset, tiny_bert):
    """The commands run in-process (typer's runner; the stack's API URL and auth string applied as Prefect settings):
    what runs on the stack's worker is the subject here, not the command's process. The retrain-on-data schedule also
    retrains on drift: a drift-check deployment run (`tlops schedule drift`) on strings of another kind emits
    `tlops.data.drift` and the retrain it triggers names the check's MLflow run (started while the data watch ticks)."""
    env, pool = stack.env, "tlops-cpu"
    api = env["PREFECT_API_URL"]
    cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="sched", tracking__uri=stack.mlflow,
                      tracking__experiment="sched")
    (tmp_path / "sched.yaml").write_text(yaml.safe_dump(cfg))
    client = MlflowClient(stack.mlflow, registry_uri=stack.mlflow)
    logs = lambda: stack.log("worker-cpu")  # noqa: E731
    watch_ticks = lambda: asyncio.run(_completed_watch_runs(api))  # noqa: E731

    # the worker creates its pool when it starts: on a loaded machine that may come after the stack reports healthy
    _wait(lambda: asyncio.run(_has_work_pool(api, pool)), 120, f"the worker to create pool {pool}", logs)
    # a schedule with a short interval: its first run goes through the stack's worker and registers v1
    out = cli("schedule", str(tmp_path / "sched.yaml"), "--interval", "10", "--pool", pool, "--watch-every", "0",
              "--name", "every-10s", "--json", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(json.loads(out.stdout.strip().splitlines()[-1])["deployments"]) == {"train"}
    # removed once its first run is running on the worker (not after it registers: on a slow machine a run outlasts
    # several ticks, and the runs they start slow each other down; not while it is only PENDING: removing the
    # deployment then takes the run with it)
    _wait(lambda: asyncio.run(_active_train_runs(api, ("RUNNING",))), 300, "the first scheduled run to start", logs)
    assert cli("schedule", "rm", "every-10s", env=env).returncode == 0
    # a second interval run may have started before the removal: it finishes (rm stops scheduling, not training)
    _wait(lambda: not asyncio.run(_active_train_runs(api)), 600, "in-flight scheduled runs to end", logs)
    scheduled = len(_versions(client, "sched"))
    assert scheduled >= 1, "the scheduled run registered no version"

    # retrain on data change (and on drift) only: a yearly cron, the data watch every 8 s
    out = cli("schedule", str(tmp_path / "sched.yaml"), "--cron", "0 0 1 1 *", "--pool", pool, "--watch-every", "8",
              "--debounce", "3", "--name", "on-data", "--retrain-on-drift", "--json", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(json.loads(out.stdout.strip().splitlines()[-1])["deployments"]) == {"train", "watch"}
    _wait(lambda: watch_ticks() >= 2, 300, "two watch ticks on unchanged data", logs)
    assert len(_versions(client, "sched")) == scheduled, "unchanged data must not retrain"
    with open(text_dataset / "train.csv", "a") as f:  # new labelled rows arrive
        for i in range(3):
            f.write(f"a tiny mouse hiding under bench {i},animal\n")
    _wait(lambda: len(_versions(client, "sched")) > scheduled, 300, "the triggered retrain to register a version", logs)
    experiment = client.get_experiment_by_name("sched").experiment_id  # its alias moves come after the version: wait for the run
    _wait(lambda: all(r.info.status != "RUNNING" for r in client.search_runs([experiment])), 300, "the triggered run to finish", logs)
    ticks = watch_ticks()
    # meanwhile a drift check of the champion on inputs of another kind runs on the worker
    t_drift = time.perf_counter()
    with open(tmp_path / "new_inputs.csv", "w") as f:
        f.write("text\n" + "".join(f"{i:05d} {'#' * (i % 7 + 1)} {'zq' * (i % 5 + 2)} 0x{i * 7919:08x}\n" for i in range(40)))
    out = cli("schedule", "drift", "models:/sched@champion", "--data", str(tmp_path / "new_inputs.csv"), "--pool", pool,
              "--name", "sched-drift", "--permutations", "200", "--cache-dir", str(tmp_path / "cache"), "--json", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    asyncio.run(_start_deployment_run(api, "tlops-drift/sched-drift"))
    t_started = time.perf_counter()
    _wait(lambda: watch_ticks() >= ticks + 2, 300, "two more watch ticks", logs)  # the change was announced once: one retrain
    sources = lambda: [client.get_run(v.run_id).data.tags["tlops.config_source"] for v in _versions(client, "sched")]  # noqa: E731
    by_data = [s for s in sources() if not s.startswith("trigger:tlops.data.drift")]  # the drift retrain may have registered by now
    assert by_data == ["schedule:every-10s"] * scheduled + ["trigger:tlops.data.changed (on-data)"], by_data
    versions = _versions(client, "sched")
    last = client.get_run(versions[scheduled].run_id).data.tags
    assert last["data.version_md5"] != client.get_run(versions[0].run_id).data.tags["data.version_md5"]  # the new data

    # the drift check's run: verdict drift, logged with its event's id; the retrain its event triggered names that run
    t_ticks = time.perf_counter()
    _wait(lambda: any(s.startswith("trigger:tlops.data.drift") for s in sources()), 300, "the drift-triggered retrain to register a version", logs)
    checks = client.search_runs([experiment], "tags.`tlops.kind` = 'drift_check'")
    assert len(checks) == 1 and checks[0].data.tags["tlops.drift.verdict"] == "drift", [c.data.tags for c in checks]
    assert checks[0].data.tags["tlops.drift.announce"] == "true" and checks[0].data.tags["tlops.drift.event"]
    by_drift = f"trigger:tlops.data.drift (on-data) drift:{checks[0].info.run_id}"
    assert [s for s in sources() if s.startswith("trigger:tlops.data.drift")] == [by_drift], sources()
    _wait(lambda: all(r.info.status != "RUNNING" for r in client.search_runs([experiment])), 300, "the drift retrain to finish", logs)
    print(f"drift part: {t_started - t_drift:.1f} s to deploy and start the check, {time.perf_counter() - t_ticks:.1f} s waited for "
          "its retrain after the watch ticks")  # what it adds to this test (pytest -rP shows it)

    hist = json.loads(cli("history", "sched", "--json", "--tracking-uri", stack.mlflow, env=env).stdout.strip().splitlines()[-1])
    made_by = {m["command"] for m in hist["moves"]}
    assert {"schedule:every-10s", "trigger:tlops.data.changed (on-data)", by_drift} <= made_by, made_by

    listed = json.loads(cli("schedule", "ls", "--json", env=env).stdout.strip().splitlines()[-1])["schedules"]
    assert [(r["name"], r["kind"], r["model"], r["data_trigger"], r["pool"]) for r in listed] == [
        ("on-data", "retrain", "sched", True, pool), ("sched-drift", "drift check", "models:/sched@champion", False, pool)]
    assert json.loads(cli("schedule", "rm", "sched-drift", "--json", env=env).stdout.strip().splitlines()[-1])["removed"] == [
        "tlops-drift/sched-drift"]
    removed = cli("schedule", "rm", "on-data", "--json", env=env)
    assert json.loads(removed.stdout.strip().splitlines()[-1])["removed"] == ["tlops-train/on-data", "tlops-watch/on-data"]
    assert json.loads(cli("schedule", "ls", "--json", env=env).stdout.strip().splitlines()[-1])["schedules"] == []
    bad = cli("schedule", "rm", "on-data", env=env)
    assert bad.returncode == 1 and "no schedule named 'on-data'" in bad.stderr


def test_four_concurrent_runs_on_the_postgres_stack_all_register(stack, tmp_path, text_dataset, tiny_bert):
    runs = 4
    procs = []
    for i in range(runs):
        cfg = tiny_config(tmp_path, text_dataset, tiny_bert, registry__model_name="conc", tracking__uri=stack.mlflow,
                          tracking__experiment="conc", execution__work_dir=str(tmp_path / f"runs{i}"))
        (tmp_path / f"c{i}.yaml").write_text(yaml.safe_dump(cfg))
        procs.append(subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(tmp_path / f"c{i}.yaml"), "--json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=stack.env))
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * runs, [o[1][-2500:] for o in outs]
    assert not [o for o in outs if "database is locked" in o[1]]
    client = MlflowClient(stack.mlflow, registry_uri=stack.mlflow)
    assert [int(v.version) for v in _versions(client, "conc")] == list(range(1, runs + 1)), "no gap, no duplicate"
    mlflow_runs = client.search_runs([client.get_experiment_by_name("conc").experiment_id])
    assert [r.info.status for r in mlflow_runs] == ["FINISHED"] * runs
    assert sorted(json.loads(o[0].strip().splitlines()[-1])["version"] for o in outs) == [str(v) for v in range(1, runs + 1)]
