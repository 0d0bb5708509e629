"""Memory: peak RSS of a trial, of the search driver, and of the MLflow tracking server.

- Trial: ``train()`` in a fresh subprocess with the malloc settings of a search's trial workers
  (``search._ray.MALLOC_TUNABLES``), peak RSS = ``ru_maxrss`` of that process at the end;
  baseline: the hand-written loop of bench/trainable.py (plain CE) on the same config, data and
  model, also in a fresh subprocess. Two trials: digits/MLP (short) and VIMH/SimpleCNN on 3000
  samples (long, 1 epoch: the peak is reached in the first epoch and the evaluations).
- Driver: ``python -m search run`` (2 short digits trials, run at the same time), with its process tree
  (Ray's GCS and raylet, the trial workers) sampled every 0.1 s from /proc; the driver's peak is
  its own ``VmHWM``, the tree's the largest sampled sum of ``VmRSS``. Baseline: the default Ray
  Tune set-up of bench/search_overhead.py (``reuse_actors=False``, no MLflow) on the same trials.
- MLflow server: ``mlflow/serve --port <free>`` (one worker, no job runner) on the repository's
  store; the RSS of its process tree summed after start-up and a few requests (health, the UI page,
  experiment and run searches). Baseline: ``mlflow server`` with its defaults (4 workers) on the
  same store.

Every measurement is repeated REPEATS times (memory varies little; the median is kept).

    .venv/bin/python bench/memory.py     -> table on stdout, bench/results/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, figure, machine, print_ratios, write  # noqa: E402

from search._ray import MALLOC_TUNABLES  # noqa: E402

PYTHON = sys.executable
SCRIPT = Path(__file__).resolve()
REPEATS = 3
TRIAL_TARGET = 1.10  # ours / hand-written loop
DRIVER_TARGET = 1.10  # search driver / default Tune driver
SERVER_TARGET = 0.5  # mlflow/serve / default mlflow server
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

TRIALS: dict[str, dict[str, Any]] = {
    "short": {
        "data.kind": "digits", "data.val_fraction": 0.15,
        "model.kind": "mlp", "model.mlp.hidden": 32, "model.mlp.dropout": 0.0,
        "train.epochs": 3, "train.batch_size": 64, "train.lr": 3e-3, "train.patience": 4,
        "heads.digit.loss": "ce", "heads.thickness.loss": "ce", "heads.smoothness.loss": "ce",
        "objective.metric": "val/acc_mean", "objective.mode": "max",
    },
    "long": {
        "data.kind": "vimh", "data.path": str(ROOT / "data" / "vimh-default"), "data.limit": 3000,
        "data.val_fraction": 0.1,
        "model.kind": "simple_cnn", "model.simple_cnn.hidden": 64, "model.simple_cnn.dropout": 0.1,
        "train.epochs": 1, "train.batch_size": 64, "train.lr": 1e-3, "train.grad_clip": 1.0, "train.patience": 3,
        "heads.note_number.loss": "ce", "heads.note_velocity.loss": "ce", "heads.filter_cutoff.loss": "ce",
        "objective.metric": "val/mae_norm_mean", "objective.mode": "min",
    },
}
DRIVER_TRIALS = 2


# ---------------------------------------------------------------- children

def _trial_child(side: str, config: dict[str, Any]) -> int:
    if side == "ours":
        from trainables.train import train

        train(config, report=lambda metrics: None)
    else:
        import trainable  # bench/trainable.py: the hand-written loop

        trainable.baseline(config, losses="ce")
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


# ---------------------------------------------------------------- /proc helpers

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree(pid: int) -> list[int]:
    children, found, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_mb(pid: int) -> float:
    return sum(_status_kb(p, "VmRSS") for p in _tree(pid)) / 1024


class _Sampler(threading.Thread):
    """Samples a process tree every 0.1 s: the root's own peak (VmHWM) and the largest tree sum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.root_peak_mb = 0.0
        self.tree_peak_mb = 0.0
        self.worker_peak_mb = 0.0  # the largest single process other than the root
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _tree(self.pid)
            total = 0
            for p in pids:
                rss = _status_kb(p, "VmRSS")
                total += rss
                if p != self.pid:
                    self.worker_peak_mb = max(self.worker_peak_mb, rss / 1024)
            self.root_peak_mb = max(self.root_peak_mb, _status_kb(self.pid, "VmHWM") / 1024)
            self.tree_peak_mb = max(self.tree_peak_mb, total / 1024)
            time.sleep(0.1)


# ---------------------------------------------------------------- measurements

def _trial(side: str, config: dict[str, Any]) -> float:
    env = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES} if side == "ours" else None
    out = subprocess.run([PYTHON, str(SCRIPT), "--child", side, "--config", json.dumps(config)],
                         cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the {side} trial must exit 0, but got {out.returncode}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["maxrss_mb"]


def _sampled(command: list[str], *, log: Path) -> dict[str, float]:
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        sampler = _Sampler(process.pid)
        sampler.start()
        code = process.wait()
        sampler.stop.set()
        sampler.join()
    if code != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... must exit 0, but got {code}:\n{log.read_text()[-3000:]}")
    return {"driver_peak_mb": sampler.root_peak_mb, "tree_peak_mb": sampler.tree_peak_mb,
            "largest_child_mb": sampler.worker_peak_mb}


def _drivers(tmp: Path, repeat: int) -> dict[str, dict[str, float]]:
    import search_overhead  # bench/search_overhead.py: the same spaces and the default-Tune child

    work = tmp / f"driver-{repeat}"
    work.mkdir()
    space_file, configs = search_overhead.space_file(work, "short", 2, trials=DRIVER_TRIALS)
    (work / "configs.json").write_text(json.dumps(configs))
    search = _sampled([PYTHON, "-m", "search", "run", str(space_file), "--storage", str(work / "runs"),
                       "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--num-cpus", "2"], log=work / "search.log")
    tune = _sampled([PYTHON, str(ROOT / "bench" / "search_overhead.py"), "--child", "tune", "--configs",
                     str(work / "configs.json"), "--concurrency", "2", "--out", str(work / "tune-done.json")],
                    log=work / "tune.log")
    return {"search": search, "tune_default": tune}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None) -> None:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _server(command: list[str], port: int, *, cwd: Path, log: Path) -> float:
    """Start a tracking server, wait until it answers, make a few requests, sum its tree's RSS."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                _get(f"{base}/health")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the MLflow server must answer on {base}, but it did not:\n"
                                       f"{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        for _ in range(3):
            _get(f"{base}/")
            _get(f"{base}/api/2.0/mlflow/experiments/search?max_results=100")
            _get(f"{base}/api/2.0/mlflow/runs/search", data=json.dumps({"experiment_ids": ["0"], "max_results": 50}).encode())
        time.sleep(1.0)  # let workers settle after the requests
        return _tree_rss_mb(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the server and its workers only
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _servers(tmp: Path, repeat: int) -> dict[str, float]:
    lean_port, default_port = _free_port(), _free_port()
    store = ROOT / "mlflow" / "mlflow.db"
    lean = _server([str(ROOT / "mlflow" / "serve"), "--port", str(lean_port)], lean_port, cwd=ROOT,
                   log=tmp / f"serve-{repeat}.log")
    default_dir = tmp / f"default-server-{repeat}"  # its ./mlartifacts go here, not into the repository
    default_dir.mkdir()
    default = _server([str(Path(PYTHON).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}",
                       "--host", "127.0.0.1", "--port", str(default_port)], default_port, cwd=default_dir,
                      log=tmp / f"default-server-{repeat}.log")
    return {"serve": lean, "default_server": default}


def run() -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(), "raw": {"repeats": REPEATS}, "ratios": {}}
    raw = result["raw"]
    for name, case in TRIALS.items():
        config = {**case, "train.seed": 0, "train.threads": 1, "train.device": "cpu", "energy_weight": 0.0}
        runs: dict[str, list[float]] = {"ours": [], "handwritten": []}
        for _ in range(REPEATS):
            for side in runs:
                runs[side].append(_trial(side, config))
        raw[f"trial_{name}_peak_rss_mb"] = runs
    with tempfile.TemporaryDirectory(prefix="losstune-bench-") as name:
        tmp = Path(name)
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}").search_experiments()
        drivers = [_drivers(tmp, k) for k in range(REPEATS)]
        servers = [_servers(tmp, k) for k in range(REPEATS)]
    raw["driver_peak_rss_mb"] = {side: [d[side] for d in drivers] for side in ("search", "tune_default")}
    raw["mlflow_server_tree_rss_mb"] = {side: [s[side] for s in servers] for side in ("serve", "default_server")}

    def med(values: list[float]) -> float:
        return statistics.median(values)

    ratios = result["ratios"]
    for name in TRIALS:
        runs = raw[f"trial_{name}_peak_rss_mb"]
        ratios[f"trial_{name}_peak_rss_vs_handwritten"] = figure(med(runs["ours"]) / med(runs["handwritten"]),
                                                                 TRIAL_TARGET, "lower")
    driver = raw["driver_peak_rss_mb"]
    for key in ("driver_peak_mb", "tree_peak_mb"):
        ratios[f"search_{key.removesuffix('_mb')}_rss_vs_tune_default"] = figure(
            med([d[key] for d in driver["search"]]) / med([d[key] for d in driver["tune_default"]]),
            DRIVER_TARGET, "lower")
    server = raw["mlflow_server_tree_rss_mb"]
    ratios["mlflow_serve_rss_vs_default_server"] = figure(med(server["serve"]) / med(server["default_server"]),
                                                          SERVER_TARGET, "lower")
    return result


def main() -> int:
    result = run()
    raw = result["raw"]
    print(f"{'measurement (median MB)':<46}{'ours':>10}{'baseline':>10}")
    for name in TRIALS:
        runs = raw[f"trial_{name}_peak_rss_mb"]
        print(f"{f'trial {name} peak RSS (vs hand-written)':<46}"
              f"{statistics.median(runs['ours']):>10.0f}{statistics.median(runs['handwritten']):>10.0f}")
    driver = raw["driver_peak_rss_mb"]
    for key, label in (("driver_peak_mb", "driver peak RSS (vs default Tune)"),
                       ("tree_peak_mb", "search process tree peak (vs default Tune)"),
                       ("largest_child_mb", "largest Ray process (vs default Tune)")):
        print(f"{label:<46}{statistics.median(d[key] for d in driver['search']):>10.0f}"
              f"{statistics.median(d[key] for d in driver['tune_default']):>10.0f}")
    server = raw["mlflow_server_tree_rss_mb"]
    print(f"{'MLflow server tree RSS (serve vs default)':<46}{statistics.median(server['serve']):>10.0f}"
          f"{statistics.median(server['default_server']):>10.0f}")
    print_ratios(result)
    write(result, "memory")
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--child", choices=("ours", "handwritten"), required=True)
        parser.add_argument("--config", required=True)
        args = parser.parse_args()
        raise SystemExit(_trial_child(args.child, json.loads(args.config)))
    raise SystemExit(main())
