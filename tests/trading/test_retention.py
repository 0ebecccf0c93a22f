"""A market that forgets old done orders (`keep_done`) killed with SIGKILL at any point, even between compacting its
client ids and its ledger: started again, it calls no order lost, knows exactly the ids of the orders it kept, keeps
the open order, and never gives an order id twice."""
import subprocess, sys
import pytest
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Order

CHILD = """
import os, signal, sys
from aiplatform.trading.ledger import Ledger
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Order
folder, kill_after = sys.argv[1], sys.argv[2]
if kill_after == "between-compactions":  # die once the first of the two files is compacted the third time, before the other
    from aiplatform.trading.client_ids import ClientIds
    compacted = []
    def then_die(compact):
        def compact_then_die(self, *args):
            compact(self, *args)
            compacted.append(type(self).__name__)
            if len(compacted) == 5: os.kill(os.getpid(), signal.SIGKILL)
        return compact_then_die
    Ledger.compact, ClientIds.compact = then_die(Ledger.compact), then_die(ClientIds.compact)
m = Market(folder, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
order = lambda cid, side, price: m.submit(1, Order(cid=cid, symbol="DEMO", side=side, price=price, qty=1), lambda *a: None)
order("rest", "sell", 200)
for i in range(2_000):
    order(f"s{i}", "sell", 100), order(f"b{i}", "buy", 100)
    m.flush()
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
