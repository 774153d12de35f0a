"""The Ray cluster launcher configs: cluster.yaml (AWS), cluster-gcp.yaml, cluster-local.yaml.

Each file must pass Ray's own checks (`prepare_config` fills in the provider's defaults the way
`ray up` does, then `validate_config` applies Ray's JSON schema), offline. Beyond the schema,
each property the cluster route needs is a checker that returns what is wrong (empty: fine):
the head schedules no trials, the workers have cloud credentials, `.venv`/`runs`/caches/`.git`
are not uploaded, every node runs the project on Python 3.11 from one venv, the install uses
constraints.txt, GPU node types start at zero and carry the GPU they declare, every node fetches
the pretrained weights, every command parses as shell. `test_checker_catches` breaks a copy of
a config in each of those ways and requires the checker to notice, so no checker passes vacuously.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from ray.autoscaler._private.command_runner import SSHCommandRunner
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"aws": "cluster.yaml", "gcp": "cluster-gcp.yaml", "local": "cluster-local.yaml"}
CLOUD = ("aws", "gcp")

# GPUs per instance / machine type, for the types these configs use or might switch to.
AWS_GPUS = {
    "g4dn.xlarge": 1, "g4dn.2xlarge": 1, "g4dn.4xlarge": 1, "g4dn.12xlarge": 4,
    "g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1, "g5.8xlarge": 1, "g5.12xlarge": 4,
    "g5.24xlarge": 4, "g5.48xlarge": 8,
    "g6.xlarge": 1, "g6.2xlarge": 1, "g6.4xlarge": 1, "g6.8xlarge": 1, "g6.12xlarge": 4,
    "g6.24xlarge": 4, "g6.48xlarge": 8,
    "g6e.xlarge": 1, "g6e.2xlarge": 1, "g6e.4xlarge": 1, "g6e.12xlarge": 4, "g6e.48xlarge": 8,
    "p4d.24xlarge": 8, "p5.48xlarge": 8,
}
GCP_GPUS = {  # accelerator-optimized types come with their GPUs attached
    "g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
    "g2-standard-32": 1, "g2-standard-24": 2, "g2-standard-48": 4, "g2-standard-96": 8,
    "a2-highgpu-1g": 1, "a2-highgpu-2g": 2, "a2-highgpu-4g": 4, "a2-highgpu-8g": 8,
}
GCS_SCOPES = {
    "https://www.googleapis.com/auth/devstorage.read_write",
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/cloud-platform",
}
# torch 2.14.1+cu130 (constraints.txt) needs an NVIDIA driver from the 580 series on.
MIN_DRIVER = 580


def load(name: str) -> dict:
    return yaml.safe_load((REPO / CONFIGS[name]).read_text())


def prepared(config: dict) -> dict:
    """What `ray up` works from: the provider's defaults filled in, commands merged."""
    return prepare_config(copy.deepcopy(config))


def all_commands(config: dict) -> list[str]:
    full = prepared(config)
    commands = [*full["initialization_commands"], *full["head_setup_commands"],
                *full["worker_setup_commands"], *full["head_start_ray_commands"],
                *full["worker_start_ray_commands"]]
    for node_type in full["available_node_types"].values():
        commands += node_type.get("initialization_commands", [])
        commands += node_type.get("worker_setup_commands", [])
    return commands


def tokens(command: str) -> list[str]:
    return shlex.split(command.replace(";", " ; "))


SEPARATORS = {"&&", "||", ";", "|", "if", "elif", "then", "while", "until", "do", "else", "{", "(", "!"}
PREFIXES = {"sudo", "env", "exec", "nice", "command"}


def executables(command: str) -> list[str]:
    """The programs a shell command runs: the words in command position."""
    words, found, expect = tokens(command), [], True
    for word in words:
        if word in SEPARATORS:
            expect = True
        elif expect and (word in PREFIXES or re.fullmatch(r"\w+=.*", word)):
            continue
        elif expect:
            found.append(word)
            expect = False
    return found


def home(path: str) -> str:
    return path.replace("$HOME", "~")


def gpu_node_types(config: dict) -> dict[str, dict]:
    return {name: spec for name, spec in prepared(config)["available_node_types"].items()
            if spec["resources"].get("GPU", 0) > 0}


def head_start_flags(config: dict) -> dict[str, str]:
    """The `--flag=value` options of the head's `ray start --head` command."""
    for command in prepared(config)["head_start_ray_commands"]:
        for part in command.split(";"):
            words = shlex.split(part)
            if words[:2] == ["ray", "start"] and "--head" in words:
                return dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    raise AssertionError("no `ray start --head` among head_start_ray_commands")


def venv_of(config: dict) -> str | None:
    """The venv that `uv venv --python X V` creates (V, with ~ for the home)."""
    for command in prepared(config)["head_setup_commands"]:
        words = tokens(command)
        for i, word in enumerate(words):
            if word.endswith("/uv") and words[i + 1:i + 2] == ["venv"]:
                return home(words[-1])
    return None


# ---- checkers: each returns the problems it finds ------------------------------------------


def head_problems(config: dict) -> list[str]:
    """Trials never run on the head: it advertises no CPU (and no GPU) to the scheduler."""
    full = prepared(config)
    flags = head_start_flags(config)
    problems = [f"head `ray start` sets --{flag}={flags[flag]}" for flag in ("num-cpus", "num-gpus")
                if flag in flags and flags[flag] != "0"]
    if full["provider"]["type"] == "local":
        # No node types here: Ray's updater passes no resources to `ray start` on this provider.
        problems += [f"head `ray start` lacks --{flag}=0" for flag in ("num-cpus", "num-gpus")
                     if flags.get(flag) != "0"]
    else:
        resources = full["available_node_types"][full["head_node_type"]]["resources"]
        if resources.get("CPU") != 0:
            problems.append(f"head node type resources {resources}: needs CPU: 0")
        if resources.get("GPU", 0) != 0:
            problems.append(f"head node type resources {resources}: advertises a GPU")
    return problems


def credential_problems(config: dict) -> list[str]:
    """AWS: every node has an instance profile; GCP: every worker a service account with a
    Cloud Storage scope (Ray's launcher gives the head its own account)."""
    full = prepared(config)
    problems = []
    for name, spec in full["available_node_types"].items():
        node = spec["node_config"]
        if full["provider"]["type"] == "aws":
            profile = node.get("IamInstanceProfile") or {}
            arn = str(profile.get("Arn", ""))
            if not (re.fullmatch(r"arn:aws:iam::[^:]+:instance-profile/\S+", arn)
                    or profile.get("Name")):
                problems.append(f"{name}: no IamInstanceProfile Arn/Name ({profile})")
        elif full["provider"]["type"] == "gcp" and name != full["head_node_type"]:
            accounts = node.get("serviceAccounts") or []
            if not any(a.get("email") and GCS_SCOPES & set(a.get("scopes", ())) for a in accounts):
                problems.append(f"{name}: no service account with a Cloud Storage scope")
    return problems


def _rsync_excluded(path: str, is_dir: bool, patterns: list[str]) -> bool:
    """rsync's rule for simple patterns: one without a slash matches any path component
    (a trailing slash: directories only); one with a slash matches from the transfer root."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        part_is_dir = is_dir or i < len(parts) - 1
        for pattern in patterns:
            dir_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            if dir_only and not part_is_dir:
                continue
            if "/" in pattern:
                if fnmatch.fnmatch("/".join(parts[:i + 1]), pattern.lstrip("/")):
                    return True
            elif fnmatch.fnmatch(part, pattern):
                return True
    return False


# Paths of a working tree: those that must stay on the laptop, and those the nodes need.
NOT_UPLOADED = [".venv/lib/python3.11/site-packages/torch/__init__.py", "runs/mnist/r1/trials.parquet",
                ".git/objects/pack/p.pack", "orchestrator/__pycache__/cli.cpython-311.pyc",
                ".pytest_cache/v/cache/lastfailed", ".ruff_cache/0.17/x",
                ".mutation/trainables.loop/mutants/x.py", "mutants/x.py",
                "test-artifacts/x.png", "attention_orchestrator.egg-info/PKG-INFO", "build/lib/x.py"]
UPLOADED = ["pyproject.toml", "constraints.txt", "README.md", "orchestrator/cli.py",
            "trainables/models/video/weights.py", "trainables/data/bundled/fsdd/0_a_0.wav",
            "search_spaces/__init__.py", "analysis/__init__.py"]


def upload_problems(config: dict) -> list[str]:
    """`file_mounts` sends the repository to every node without the venv, results, caches, git."""
    full = prepared(config)
    problems = []
    if "." not in full["file_mounts"].values():
        problems.append(f"file_mounts {full['file_mounts']} does not upload the repository (.)")
    excludes = full["rsync_exclude"] or []
    named = {p.strip("/") for p in excludes}
    problems += [f"rsync_exclude lacks {n}" for n in (".venv", "runs", ".git") if n not in named]
    patterns = list(excludes)
    for merge_file in full["rsync_filter"] or []:
        lines = (REPO / merge_file).read_text().splitlines()
        patterns += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    problems += [f"would upload {p}" for p in NOT_UPLOADED if not _rsync_excluded(p, False, patterns)]
    problems += [f"would not upload {p}" for p in UPLOADED if _rsync_excluded(p, False, patterns)]
    return problems


def python_problems(config: dict) -> list[str]:
    """Every node runs a venv on a Python that pyproject's requires-python accepts, made by uv;
    every python/pip a command runs is that venv's, never the image's python3."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    allowed = SpecifierSet(pyproject["project"]["requires-python"])
    full = prepared(config)
    problems = []
    if (full.get("docker") or {}).get("image"):
        problems.append(f"docker image {full['docker']['image']}: the configs install with uv")
    venv = venv_of(config)
    if venv is None:
        return [*problems, "no `uv venv --python X DIR` among the setup commands"]
    for command in full["head_setup_commands"]:
        words = tokens(command)
        for i, word in enumerate(words[:-1]):
            uv = word.endswith("/uv")
            if uv and words[i + 1:i + 3] == ["python", "install"]:
                version = words[i + 3]
            elif uv and words[i + 1] == "venv" and "--python" in words:
                version = words[words.index("--python") + 1]
            else:
                continue
            if not allowed.contains(f"{version}.0"):
                problems.append(f"`{command}` uses Python {version}; pyproject wants {allowed}")
    bashrc = [c for c in full["head_setup_commands"] if ".bashrc" in c and "PATH=" in c]
    if not any(f'PATH="{venv}/bin:' in home(c) for c in bashrc):
        problems.append(f"no ~/.bashrc line puts {venv}/bin first on PATH (ray start uses it)")
    for command in all_commands(config):
        for word in executables(command):
            if re.fullmatch(r"(.*/)?(python[0-9.]*|pip[0-9.]*)", word) and \
                    not home(word).startswith(f"{venv}/bin/"):
                problems.append(f"`{command}` runs {word}, not the venv's")
    return problems


def install_problems(config: dict) -> list[str]:
    """The project is installed, editable, from the uploaded tree with the pinned stack."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    full = prepared(config)
    remote = next((r for r, local in full["file_mounts"].items() if local == "."), None)
    venv = venv_of(config) or "(no venv)"
    for command in full["worker_setup_commands"]:
        words = tokens(command)
        if "install" not in words or "-e" not in words:
            continue
        extras = re.fullmatch(r"\.\[(.*)\]", words[words.index("-e") + 1])
        problems = []
        if words[:2] != ["cd", remote]:
            problems.append(f"`{command}` does not run in the uploaded tree {remote}")
        if "constraints.txt" not in {words[i + 1] for i, w in enumerate(words[:-1])
                                     if w in ("-c", "--constraint")}:
            problems.append(f"`{command}` ignores constraints.txt")
        if f"{venv}/bin/python" not in map(home, words):
            problems.append(f"`{command}` does not install into {venv}")
        wanted = {"cluster", "video"}
        if not extras or not wanted <= set(extras.group(1).split(",")):
            problems.append(f"`{command}` lacks the extras {sorted(wanted)}")
        elif not set(extras.group(1).split(",")) <= set(pyproject["project"]["optional-dependencies"]):
            problems.append(f"`{command}` names extras pyproject.toml does not define")
        return problems
    return ["no `pip install ... -e .[...]` among the workers' setup commands"]


def gpu_problems(config: dict) -> list[str]:
    """GPU node types start at zero nodes, declare the GPUs their machine has, use an image with
    a driver new enough for the pinned torch, and wait for that driver before Ray starts."""
    full = prepared(config)
    gpus = gpu_node_types(config)
    problems = [] if gpus else ["no node type declares a GPU"]
    for name, spec in gpus.items():
        node = spec["node_config"]
        if spec["min_workers"] != 0:
            problems.append(f"{name}: min_workers {spec['min_workers']}, not 0 (on demand)")
        if full["provider"]["type"] == "aws":
            machine, table = node.get("InstanceType"), AWS_GPUS
            if "nvidia-driver" not in node.get("ImageId", ""):
                problems.append(f"{name}: ImageId {node.get('ImageId')} is no NVIDIA-driver AMI")
        else:
            machine, table = node.get("machineType"), GCP_GPUS
            if (node.get("scheduling") or {}).get("onHostMaintenance") != "TERMINATE":
                problems.append(f"{name}: GPU VMs need scheduling.onHostMaintenance TERMINATE")
            images = [d["initializeParams"]["sourceImage"] for d in node.get("disks", ())
                      if d.get("boot")]
            drivers = [int(m) for i in images for m in re.findall(r"nvidia-(\d+)", i)]
            if not drivers or min(drivers) < MIN_DRIVER:
                problems.append(f"{name}: boot image {images} has no NVIDIA driver >= {MIN_DRIVER}")
        attached = sum(a.get("acceleratorCount", 0) for a in node.get("guestAccelerators", ()))
        has = table.get(machine, 0) + attached
        if has != spec["resources"]["GPU"]:
            problems.append(f"{name}: {machine} has {has} GPU(s), resources say "
                            f"{spec['resources']['GPU']}")
        if not any("nvidia-smi" in c for c in spec.get("initialization_commands", ())):
            problems.append(f"{name}: Ray may start before the NVIDIA driver is up")
    return problems


def disk_problems(config: dict) -> list[str]:
    """GCP: every boot disk is a type G2 machines take (no pd-standard, the API's default),
    in the zone the nodes are created in (a disk type in another zone fails the launch)."""
    full = prepared(config)
    zone = full["provider"]["availability_zone"]
    problems = []
    for name, spec in full["available_node_types"].items():
        for disk in spec["node_config"].get("disks", ()):
            disk_type = disk.get("initializeParams", {}).get("diskType", "pd-standard")
            if disk_type != f"zones/{zone}/diskTypes/pd-balanced" and \
                    not re.fullmatch(rf"zones/{zone}/diskTypes/(pd-ssd|hyperdisk-balanced)", disk_type):
                problems.append(f"{name}: boot disk type {disk_type} (zone {zone})")
    return problems


def weights_problems(config: dict) -> list[str]:
    """Head and workers both fetch the pretrained weights (the driver checks them on the head)."""
    full = prepared(config)
    problems = []
    for role in ("head_setup_commands", "worker_setup_commands"):
        if not any("WEIGHTS" in c and "load_state_dict_from_url" in c for c in full[role]):
            problems.append(f"{role}: no command fetches the pretrained weights")
    return problems


def shell_problems(config: dict) -> list[str]:
    """Every command parses as bash (a YAML ` #` or `: ` inside a plain scalar mangles one)."""
    problems = []
    for command in all_commands(config):
        if not isinstance(command, str):
            problems.append(f"not a string: {command!r}")
            continue
        run = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        if run.returncode:
            problems.append(f"`{command}`: {run.stderr.strip()}")
    return problems


# ---- the shipped files ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_passes_rays_own_schema(name):
    full = prepared(load(name))
    validate_config(full)
    assert full["provider"]["type"] == name


def test_schema_check_is_live():
    """A misspelt field fails validation: validate_config really applies the schema."""
    config = load("aws")
    config["available_node_types"]["gpu_worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepared(config))


def test_local_provider_keeps_every_lab_machine():
    """provider: local has one node type; Ray joins every listed worker and keeps it, so the
    GPUs are visible when a sweep starts (there is no node type to launch on demand)."""
    config = load("local")
    assert "available_node_types" not in config  # Ray's prepare_local refuses them
    full = prepared(config)
    (node_type,) = full["available_node_types"].values()
    workers = len(config["provider"]["worker_ips"])
    assert node_type["min_workers"] == node_type["max_workers"] == workers >= 1


@pytest.mark.parametrize("name", CONFIGS)
def test_head_schedules_no_trials(name):
    assert head_problems(load(name)) == []


@pytest.mark.parametrize("name", CLOUD)
def test_nodes_have_cloud_credentials(name):
    assert credential_problems(load(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_upload_leaves_venv_results_and_caches_behind(name):
    assert upload_problems(load(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_every_node_uses_python_311_from_one_venv(name):
    assert python_problems(load(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_install_uses_constraints(name):
    assert install_problems(load(name)) == []


def test_constraints_pin_the_cluster_stack():
    """The laptop (`pip install -c constraints.txt ray`) and the nodes get the same Ray."""
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert {"ray", "torch", "torchvision"} <= set(pins)


@pytest.mark.parametrize("name", CLOUD)
def test_gpu_workers_on_demand_with_their_gpu(name):
    assert gpu_problems(load(name)) == []


def test_gcp_disks_suit_g2_in_the_nodes_zone():
    assert disk_problems(load("gcp")) == []


@pytest.mark.parametrize("name", CLOUD)
def test_the_sweep_finds_node_types_for_every_preset(name):
    """What `run --address auto` reads from the head's launcher config (orchestrator.cluster_fit):
    each preset's per-trial request fits a node type the autoscaler can start, so none is
    dropped to CPU or refused."""
    from orchestrator.cluster_fit import node_types_from_config
    from search_spaces.registry import load_experiment, preset_names

    types = node_types_from_config(prepared(load(name)))
    for preset in preset_names():
        need = load_experiment(preset).resources
        assert any(t.holds(need.cpu, need.gpu) for t in types), (preset, need, types)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_node_fetches_the_weights(name):
    assert weights_problems(load(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_commands_parse_as_shell(name):
    assert shell_problems(load(name)) == []


def test_weights_command_reads_the_products_cache_paths(tmp_path, monkeypatch):
    """The setup command's Python runs, and finds exactly the files the product will look for:
    with those files in place it downloads nothing (there is no network here)."""
    import torch

    from trainables.models.video.weights import WEIGHTS, weight_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for key in WEIGHTS:
        weight_path(key).parent.mkdir(parents=True, exist_ok=True)
        torch.save({}, weight_path(key))
    codes = set()
    for name in CONFIGS:
        command = next(c for c in prepared(load(name))["head_setup_commands"] if "WEIGHTS" in c)
        words = shlex.split(command)
        codes.add(words[words.index("-c") + 1])
    for code in codes:  # the three files share one command: one interpreter start
        run = subprocess.run([sys.executable, "-c", code], env=dict(os.environ),
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize("name", CONFIGS)
def test_bashrc_line_puts_the_venv_first_once(name, tmp_path):
    """Run twice (a second `ray up`), the ~/.bashrc line is there once, and a shell that reads
    ~/.bashrc (as Ray's `ray start` and `ray attach` do) finds the venv's bin first."""
    full = prepared(load(name))
    (line,) = [c for c in full["head_setup_commands"] if ".bashrc" in c and "PATH=" in c]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run(["bash", "-c", line], env=env, check=True)
    assert (tmp_path / ".bashrc").read_text().count("PATH=") == 1
    path = subprocess.run(["bash", "-c", 'source ~/.bashrc; printf %s "$PATH"'], env=env,
                          capture_output=True, text=True, check=True).stdout
    venv = subprocess.run(["bash", "-c", f"printf %s {venv_of(load(name))}"], env=env,
                          capture_output=True, text=True, check=True).stdout
    assert path.split(":")[0] == f"{venv}/bin"


@pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync")
@pytest.mark.parametrize("name", CONFIGS)
def test_rsync_with_rays_arguments_leaves_them_behind(name, tmp_path):
    """The real rsync, with the exclude/filter arguments Ray's ssh runner builds."""
    full = prepared(load(name))
    source, target = tmp_path / "repo", tmp_path / "node"
    for rel in [*NOT_UPLOADED, *UPLOADED]:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text("x")
    shutil.copy(REPO / ".gitignore", source / ".gitignore")
    args = SSHCommandRunner._create_rsync_filter_args(
        None, {"rsync_exclude": full["rsync_exclude"], "rsync_filter": full["rsync_filter"]})
    subprocess.run(["rsync", "-a", *args, f"{source}/", f"{target}/"], check=True)
    sent = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert sent == {*UPLOADED, ".gitignore"}


HEADER_RUN = re.compile(r"^#\s+(python -m orchestrator .*)$", re.MULTILINE)


@pytest.mark.parametrize("name", CONFIGS)
def test_header_commands_are_valid_cli_calls(name):
    """The commands each file's header tells a user to type parse with the product's CLI."""
    from orchestrator.cli import build_parser

    text = (REPO / CONFIGS[name]).read_text()
    calls = [shlex.split(m)[3:] for m in HEADER_RUN.findall(text)]
    assert any(c[0] == "run" for c in calls) and f"ray up {CONFIGS[name]}" in text
    for argv in calls:
        build_parser().parse_args(argv)
    runs = [c for c in calls if c[0] == "run"]
    if name != "local":
        scheme = {"aws": "s3://", "gcp": "gs://"}[name]
        (run,) = runs
        args = build_parser().parse_args(run)
        assert args.address == "auto"
        assert args.data_root.startswith(scheme) and args.storage.startswith(scheme)


# ---- each checker notices the breakage it is for ---------------------------------------------


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


def _edit_commands(key: str, old: str, new: str) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        config[key] = [c.replace(old, new) for c in config[key]]
    return mutate


def _move_weights_to_workers(config: dict) -> None:
    weights = [c for c in config["setup_commands"] if "WEIGHTS" in c]
    config["setup_commands"] = [c for c in config["setup_commands"] if "WEIGHTS" not in c]
    config["worker_setup_commands"] = [*config["worker_setup_commands"], *weights]


DELETE = object()
NODES = "available_node_types"
BREAKAGES = [
    ("aws", head_problems, _set(f"{NODES}.head.resources", {})),
    ("gcp", head_problems, _set(f"{NODES}.head.resources", {"CPU": 4})),
    ("aws", head_problems, _edit_commands("head_start_ray_commands", "--head", "--head --num-cpus=4")),
    ("local", head_problems, _edit_commands("head_start_ray_commands", " --num-cpus=0", "")),
    ("aws", credential_problems, _set(f"{NODES}.gpu_worker.node_config.IamInstanceProfile", DELETE)),
    ("aws", credential_problems, _set(f"{NODES}.head.node_config.IamInstanceProfile", DELETE)),
    ("gcp", credential_problems, _set(f"{NODES}.gpu_worker.node_config.serviceAccounts",
                                      [{"email": "a@b", "scopes": ["https://www.googleapis.com/auth/compute"]}])),
    ("aws", upload_problems, _set("rsync_exclude", ["runs", ".git"])),
    ("gcp", upload_problems, _set("rsync_filter", [])),
    ("local", upload_problems, _set("file_mounts", {"~/attention-orchestrator": "./orchestrator"})),
    ("aws", python_problems, _edit_commands("setup_commands", "--python 3.11", "--python 3.10")),
    ("gcp", python_problems, _edit_commands("setup_commands", "python install 3.11", "python install 3.12")),
    ("local", python_problems, _edit_commands("setup_commands", "~/.local/bin/uv pip install --python "
                                              "~/.venvs/attention-orchestrator-$(hostname)/bin/python",
                                              "python3 -m pip install")),
    ("aws", python_problems, _set("setup_commands", [])),
    ("aws", install_problems, _edit_commands("setup_commands", "-c constraints.txt ", "")),
    ("gcp", install_problems, _edit_commands("setup_commands", '".[cluster,video]"', '".[cluster]"')),
    ("aws", gpu_problems, _set(f"{NODES}.gpu_worker.min_workers", 1)),
    ("aws", gpu_problems, _set(f"{NODES}.gpu_worker.node_config.InstanceType", "m6i.2xlarge")),
    ("aws", gpu_problems, _set(f"{NODES}.gpu_worker.resources", {"CPU": 8, "GPU": 4})),
    ("aws", gpu_problems, _set(f"{NODES}.gpu_worker.initialization_commands", [])),
    ("gcp", gpu_problems, _set(f"{NODES}.gpu_worker.node_config.scheduling", {})),
    ("gcp", gpu_problems, _set(f"{NODES}.gpu_worker.resources", {"CPU": 8})),
    ("gcp", disk_problems, _set("provider.availability_zone", "us-central1-b")),
    ("gcp", disk_problems, _set(f"{NODES}.gpu_worker.node_config.disks",
                                [{"boot": True, "initializeParams": {"diskSizeGb": 200}}])),
    ("aws", weights_problems, _move_weights_to_workers),
    ("local", shell_problems, _set("head_setup_commands", ["echo 'export PATH=x  # venv"])),
]


@pytest.mark.parametrize(("name", "checker", "mutate"), BREAKAGES,
                         ids=[f"{n}-{c.__name__}-{i}" for i, (n, c, _) in enumerate(BREAKAGES)])
def test_checker_catches(name, checker, mutate):
    config = load(name)
    assert checker(config) == []
    mutate(config)
    assert checker(config) != []
