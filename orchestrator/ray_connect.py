"""Start or join Ray for a sweep: fail fast on an address nobody answers, and keep Ray's
own logging for ``-v`` instead of a person's terminal.

Joining a cluster that is not there makes ``ray.init`` retry for minutes while its C++
client prints GCS warnings; a TCP probe of the address (a few seconds) and a watchdog on
the join turn that into one line saying what to check.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading

from orchestrator.errors import UserError

PROBE_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 25.0
EXIT_USAGE = 2
_RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air", "ray.data")


def quiet_ray(verbosity: int) -> None:
    """Ray's progress output and INFO logs off below -v; its warnings stay visible.

    Nothing is muted wholesale: a warning that shows in a normal run is a cause to fix
    (see the tests that run sweeps and check their output).
    """
    # Tune's own table reporter and result loggers: ProgressView and the Parquet sink
    # replace them (one line per trial; results as Parquet, not CSV/JSON per trial).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Tune's function trainables on the Train v1 session (the v2 one needs Ray Train).
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")
    if verbosity < 2:
        level = logging.WARNING
        for name in _RAY_LOGGERS:
            logging.getLogger(name).setLevel(level)


def address_to_probe(address: str) -> tuple[str, int] | None:
    """(host, port) a join to ``address`` connects to first; None: nothing to probe."""
    if address.startswith("ray://"):
        address = address[len("ray://"):]
    elif address in ("auto", "local"):
        from ray._private.services import canonicalize_bootstrap_address

        try:
            resolved = canonicalize_bootstrap_address(address)
        except ConnectionError:
            raise UserError(
                f"--address {address}: no running Ray cluster found on this machine; start "
                "one (`ray start --head` or `ray up cluster.yaml`) or give HOST:PORT") from None
        if resolved is None:
            return None
        address = resolved
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379), "
                        "ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """A one-line error in seconds when nothing listens at the cluster's address."""
    target = address_to_probe(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (
            err.strerror or type(err).__name__)
        raise UserError(
            f"--address {address}: cannot reach a Ray cluster at {host}:{port} ({reason}); "
            "check that its head node runs (`ray status` there), the port (GCS, default "
            "6379) and any firewall between here and it") from None


def _join_watchdog(address: str, timeout_s: float) -> threading.Timer:
    """Something answered the probe but may not be Ray's GCS: do not wait for minutes."""
    def give_up() -> None:
        print(f"error: --address {address}: no answer from a Ray cluster after {timeout_s:.0f} s "
              "(something listens there, but not Ray's GCS?); check the address and port",
              file=sys.stderr, flush=True)
        os._exit(EXIT_USAGE)

    timer = threading.Timer(timeout_s, give_up)
    timer.daemon = True
    return timer


def init_ray(address: str | None, verbosity: int) -> None:
    import ray

    quiet_ray(verbosity)
    if ray.is_initialized():
        return
    watchdog = None
    if address is not None:
        check_reachable(address)
        watchdog = _join_watchdog(address, JOIN_TIMEOUT_S)
        watchdog.start()
    try:
        # "local": a new instance of our own, as --address's help promises. With None Ray
        # would join whatever cluster `ray start` last recorded on this machine.
        ray.init(address=address or "local", include_dashboard=False,
                 log_to_driver=verbosity >= 2,
                 logging_level=logging.INFO if verbosity >= 2 else logging.WARNING,
                 configure_logging=True)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if verbosity < 2:
        for name in _RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        _drop_worker_death_notices()
        # A failed trial is one line from ProgressView naming its error.txt; Tune's own
        # ERROR record would print the whole traceback into the progress output.
        logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
        logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)


# How the raylet's page about a dead worker starts (one per lost worker, ~900 characters).
WORKER_DIED_NOTICE = "A worker died or was killed while executing a task"


def _drop_worker_death_notices() -> None:
    """Leave a lost worker to ProgressView's one line (retrying, or the trial's ERROR).

    Ray's driver prints every error the raylets publish, whatever ``log_to_driver`` says;
    this drops only the worker-death page, whose facts the progress line gives (Ray's
    own text stays in the trial's error.txt, and -v prints it as before).
    """
    from ray._private import worker

    original = getattr(worker.print_to_stdstream, "__wrapped__", worker.print_to_stdstream)

    def print_to_stdstream(data, ignore_prefix: bool):
        if data.get("pid") == "raylet" and any(
                str(line).startswith(WORKER_DIED_NOTICE) for line in data.get("lines", ())):
            return
        original(data, ignore_prefix)

    print_to_stdstream.__wrapped__ = original
    worker.print_to_stdstream = print_to_stdstream
