"""A market that forgets old done orders (`keep_done`) killed with SIGKILL at any point, even between putting its
compacted client ids and ledger in place: started again, it calls no order lost, knows exactly the ids of the orders
it kept, keeps the open order, and never gives an order id twice; its files stay its owner's."""
import json, os, subprocess, sys, time
from contextlib import suppress
import pytest
from aiplatform.trading.engine import RiskLimits
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Cancel, Order

CHILD = """
import os, signal, sys
from aiplatform.trading.ledger import Ledger
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Cancel, Order
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
if kill_after == "while-a-snapshot-is-written":  # the child takes its time; the market dies meanwhile
    import time
    from aiplatform.trading.engine import Engine
    write = Engine.write_snapshot
    Engine.write_snapshot = lambda self, seqs, tag: (time.sleep(0.2), write(self, seqs, tag))
m = Market(folder, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
order = lambda cid, side, price: m.submit(1, Order(cid=cid, symbol="DEMO", side=side, price=price, qty=1), lambda *a: None)
order("rest", "sell", 200)
rounds = 10**6 if kill_after == "while-a-snapshot-is-written" else 2_000  # that one goes on until a later snapshot is being written,
for i in range(rounds):                                                      # however slow the child on a loaded machine
    order(f"s{i}", "sell", 100), order(f"b{i}", "buy", 100)
    m.flush()
    if kill_after == "between-compactions": m._reap(wait=True)  # the fifth swap comes, however slow the child
    if str(i) == kill_after or kill_after == "while-a-snapshot-is-written" and "snapshot" in m._children and os.path.exists(f"{folder}/books/accounts.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # one snapshot is in place, the next being written
"""

@pytest.mark.parametrize("kill_after", ["between-compactions", "while-a-snapshot-is-written", "49", "333", "1200"])
def test_a_killed_market_comes_back_with_what_it_kept(tmp_path, kill_after):
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), kill_after], capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    m = Market(tmp_path, keep_done=20)
    states = m.ledger.orders.values()
    assert [s["cid"] for s in states if s["status"] in ("lost", "new")] == []
    assert set(m.cids.ids) == {(s["account"], s["cid"]) for s in states}
    assert m.order(1, "rest")["status"] == "open" and m.engine.position(1, "DEMO").qty == 0
    if kill_after == "while-a-snapshot-is-written": assert m.engine.journals["DEMO"].recovery["snapshot_seq"] > 0
    assert len(m.ledger.accounts[1]) == 1 + 20  # the open one and the newest done ones
    next_id = m.cids.next_id
    assert next_id > max(m.ledger.orders)
    answers = []
    m.submit(1, Order(cid="s0", symbol="DEMO", side="buy", price=100, qty=1), lambda ok, state, error: answers.append(state["order_id"]))
    m.flush()
    assert answers == [next_id]  # s0 was forgotten: a new order, with a new id
    m.close()

def _trade(m, pairs, start):
    "`pairs` pairs of orders of account 1 that fill each other, a batch each pair."
    for i in range(start, start + pairs):
        for side in ("sell", "buy"): m.submit(1, Order(cid=f"{side}{i}", symbol="DEMO", side=side, price=100, qty=1), lambda *a: None)
        m.flush()

def test_a_compaction_that_hangs_is_stopped_and_tried_again(tmp_path, monkeypatch):
    import aiplatform.trading.market as market_module
    from aiplatform.trading.ledger import Ledger
    monkeypatch.setattr(market_module, "CHILD_S", 0.5)
    write_compacted = Ledger.write_compacted
    monkeypatch.setattr(Ledger, "write_compacted", lambda self, tmp: time.sleep(3600))  # runs only in the child
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
    trade = lambda pairs, start: _trade(m, pairs, start)
    trade(60, 0)
    hung, began = m._children["compaction"].pid, time.monotonic()
    while not list(tmp_path.glob("*.tmp")) and time.monotonic() - began < 5: time.sleep(0.01)
    assert hung and list(tmp_path.glob("*.tmp"))  # the child wrote the client ids, and hangs on the ledger
    time.sleep(max(0, 0.6 - (time.monotonic() - began)))
    trade(1, 60)  # the next batch stops it, drops its files, and goes on
    assert "compaction" not in m._children and list(tmp_path.glob("*.tmp")) == []
    with pytest.raises(ChildProcessError): os.waitpid(hung, os.WNOHANG)  # reaped
    monkeypatch.setattr(Ledger, "write_compacted", write_compacted)
    trade(60, 61)  # the next snapshot compacts
    m.close()
    assert "compaction" not in m._children and list(tmp_path.glob("*.tmp")) == []
    back = Market(tmp_path, keep_done=20)
    assert {s["cid"] for s in back.ledger.orders.values()} == {s["cid"] for s in m.ledger.orders.values()}
    assert (tmp_path/"client_ids.tsv").read_text().startswith("next\t\t")
    back.close()

def test_a_snapshot_whose_child_fails_leaves_nothing_and_a_later_one_is_taken(tmp_path, monkeypatch):
    from aiplatform.trading.engine import Engine
    write = Engine.write_snapshot
    monkeypatch.setattr(Engine, "write_snapshot", lambda self, seqs, tag: 1 / 0)  # runs only in the child
    m, books = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100), tmp_path/"books"
    m.submit(1, Order(cid="rest", symbol="DEMO", side="sell", price=200, qty=3), lambda *a: None)
    _trade(m, 50, 0)  # 101 commands: a snapshot begins
    assert "snapshot" in m._children
    m._reap(wait=True)
    assert list(books.rglob("snapshot-*.npz")) == list(books.rglob("*.tmp")) == [] and not (books/"accounts.json").exists()
    monkeypatch.setattr(Engine, "write_snapshot", write)
    _trade(m, 50, 50)
    m._reap(wait=True)
    assert json.loads((books/"accounts.json").read_text())["seqs"] == {"DEMO": 201}
    assert [p.name for p in books.rglob("*.npz")] == ["snapshot-00000000000000000201.npz"]
    m.close()
    back = Market(tmp_path)
    assert back.engine.journals["DEMO"].recovery["snapshot_seq"] == 201
    assert back.order(1, "rest")["status"] == "open" and back.engine.book("DEMO").depth() == m.engine.book("DEMO").depth()
    assert back.ledger.orders == m.ledger.orders
    back.close()

def test_a_snapshot_asked_for_while_one_is_written_waits_for_it(tmp_path, monkeypatch):
    from aiplatform.trading.engine import Engine
    write = Engine.write_snapshot
    monkeypatch.setattr(Engine, "write_snapshot", lambda self, seqs, tag: (time.sleep(0.3), write(self, seqs, tag)))
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=10**9)
    _trade(m, 5, 0)
    m.snapshot()
    first = m._children["snapshot"].pid
    _trade(m, 5, 5)
    m.snapshot()  # the first is put in place, then the second begins
    with pytest.raises(ChildProcessError): os.waitpid(first, os.WNOHANG)  # reaped
    m.close()
    assert sorted(p.name for p in (tmp_path/"books"/"DEMO").glob("*.npz")) == [f"snapshot-{n:020d}.npz" for n in (10, 20)]

def test_without_a_child_the_files_are_written_on_the_loop(tmp_path, monkeypatch):
    "Where no child can be forked (no memory for one under a strict overcommit policy), snapshots and compactions are written in place."
    def no_fork(): raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(os, "fork", no_fork)
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
    m.submit(1, Order(cid="rest", symbol="DEMO", side="sell", price=200, qty=3), lambda *a: None)
    _trade(m, 300, 0)
    assert m._children == {} and m._compacted  # compacted at the first snapshot
    assert json.loads((tmp_path/"books"/"accounts.json").read_text())["seqs"] == {"DEMO": 601}
    m.close()
    back = Market(tmp_path, keep_done=20)
    assert back.order(1, "rest")["status"] == "open" and len(back.ledger.orders) == 1 + 20
    back.close()

def test_what_was_forgotten_is_known_after_a_compaction_and_a_restart_that_keeps_more(tmp_path, monkeypatch):
    "Before, GET /orders and /fills guessed it from a full list: started again keeping more, they said nothing was forgotten (forgotten_ns 0)."
    monkeypatch.setattr(os, "fork", lambda: (_ for _ in ()).throw(OSError(12, "Cannot allocate memory")))  # compacted on the loop
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20, keep_fills=30)
    _trade(m, 300, 0)
    m._compact()  # the last orders forgotten too (a compaction comes once the file has grown 4 times)
    forgotten = m.ledger.forgotten_orders[1], m.ledger.forgotten_fills[1]
    assert m._compacted and all(forgotten)
    m.close()
    back = Market(tmp_path, keep_done=1_000, keep_fills=1_000)
    assert (back.ledger.forgotten_orders[1], back.ledger.forgotten_fills[1]) == forgotten and len(back.ledger.fills[1]) == 30  # the compacted file keeps what it says was lost
    assert forgotten[1] <= back.ledger.fills[1][0]["ns"] and forgotten[0] <= min(s["updated_ns"] for s in back.ledger.accounts[1].values() if s["status"] != "open")
    back.close()

def test_without_a_child_a_write_that_fails_is_finished_as_failed(tmp_path, monkeypatch):
    "Written on the loop, a compaction that fails (a full disk) is finished as a child that failed: what the files took meanwhile is no longer copied for ever."
    from aiplatform.trading.ledger import Ledger
    def no_fork(): raise OSError(12, "Cannot allocate memory")
    def full(self, tmp): raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(Ledger, "write_compacted", full)
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
    _trade(m, 300, 0)  # snapshots written, compactions failing
    assert (m.ledger.copies, m.cids.copies, m._children, list(tmp_path.glob("*.tmp"))) == (None, None, {}, [])
    m.close()

def test_the_ledger_syncs_on_the_journals_thread_while_its_file_is_swapped(tmp_path, monkeypatch):
    "With `fsync = batch` the ledger is synced beside each journal sync, on the sync thread, while its compactions swap its file in on the loop: no sync ever meets a closed file, and a snapshot's own sync finds little left."
    import threading
    from aiplatform.trading.ledger import Ledger
    on_thread, sync = [], Ledger.sync
    def noted(self):
        if threading.current_thread() is not threading.main_thread():  # the file's inode: a number of a closed fd is given again (the journal's rotation, say)
            with suppress(OSError, TypeError): on_thread.append(os.fstat(self._fd).st_ino)
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
    assert again.order(1, "buy2999")["status"] == "filled" and len(again.ledger.orders) <= 40 + 2
    again.close()

TWO_PARTS = """
import os, signal, sys
from aiplatform.trading.ledger import Ledger
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Order, Cancel
record, calls = Ledger.record, []
def record_then_die(self, *a):
    calls.append(1)
    if len(calls) == 2: os.kill(os.getpid(), signal.SIGKILL)  # the batch's first part written, the second not
    record(self, *a)
m = Market(sys.argv[1], [{"symbol": "DEMO"}])
n = lambda *a: None
m.submit(1, Order(cid="A", symbol="DEMO", side="sell", price=105, qty=1), n)
m.submit(1, Order(cid="S", symbol="DEMO", side="sell", price=100, qty=1), n)
m.cancel(1, Cancel(cid="A"), n)  # names A again: the batch goes to the engine in two parts
m.submit(2, Order(cid="B", symbol="DEMO", side="buy", price=100, qty=1), n)
Ledger.record = record_then_die
m.flush()
"""

def test_a_kill_between_two_parts_of_a_batch_loses_no_fill(tmp_path):
    assert subprocess.run([sys.executable, "-c", TWO_PARTS, str(tmp_path)], capture_output=True, timeout=120).returncode == -9
    m = Market(tmp_path)
    assert [m.order(a, c)["status"] for a, c in ((1, "A"), (1, "S"), (2, "B"))] == ["cancelled", "filled", "filled"]
    assert (len(m.ledger.fills[1]), len(m.ledger.fills[2]), m.engine.position(2, "DEMO").qty) == (1, 1, 1)
    m.close()

def test_a_restart_keeps_the_same_done_orders(tmp_path):
    m = Market(tmp_path, [{"symbol": "DEMO"}], keep_done=2)
    m.submit(1, Order(cid="A", symbol="DEMO", side="sell", price=200, qty=1), lambda *a: None)
    _trade(m, 3, 0)  # each pair ends in one batch: the taker first, then the maker
    m.cancel(1, Cancel(cid="A"), lambda *a: None)  # begun first, ended last
    m.flush()
    kept = sorted(s["cid"] for s in m.ledger.orders.values())
    m.close()
    m = Market(tmp_path, keep_done=2)
    assert sorted(s["cid"] for s in m.ledger.orders.values()) == kept == ["A", "sell2"]
    m.close()

def test_the_shards_files_stay_their_owners_in_a_data_folder_others_may_read(tmp_path):
    "An operator's data folder at 0755: the shard's folder is made 0700, and a compaction keeps the ledger and client ids at 0600 (they became 0644)."
    (tmp_path/"shard").mkdir(mode=0o755)
    m = Market(tmp_path/"shard", [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
    _trade(m, 300, 0)
    m._reap(wait=True)
    m.close()
    mode = lambda p: p.stat().st_mode & 0o777
    assert m._compacted and mode(tmp_path/"shard") == 0o700
    assert {p.name: mode(p) for p in (tmp_path/"shard").glob("*.*") if p.name in ("ledger.jsonl", "client_ids.tsv")} == {"ledger.jsonl": 0o600, "client_ids.tsv": 0o600}

def test_a_close_sends_all_that_waits_past_a_batch_and_the_symbol_stays_traded(tmp_path):
    "3,000 cancels (a batch takes 2,048) waiting at a stop: before, the rest went in a flush scheduled after the close, on closed files: refused, and the symbol halted."
    m, later, told = Market(tmp_path, [{"symbol": "DEMO"}], limits=RiskLimits(max_open_orders=10_000)), [], []
    for i in range(3_000): m.submit(1, Order(cid=f"o{i}", symbol="DEMO", side="buy", price=100, qty=1), lambda *a: None)
    while m.pending: m.flush()
    m.schedule = later.append  # as the service's loop does
    m.cancel_all(1, done=lambda states, failed: told.append((len(states), failed)))
    m.close()
    for flush in later: flush()  # the flushes it asked for come after the close
    m = Market(tmp_path, limits=RiskLimits(max_open_orders=10_000))
    assert (told, {s["status"] for s in m.ledger.orders.values()}, m.specs["DEMO"].halted) == ([(3_000, {})], {"cancelled"}, False)
    m.close()

def test_an_accounts_orders_are_listed_in_the_order_placed_after_a_compaction_and_a_restart(tmp_path):
    "`GET /orders` lists the newest placed up to its limit (before: after a compaction the open ones came first, and a limit kept others)."
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    for account, cid, side, price, qty in [(1, "a", "sell", 100, 1), (1, "b", "sell", 101, 1), (2, "x", "buy", 101, 2), (1, "c", "buy", 95, 1)]:
        m.submit(account, Order(cid=cid, symbol="DEMO", side=side, price=price, qty=qty), lambda *a: None)
        m.flush()
    m.ledger.compact()  # the open order written first, then the done ones as they ended
    m.close()
    m = Market(tmp_path)
    assert [s["cid"] for s in m.ledger.accounts[1].values()] == ["a", "b", "c"]
    m.close()

def test_a_snapshot_that_fails_stops_no_batch_and_is_tried_again_later(tmp_path, monkeypatch, caplog):
    "Out of files as a snapshot begins: the batch's news still goes out, the error is logged once, and a later snapshot is taken."
    from aiplatform.trading.engine import Engine
    def out_of_files(self): raise OSError(24, "Too many open files")
    monkeypatch.setattr(Engine, "begin_snapshot", out_of_files)
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=10)
    told, flushed = [], []
    m.listeners.append(lambda symbol, changed, fills, trades, delta: told.extend(trades))
    m.flushed.append(lambda: flushed.append(1))
    _trade(m, 8, 0)  # the fifth batch reaches 10 commands: its snapshot fails (was: raised out of the flush, the news and drain of it not sent)
    assert len(told) == 8 and len(flushed) == 16 and caplog.text.count("no snapshot now") == 1 and m._since_snapshot == 6  # two drains a batch
    monkeypatch.undo()
    _trade(m, 5, 8)
    m.close()
    assert [p.name for p in (tmp_path/"books"/"DEMO").glob("*.npz")] == [f"snapshot-{20:020d}.npz"]  # 20 commands journaled: after the next two batches

def test_a_snapshot_that_cannot_be_put_in_place_stops_no_batch(tmp_path, monkeypatch, caplog):
    "Out of files as the child's snapshot is put in place (in the batch that reaps it): the batch's news goes out, the child's files go, a later snapshot is taken."
    from aiplatform.trading.engine import Engine
    end = Engine.end_snapshot
    def out_of_files(self, seqs, tag): raise OSError(24, "Too many open files")
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=10)
    told = []
    m.listeners.append(lambda symbol, changed, fills, trades, delta: told.extend(trades))
    monkeypatch.setattr(Engine, "end_snapshot", out_of_files)
    _trade(m, 5, 0)  # the fifth batch begins a snapshot
    m._reap(wait=True)  # ... (its child ended; a later batch would reap it)
    _trade(m, 1, 5)  # was: this batch raised, its trade never told
    assert len(told) == 6 and "not put in place" in caplog.text and not list(tmp_path.rglob("*.tmp"))
    monkeypatch.setattr(Engine, "end_snapshot", end)
    _trade(m, 5, 6)
    m.close()
    assert [p.name for p in (tmp_path/"books"/"DEMO").glob("*.npz")] == [f"snapshot-{20:020d}.npz"]

@pytest.mark.parametrize("failing", ["client_ids.tsv", "ledger.jsonl"])
def test_a_compaction_one_of_whose_files_is_not_swapped_in_ends_both_and_a_restart_finds_every_order(tmp_path, monkeypatch, failing):
    """The client ids' file is swapped in first, then the ledger's only if theirs went in: a compacted ledger beside ids still
    naming the orders it retired made the next start call them lost (580 here) and keep those in place of the newest done orders.
    Either way each file's compaction ends: it keeps no copy of what is appended for ever."""
    import aiplatform.trading.journal as journal
    swap_in = journal.swap_in
    def out_of_files(path, tmp, fd, copies=()):
        if os.path.basename(path) == failing: raise OSError(24, "Too many open files")
        return swap_in(path, tmp, fd, copies)
    monkeypatch.setattr(journal, "swap_in", out_of_files)
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100, keep_done=20)
    m.submit(1, Order(cid="rest", symbol="DEMO", side="sell", price=200, qty=3), lambda *a: None)
    _trade(m, 300, 0)
    m._reap(wait=True)
    assert (m.ledger.copies, m.cids.copies, list(tmp_path.glob("*.tmp"))) == (None, None, [])
    ids, ledger = ((tmp_path/f).read_text().count("\n") for f in ("client_ids.tsv", "ledger.jsonl"))
    assert ledger == 300 and (ids == 601) == (failing == "client_ids.tsv")  # a line a batch, an id a line: the ledger never compacted, the ids when theirs went in
    m.close()
    back = Market(tmp_path, keep_done=20)
    kept = sorted(back.ledger.orders)
    assert [back.ledger.orders[o]["status"] for o in kept] == ["open"] + ["filled"] * 20  # none lost
    assert back.order(1, "rest")["status"] == "open" and back.order(1, "buy299")["status"] == "filled" and back.order(1, "sell290")["status"] == "filled"
    back.close()

@pytest.mark.parametrize("compacted", [False, True])
def test_a_quiet_symbols_tape_is_whole_after_a_restart_though_its_takers_fills_are_forgotten(tmp_path, monkeypatch, compacted):
    "Before, the tape came back from the takers' fills kept: an account that kept 30 fills and traded on elsewhere left a quiet symbol's tape empty (a reviewer's: 1,000 trades before, 24 after)."
    if compacted: monkeypatch.setattr(os, "fork", lambda: (_ for _ in ()).throw(OSError(12, "Cannot allocate memory")))  # compacted on the loop
    m = Market(tmp_path, [{"symbol": "QUIET"}, {"symbol": "DEMO"}], snapshot_every=100 if compacted else 10**9, keep_done=20, keep_fills=30)
    for i in range(5):
        for side in ("sell", "buy"): m.submit(1, Order(cid=f"q{side}{i}", symbol="QUIET", side=side, price=50 + i, qty=1), lambda *a: None)
        m.flush()
    _trade(m, 300, 0)
    tapes = {s: list(t) for s, t in m.tape.items()}
    assert [t["price"] for t in tapes["QUIET"]] == [50, 51, 52, 53, 54] and len(tapes["DEMO"]) == 300 and bool(m._compacted) == compacted
    m.close()
    back = Market(tmp_path, keep_done=20, keep_fills=30)
    assert {s: list(t) for s, t in back.tape.items()} == tapes and len(back.ledger.fills[1]) == 30
    back.close()

def test_a_snapshot_is_put_in_place_once_its_child_ends_though_the_market_has_gone_quiet(tmp_path):
    "Before, only the next batch reaped the child: a quiet shard kept a zombie and its snapshot's .tmp, and a restart replayed the journal from the snapshot before."
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=100)
    _trade(m, 50, 0)  # the 100th command: a snapshot, by a child
    assert "snapshot" in m._children
    deadline = time.monotonic() + 30
    while m._children and time.monotonic() < deadline:
        m.sync_due()  # as the service does every 20 ms, no batch coming
        time.sleep(0.02)
    assert not m._children and list((tmp_path/"books").rglob("*.tmp")) == [] and list((tmp_path/"books").rglob("snapshot-*.npz"))
    m.close()

def test_after_a_journal_cut_where_it_was_damaged_the_tape_holds_only_its_trades_and_tells_new_ones(tmp_path):
    "The tape the ledger keeps (a compacted line of it at the snapshot, the batches' lines after) holds no trade past the journal's cut, and tells the trades after it."
    from aiplatform.trading.journal import HEADER
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=10**9)
    for i in range(5):  # 5 trades at 100 to 104, a record an order
        for side in ("sell", "buy"): m.submit(1 + (side == "buy"), Order(cid=f"{side}{i}", symbol="DEMO", side=side, price=100 + i, qty=1), lambda *a: None)
        m.flush()
        if i == 1:  # a snapshot, and the files compacted, after two trades
            m.snapshot()
            m._reap(wait=True)
    m.close()
    assert m._compacted and '"t":' in (tmp_path/"ledger.jsonl").read_text()
    with open(sorted((tmp_path/"books"/"DEMO").glob("journal-*.log"))[-1], "r+b") as f:  # the segment begun at the snapshot
        f.seek(len(HEADER) + 20)
        f.write(b"\xff\xfe")  # bit rot in its first record: the journal is cut there, the trades after the snapshot gone
    m = Market(tmp_path)
    end = m.engine.book("DEMO").seq
    assert m.specs["DEMO"].halted and [t["price"] for t in m.tape["DEMO"]] == [100, 101] and all(t["seq"] <= end for t in m.tape["DEMO"])
    assert [s["status"] for s in m.ledger.orders.values()] == ["filled"] * 4 + ["lost"] * 6
    m.halt("DEMO", False)
    told = []
    m.listeners.append(lambda symbol, tell, fills, trades, delta: told.extend(t["price"] for t in trades))
    for side in ("sell", "buy"): m.submit(1 + (side == "buy"), Order(cid=f"new-{side}", symbol="DEMO", side=side, price=105, qty=1), lambda *a: None)
    m.flush()
    assert told == [105] and [t["price"] for t in m.tape["DEMO"]] == [100, 101, 105]
    m.close()
    back = Market(tmp_path)
    assert [t["price"] for t in back.tape["DEMO"]] == [100, 101, 105]
    back.close()

@pytest.mark.parametrize("snapshot_every", [1 << 20, 3])
def test_a_restarted_markets_book_numbers_on_past_every_delta_it_sent_before(tmp_path, snapshot_every):
    "Before: each feed began again at 0, and a client that kept the last number it saw took the deltas after a restart for old ones."
    m = Market(tmp_path, [{"symbol": "DEMO"}], snapshot_every=snapshot_every)
    for i in range(10):
        m.submit(1, Order(cid=f"o{i}", symbol="DEMO", side="buy", price=90 + i % 5, qty=1), lambda *a: None)
        m.flush()
    published = m.feeds["DEMO"].seq
    m.close()
    m = Market(tmp_path)
    assert published == 10 and m.feeds["DEMO"].snapshot()["seq"] >= published
    m.submit(1, Order(cid="more", symbol="DEMO", side="buy", price=80, qty=1), lambda *a: None)
    m.flush()
    assert m.feeds["DEMO"].seq == m.feeds["DEMO"].snapshot()["seq"] > published
    m.close()
