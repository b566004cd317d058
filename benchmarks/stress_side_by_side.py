"""Repeat a side-by-side (forked workers) test many times, each in its own pytest process, and count how each ended.

A fork that copies a lock held by another thread (MKL's buffer lock while an OpenMP team is ending) makes a worker
spin for ever, and a daemon thread torn down inside native code at exit aborts the process; both are races, so one
green run proves little. This runs the test ``--runs`` times, each under ``--timeout`` seconds, and counts: passed
(exit 0), failed (pytest's own failure codes), aborted (killed by a signal, e.g. SIGABRT: 'terminate called without
an active exception'), hung (still running at the timeout: its processes and their forked workers are dumped with
py-spy when it is installed, then killed).

Writes ``reports/bench/stress/side_by_side.md`` (and ``.json``, the per-run record: not tidy metric rows, so it
lives below ``reports/bench``, whose top-level JSON files the analysis stage reads as rows). The machine's load is not known afterwards: say it
with ``--machine``.

    python benchmarks/stress_side_by_side.py [--runs 20] [--repo PATH] [--test tests/test_hoi_train.py -k side_by_side]

``--repo`` runs the test of another checkout (e.g. ``git worktree add /tmp/old <commit>``) with this venv, to compare
a change with the code before it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipd_kit.machine import machine_facts  # noqa: E402


def _tree(pid: int) -> list[int]:
    """pid and its descendants (Linux /proc)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def one_run(test: list[str], timeout: float, dump_dir: Path, i: int, repo: Path = ROOT) -> dict:
    t0 = time.time()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:timeout",
                          *test], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
        outcome = "passed" if rc == 0 else ("aborted" if rc < 0 else "failed")
        tail = out.decode(errors="replace").strip().splitlines()[-2:]
    except subprocess.TimeoutExpired:
        outcome, rc, tail = "hung", None, []
        spy = shutil.which("py-spy")
        dump = dump_dir / f"hang-{i}.txt"
        with dump.open("w") as f:
            for pid in _tree(p.pid):
                f.write(f"=== {pid}\n")
                f.flush()
                if spy:
                    subprocess.run([spy, "dump", "--native", "--pid", str(pid)], stdout=f, stderr=subprocess.STDOUT,
                                   timeout=60)
        tail = [f"stacks: {dump}"]
        os.killpg(p.pid, signal.SIGKILL)
        for pid in _tree(p.pid):  # forked workers outside the process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.communicate()
    return {"run": i, "outcome": outcome, "returncode": rc, "seconds": round(time.time() - t0, 1), "tail": tail}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds before a run counts as hung")
    ap.add_argument("--test", nargs=argparse.REMAINDER, default=["tests/test_hoi_train.py", "-k", "side_by_side"],
                    help="pytest arguments (last option)")
    ap.add_argument("--machine", default="", help="e.g. '2 cores, idle'")
    ap.add_argument("--repo", default=str(ROOT), help="checkout whose test runs (default: this one)")
    ap.add_argument("--load", type=int, default=0,
                    help="busy-loop processes kept running meanwhile (a loaded machine shifts the races' timing)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "stress" / "side_by_side"),
                    help="path stem of the .md / .json written (not directly in reports/bench: see above)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.load)]
    try:
        for i in range(1, a.runs + 1):
            r = one_run(a.test, a.timeout, out.parent, i, Path(a.repo))
            print(f"run {i}: {r['outcome']} (rc {r['returncode']}, {r['seconds']}s)", flush=True)
            runs.append(r)
    finally:
        for b in burners:
            b.kill()
    counts = {k: sum(r["outcome"] == k for r in runs) for k in ("passed", "failed", "aborted", "hung")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=a.repo, capture_output=True, text=True).stdout
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=a.repo,
                                capture_output=True, text=True).stdout.strip())
    facts = machine_facts()
    command = "python benchmarks/stress_side_by_side.py " + " ".join(
        x if x and " " not in x else repr(x) for x in (argv if argv is not None else sys.argv[1:]))
    rec = {"command": command, "load": a.load, "test": a.test, "runs": a.runs, "timeout_s": a.timeout, "counts": counts, "commit": commit.strip(),
           "dirty": dirty, "machine": a.machine, "cpu": facts.get("cpu"), "torch": (facts.get("torch") or {}).get("version"),
           "per_run": runs}
    Path(str(out) + ".json").write_text(json.dumps(rec, indent=1) + "\n")
    lines = ["# Side-by-side workers under repetition", "",
             f"`{command}` at commit {rec['commit']}{' (dirty)' if dirty else ''}; "
             f"{a.load} busy-loop processes beside it; machine: {a.machine or 'not stated'} "
             f"({(facts.get('cpu') or {}).get('logical_cpus')} logical CPUs, torch {rec['torch']}).", "",
             "| outcome | runs |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    lines += ["", "Each run is its own pytest process: passed = exit 0; aborted = killed by a signal (e.g. SIGABRT at "
              "exit); hung = still running after the timeout (stacks dumped beside this file)."]
    Path(str(out) + ".md").write_text("\n".join(lines) + "\n")
    print(json.dumps(counts))
    return 0 if counts["passed"] == a.runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
