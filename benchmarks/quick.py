"""Every benchmark end to end on tiny sizes with `--quick` (the figures mean nothing), so that one that no longer runs
fails `make test`. Three at a time, the slowest first (much of a quick run is waiting: servers, kernels, a browser);
each one's output is shown whole once it ends, with its seconds. `bench_matching.py` runs in the peers' venv where
`make bench` made one. Exits 1 if any failed.

Run: `.venv/bin/python benchmarks/quick.py [name ...]` (default: all of them)."""
import os, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
# Slowest first, as a clean clone's `make test` measured them (bench_indicators compiles vectorbt's indicators, the peer's,
# cold); a benchmark not named here starts first.
SLOWEST_FIRST = ["bench_indicators", "bench_text", "bench_hub", "bench_jobs", "bench_apps", "bench_vision", "bench_sweep", "bench_voice",
                 "bench_service", "bench_matching", "bench_codegen", "bench_resume", "bench_realestate", "bench_retention", "bench_ws",
                 "gpu_check"]
HELPERS = {"quick", "timing"}
BENCHMARKS = sorted((p.stem for p in HERE.glob("*.py") if p.stem not in HELPERS),
                    key=lambda n: SLOWEST_FIRST.index(n) if n in SLOWEST_FIRST else -1)
PEERS = HERE.parent/".venv-peers"/"bin"/"python"

def run(name) -> tuple:
    "Run one benchmark with --quick in a data folder of its own; (name, ok, seconds, output)."
    python = str(PEERS) if name == "bench_matching" and PEERS.exists() else sys.executable
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"aip-{name}-", ignore_cleanup_errors=True) as data:
        done = subprocess.run([python, str(HERE/f"{name}.py"), "--quick"], env=os.environ | {"AIPLATFORM_PLATFORM__DATA_DIR": data},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return name, done.returncode == 0, time.monotonic() - start, f"== benchmarks/{name}.py --quick ({python})\n{done.stdout}"

def main(names):
    unknown = set(names) - set(BENCHMARKS)
    if unknown: sys.exit(f"unknown benchmark {sorted(unknown)[0]!r}; expected some of: {', '.join(BENCHMARKS)}")
    failed = []
    with ThreadPoolExecutor(3) as pool:
        for name, ok, seconds, output in pool.map(run, [b for b in BENCHMARKS if b in names or not names]):
            print(output + f"-- {name}: {seconds:.0f} s" + ("" if ok else f"\nFAILED: benchmarks/{name}.py --quick"), flush=True)
            if not ok: failed.append(name)
    if failed: sys.exit(f"failed: {', '.join(failed)}")

if __name__ == "__main__": main(sys.argv[1:])
