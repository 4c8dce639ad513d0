"""How many CPU threads to use: one rule for torch's intra-op threads and automatically sized worker pools.

torch starts one thread per core whatever else runs there. On a shared or busy machine the threads then
wait for each other at every operator (with two busy processes on 2 cores, a demo training iteration took
twice as long on torch's 2 threads as on 1; see benchmarks/bench_threads.py), so the count follows the
cores actually free.
"""
from __future__ import annotations

import os
import statistics
import time
import warnings
from .errors import ConfigError

ENV_VAR = "GAITREC_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; a container's limit shows here, not in cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={text!r} must be a positive number of threads")
    return value


def local_processes(environ: dict | None = None) -> int:
    """Processes ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``; 1 outside torchrun)."""
    environ = os.environ if environ is None else environ
    try:
        return max(1, int(environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    except ValueError:
        return 1


def tasks_running(stat_text: str) -> int | None:
    """The kernel's count of tasks running or ready to run now (``procs_running`` of ``/proc/stat``)."""
    for line in stat_text.splitlines():
        if line.startswith("procs_running "):
            return int(line.split()[1])
    return None


def current_load(processes: int = 1, readings: int = 5, interval: float = 0.01) -> float:
    """Tasks running or ready to run on this machine now besides this process and its ``processes - 1``
    torchrun siblings: the median of a few readings of the kernel's count over about 50 ms (Linux), else the
    1-minute load average.

    The load average trails the machine by a minute: right after a heavy job ends it still reports the job,
    and a process started then took one thread on two idle cores."""
    counts = []
    for reading in range(readings):
        try:
            with open("/proc/stat") as f:
                count = tasks_running(f.read())
        except OSError:
            count = None
        if count is None:
            break
        counts.append(count)
        if reading + 1 < readings:
            time.sleep(interval)
    if counts:
        return max(0.0, statistics.median(counts) - processes)
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _setting_read(environ: dict) -> str | None:
    """The variable that sets the count, if one is set: ``GAITREC_THREADS``, else ``OMP_NUM_THREADS`` (not
    under torchrun with several processes per machine; see ``choose_threads``)."""
    names = (ENV_VAR,) if local_processes(environ) > 1 else (ENV_VAR, "OMP_NUM_THREADS")
    return next((name for name in names if environ.get(name, "").strip()), None)


def choose_threads(environ: dict | None = None, cores: int | None = None, load: float | None = None) -> int:
    """Threads for one process: ``GAITREC_THREADS`` if set, else ``OMP_NUM_THREADS`` if set, else the cores
    not busy with other work (usable cores minus ``current_load``, at least 1), shared among the processes
    torchrun started on this machine.

    Under torchrun with several processes per machine ``OMP_NUM_THREADS`` is not read: torchrun sets it to 1
    itself when it is unset, so there it says nothing about the user's wish (and a value exported for
    one-process runs would put that many threads in every process). ``GAITREC_THREADS`` still sets it.
    """
    environ = os.environ if environ is None else environ
    asked = _setting_read(environ)
    if asked:
        return _positive_int(environ[asked].strip(), asked)
    cores = usable_cores() if cores is None else cores
    if load is None:
        load = current_load(local_processes(environ))
    free = max(1, min(cores, round(cores - load)))
    return max(1, free // local_processes(environ))


def loader_workers(configured: int, threads: int | None = None, cores: int | None = None,
                   environ: dict | None = None) -> int:
    """Worker processes for a loader that feeds forwards on the CPU: at most ``configured``, and only as many
    as the cores left free by the intra-op threads of this process and its torchrun siblings; none when
    those threads take every core. There a worker only takes turns with a compute thread, and every
    operator's threads wait for the one that lost its core: on 2 cores a whole `gaitrec test` ran 2.5%
    (GaitPart) and 4% (GaitSet) faster with its sequences read in the process, reading being about 1% of
    the run (benchmarks/RESULTS.md, "Test-time loading on the CPU")."""
    import torch

    threads = torch.get_num_threads() if threads is None else threads
    cores = usable_cores() if cores is None else cores
    spare = cores - threads * local_processes(os.environ if environ is None else environ)
    return max(0, min(configured, spare))


def apply_thread_count(environ: dict | None = None) -> int:
    """Set torch's intra-op thread count by ``choose_threads`` and return it (call once, at start-up)."""
    import torch

    environ = os.environ if environ is None else environ
    threads = choose_threads(environ)
    processes, cores = local_processes(environ), usable_cores()
    asked = _setting_read(environ)
    if asked and threads > 1 and threads * processes > cores:  # the rule itself never asks for more
        warnings.warn(f"{asked}: {processes} process(es) x {threads} thread(s) on {cores} core(s), the threads "
                      f"will wait for each other; unset {asked} to share the free cores")
    torch.set_num_threads(threads)
    return threads
