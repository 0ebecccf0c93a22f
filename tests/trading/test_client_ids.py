"""Client order ids against a crash: a process assigning and flushing ids is killed (SIGKILL) at a random moment;
reopened, the file still has every id that process reported flushed, with the same order id, and no order id twice."""
import os, signal, subprocess, sys, time
import pytest
from aiplatform.trading.client_ids import ClientIds

WRITER = """
import random, sys
from aiplatform.trading.client_ids import ClientIds
ids, rng = ClientIds(sys.argv[1], fsync="never"), random.Random(int(sys.argv[2]))
for i in range(10**9):
    account = rng.randint(1, 5)
    order_id, new = ids.assign(account, f"c-{rng.randint(0, 5000)}")
    if rng.random() < 0.2:
        ids.flush()
        print(account, order_id, flush=True)  # reported only once flushed
"""

@pytest.mark.parametrize("seed", range(3))
def test_every_flushed_id_survives_a_kill(tmp_path, seed):
    path = tmp_path/"client_ids.tsv"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seed)], stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # writing: its imports (seconds on a busy machine) are behind it
    time.sleep(0.5 + seed * 0.3)
    os.kill(proc.pid, signal.SIGKILL)
    reported = (first + proc.communicate()[0]).split("\n")[:-1]  # a line cut by the kill is not a report
    assert len(reported) > 100
    ids = ClientIds(path)
    given = set(ids.ids.values())
    assert len(given) == len(ids.ids) and {int(line.split()[1]) for line in reported} <= given
    assert ids.next_id == max(given) + 1
    ids.close()
