"""A market that forgets old done orders (`keep_done`) killed with SIGKILL at any point, even between putting its
compacted client ids and ledger in place: started again, it calls no order lost, knows exactly the ids of the orders
it kept, keeps the open order, and never gives an order id twice."""
import os, subprocess, sys, time
import pytest
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Order

CHILD = """
import os, signal, sys
from aiplatform.trading.ledger import Ledger
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Order
folder, kill_after = sys.argv[1], sys.argv[2]
if kill_after == "between-compactions":  # die once the first of the two files is swapped in the third time, before the other
    from aiplatform.trading.client_ids import ClientIds
    swapped = []
    def then_die(swap):
        def swap_then_die(self, *args):
            swap(self, *args)
            swapped.append(type(self).__name__)
            if len(swapped) == 5: os.kill(os.getpid(), signal.SIGKILL)
        return swap_then_die
    Ledger.swap, ClientIds.swap = then_die(Ledger.swap), then_die(ClientIds.swap)
m = Market(folder, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
order = lambda cid, side, price: m.submit(1, Order(cid=cid, symbol="DEMO", side=side, price=price, qty=1), lambda *a: None)
order("rest", "sell", 200)
for i in range(2_000):
    order(f"s{i}", "sell", 100), order(f"b{i}", "buy", 100)
    m.flush()
    if kill_after == "between-compactions" and m._compacting: m._swap_compacted(wait=True)  # the fifth swap comes, however slow the child
    if str(i) == kill_after: os.kill(os.getpid(), signal.SIGKILL)
"""

@pytest.mark.parametrize("kill_after", ["between-compactions", "49", "333", "1200"])
def test_a_killed_market_comes_back_with_what_it_kept(tmp_path, kill_after):
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), kill_after], capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    m = Market(tmp_path, keep_done=20)
    states = m.ledger.orders.values()
    assert [s.cid for s in states if s.status in ("lost", "new")] == []
    assert set(m.cids.ids) == {(s.account, s.cid) for s in states}
    assert m.order(1, "rest").status == "open" and m.engine.position(1, "DEMO").qty == 0
    assert len(m.ledger.accounts[1]) == 1 + 20  # the open one and the newest done ones
    next_id = m.cids.next_id
    assert next_id > max(m.ledger.orders)
    answers = []
    m.submit(1, Order(cid="s0", symbol="DEMO", side="buy", price=100, qty=1), lambda ok, state, error: answers.append(state.order_id))
    m.flush()
    assert answers == [next_id]  # s0 was forgotten: a new order, with a new id
    m.close()

def test_a_compaction_that_hangs_is_stopped_and_tried_again(tmp_path, monkeypatch):
    import aiplatform.trading.market as market_module
    from aiplatform.trading.ledger import Ledger
    monkeypatch.setattr(market_module, "COMPACTION_S", 0.5)
    write_compacted = Ledger.write_compacted
    monkeypatch.setattr(Ledger, "write_compacted", lambda self, tmp: time.sleep(3600))  # runs only in the child
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
    def trade(pairs, start):
        for i in range(start, start + pairs):
            for side in ("sell", "buy"): m.submit(1, Order(cid=f"{side}{i}", symbol="DEMO", side=side, price=100, qty=1), lambda *a: None)
            m.flush()
    trade(60, 0)
    hung, began = m._compacting, time.monotonic()
    while not list(tmp_path.glob("*.tmp")) and time.monotonic() - began < 5: time.sleep(0.01)
    assert hung and list(tmp_path.glob("*.tmp"))  # the child wrote the client ids, and hangs on the ledger
    time.sleep(max(0, 0.6 - (time.monotonic() - began)))
    trade(1, 60)  # the next batch stops it, drops its files, and goes on
    assert m._compacting is None and list(tmp_path.glob("*.tmp")) == []
    with pytest.raises(ChildProcessError): os.waitpid(hung, os.WNOHANG)  # reaped
    monkeypatch.setattr(Ledger, "write_compacted", write_compacted)
    trade(60, 61)  # the next snapshot compacts
    m.close()
    assert m._compacting is None and list(tmp_path.glob("*.tmp")) == []
    back = Market(tmp_path, keep_done=20)
    assert {s.cid for s in back.ledger.orders.values()} == {s.cid for s in m.ledger.orders.values()}
    assert (tmp_path/"client_ids.tsv").read_text().startswith("next\t\t")
    back.close()

def test_the_ledger_syncs_on_the_journals_thread_while_its_file_is_swapped(tmp_path, monkeypatch):
    "With `fsync = batch` the ledger is synced beside each journal sync, on the sync thread, while its compactions swap its file in on the loop: no sync ever meets a closed file, and a snapshot's own sync finds little left."
    import threading
    from aiplatform.trading.ledger import Ledger
    on_thread, sync = [], Ledger.sync
    def noted(self):
        if threading.current_thread() is not threading.main_thread(): on_thread.append(self._fd)
        sync(self)
    monkeypatch.setattr(Ledger, "sync", noted)
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=200, keep_done=20)
    for i in range(3_000):
        for side in ("sell", "buy"): m.submit(1, Order(cid=f"{side}{i}", symbol="DEMO", side=side, price=100, qty=1), lambda *a: None)
        m.flush()
        time.sleep(0.0002 if i % 50 == 0 else 0)  # now and then, time for the sync thread's turn
    compacted = m._compacted  # the file's size after its last compaction: 0 if it never was
    m.close()
    monkeypatch.undo()
    assert len(on_thread) > 10 and len(set(on_thread)) > 1 and compacted  # synced on the thread, on more than one file
    again = Market(tmp_path, [{"symbol": "DEMO"}], keep_done=20)
    assert again.order(1, "buy2999").status == "filled" and len(again.ledger.orders) <= 40 + 2
    again.close()
