"""Refuse a local --storage path that the cluster's other nodes cannot see, before any trial.

Why: every trial writes its checkpoints and artifacts to the run directory from whichever
node it runs on, and Tune keeps no copy on the head. A path that exists only on the
driver's disk would fail each remote trial on its own, minutes in. A marker written here
and read back by a task pinned to each node tells a shared filesystem (NFS, the same path
everywhere) from a local one in a second.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.storage import is_uri

CHECK_TIMEOUT_S = 30.0


def check_storage_visible(location: str) -> None:
    """UserError when ``location`` is a local path that some alive node cannot read."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if is_uri(location):
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
    folder = Path(location)
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = folder / f".node-visibility-{token}"
    marker.write_text(token)
    try:
        read = ray.remote(num_cpus=0, max_retries=0)(_read_marker)
        refs = [read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    n["NodeID"], soft=False)).remote(str(marker)) for n in nodes]
        try:
            seen = ray.get(refs, timeout=CHECK_TIMEOUT_S)
        except Exception as err:  # a node too busy or gone: say so rather than guess
            raise UserError(f"could not check that --storage {location} is visible from every "
                            f"node ({type(err).__name__}); use a bucket (--storage "
                            "s3://... or gs://...)") from None
    finally:
        marker.unlink(missing_ok=True)
    blind = [n.get("NodeManagerAddress", n["NodeID"]) for n, s in zip(nodes, seen, strict=True)
             if s != token]
    if blind:
        raise UserError(f"--storage {location} is a local path that {len(blind)} of "
                        f"{len(nodes)} nodes cannot see ({', '.join(blind)}); use a bucket "
                        "(--storage s3://... or gs://...) or a filesystem mounted at the same "
                        "path on every node")


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None
