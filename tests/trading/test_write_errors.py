"""The market's files when a write or a sync fails (a full disk, an I/O error) or the process is killed in the middle:
what a client was told is what a restart finds, and the market always starts again."""
import errno, json, os, subprocess, sys, time
import pytest
import aiplatform.trading.journal as journal
import aiplatform.trading.market as market_module
from aiplatform.trading.client_ids import ClientIds
from aiplatform.trading.journal import JournalWriter
from aiplatform.trading.market import Market, Unsaved, symbol_spec
from aiplatform.trading.orders import Order

def order(m, account, cid, side, price, qty=1, answers=None):
    reply = (lambda ok, state, error: answers.append((cid, ok, state["status"]))) if answers is not None else (lambda *a: None)
    m.submit(account, Order(cid=cid, symbol="DEMO", side=side, price=price, qty=qty), reply)

def failing(*args): raise OSError(errno.EIO, "Input/output error")

@pytest.mark.parametrize("fsync", ["always", "batch"])
def test_an_order_whose_sync_failed_is_not_replayed(tmp_path, monkeypatch, fsync):
    m = Market(tmp_path, [{"symbol": "DEMO"}], fsync=fsync)
    order(m, 2, "ask", "sell", 100, qty=5)
    m.flush()
    writer = m.engine.journals["DEMO"].writer
    writer.sync()  # the first batch may have started a sync behind: it ends before the syncs fail (else the next one does not start)
    monkeypatch.setattr(JournalWriter, "_sync_now", failing)
    if fsync == "batch":  # a sync behind fails; its error comes at the next batch, once that batch is written
        writer._sync_behind()
        writer._syncing.exception()
        time.sleep(writer.interval * 2)  # the next batch syncs behind again, and meets the error
    answers = []
    order(m, 1, "buy", "buy", 100, qty=3, answers=answers)
    m.flush()
    monkeypatch.undo()
    assert answers == [("buy", False, "rejected")] and m.engine.book("DEMO").depth()["asks"] == [(100, 5)]
    m.close()
    m = Market(tmp_path, fsync=fsync)
    assert (m.order(1, "buy")["status"], m.engine.position(1, "DEMO").qty, m.engine.book("DEMO").depth()["asks"]) == ("rejected", 0, [(100, 5)])
    m.close()

def test_ids_not_written_refuse_their_batch_and_are_written_later(tmp_path, monkeypatch):
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    monkeypatch.setattr(ClientIds, "_append", failing)
    answers = []
    order(m, 1, "b1", "buy", 100, answers=answers)
    m.flush()  # answered: rejected, the symbol halted (before: never answered, and a repeat of b1 was acknowledged)
    monkeypatch.undo()
    order(m, 1, "b1", "buy", 100, answers=answers)
    m.flush()
    assert answers == [("b1", False, "rejected")] * 2 and m.specs["DEMO"].halted
    m.halt("DEMO", False)
    order(m, 1, "b2", "buy", 100, answers=answers)
    m.flush()
    m.close()
    m = Market(tmp_path)
    assert (m.order(1, "b1")["status"], m.order(1, "b2")["status"]) == ("rejected", "open")
    assert m.order(1, "b1")["order_id"] != m.order(1, "b2")["order_id"]  # no id given twice
    m.close()

@pytest.mark.parametrize("file", ["ledger", "cids"])
def test_a_line_torn_by_a_full_disk_is_cut(tmp_path, monkeypatch, file):
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    order(m, 2, "ask", "sell", 100, qty=5)
    m.flush()
    target, write_all = getattr(m, file)._fd, journal.write_all
    def half_then_full(fd, data):
        if fd != target: return write_all(fd, data)
        os.write(fd, bytes(data)[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(journal, "write_all", half_then_full)
    order(m, 1, "b1", "buy", 100)
    m.flush()  # the ledger's line of a batch the journal took: written with the next
    monkeypatch.undo()
    m.halt("DEMO", False)
    order(m, 1, "b2", "buy", 100)
    m.flush()
    before = {cid: m.order(1, cid)["status"] for cid in ("b1", "b2")}
    m.close()
    m = Market(tmp_path)  # before: the next line glued to the torn one, and the market never started again
    assert {cid: m.order(1, cid)["status"] for cid in ("b1", "b2")} == before
    m.close()

def test_a_batch_the_journal_refused_is_rejected_after_a_restart(tmp_path, monkeypatch):
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    monkeypatch.setattr(m.engine, "process", lambda symbol, rows: failing())
    answers = []
    order(m, 1, "a", "buy", 100, answers=answers)
    m.flush()
    m.close()
    m = Market(tmp_path)
    assert answers == [("a", False, "rejected")] and (m.order(1, "a")["status"], m.specs["DEMO"].halted) == ("rejected", True)  # was: lost
    m.close()

KILLED_ADDING = """
import os, sys
from aiplatform.trading.market import Market, symbol_spec
m = Market(sys.argv[1], [{"symbol": "DEMO"}])
m.engine.add_symbol = lambda *args: os._exit(9)  # killed once the symbol is saved, before its journal's folder is made
m.add_symbol(symbol_spec({"symbol": "ACME"}))
"""

def test_a_market_buy_after_a_trade_in_its_batch_that_the_journal_refuses_leaves_the_trade_told_as_it_is(tmp_path, monkeypatch):
    m = Market(tmp_path, [{"symbol": "DEMO", "price_band_pct": 0}])
    order(m, 2, "ask", "sell", 100, qty=5)
    m.flush()
    append, calls, answers = JournalWriter.append, [0], []
    def second_fails(self, commands):
        calls[0] += 1
        if calls[0] == 2: raise OSError(errno.ENOSPC, "No space left on device")
        return append(self, commands)
    monkeypatch.setattr(JournalWriter, "append", second_fails)
    order(m, 1, "b1", "buy", 100, qty=2, answers=answers)
    m.submit(3, Order(cid="m1", symbol="DEMO", side="buy", qty=1, kind="market"), lambda ok, state, error: answers.append(("m1", ok, state["status"])))
    m.flush()  # the market buy in a part of its own: checked at the price it reaches once the buy before it traded
    assert answers == [("b1", True, "filled"), ("m1", False, "rejected")]  # before: b1 told rejected, though it traded
    assert (m.engine.position(1, "DEMO").qty, m.order(1, "b1")["status"]) == (2, "filled")
    monkeypatch.setattr(JournalWriter, "append", append)
    m.close()
    m = Market(tmp_path)
    assert (m.engine.position(1, "DEMO").qty, m.order(1, "b1")["status"], m.order(3, "m1")["status"]) == (2, "filled", "rejected")
    m.close()

def test_a_symbol_being_added_when_the_process_is_killed_is_traded_after_a_restart(tmp_path):
    assert subprocess.run([sys.executable, "-c", KILLED_ADDING, str(tmp_path)]).returncode == 9
    m = Market(tmp_path)  # before: its folder made first, the symbol unsaved, and adding it again refused for ever
    order(m, 1, "a", "sell", 100)
    m.submit(1, Order(cid="b", symbol="ACME", side="sell", price=100, qty=1), lambda *a: None)
    m.flush()
    assert sorted(m.specs) == ["ACME", "DEMO"] and m.order(1, "b")["status"] == "open"
    m.close()

def test_the_split_is_written_once_whole(tmp_path):
    Market(tmp_path, [{"symbol": "DEMO"}], shard=0, shards=2).close()
    split = tmp_path/"split.json"
    written = split.stat().st_mtime_ns, split.stat().st_ino
    Market(tmp_path, shard=0, shards=2).close()  # before: rewritten in place at every start; killed in between, empty for good
    assert (split.stat().st_mtime_ns, split.stat().st_ino) == written and json.loads(split.read_text()) == {"shard": 0, "shards": 2}
    assert not list(tmp_path.glob("*.tmp"))

def test_a_market_is_not_split_again_by_any_of_its_shards(tmp_path):
    "Before: shard 1 of 2 started beside shard 0 of 1 and traded its symbols afresh, their orders and positions left in shard 0's folder."
    from aiplatform.core import ConfigError
    Market(tmp_path/"shard-0", [{"symbol": "DEMO"}]).close()
    with pytest.raises(ConfigError, match="shard-0: written as shard 0 of 1; .trading. shard = 1, shards = 2 would leave its symbols' orders where no shard serves"):
        Market(tmp_path/"shard-1", shard=1, shards=2)
    Market(tmp_path/"shard-0").close()  # as it was: it starts

@pytest.mark.parametrize("name, text, where", [
    ("symbols.json", '[{"symbol": "DEMO", "tick_size": 0}]', "symbol 'DEMO' damaged .tick_size 0: expected a tick size"),
    ("symbols.json", '[{"symbol": "DEMO", "colour": 1}]', "symbol 'DEMO' damaged .colour: unknown field"),
    ("symbols.json", '{"symbol": "DEMO"}', "its JSON damaged .expected a list of objects"),
    ("split.json", '{}', "its JSON damaged .expected ..shard.: N")])
def test_a_market_file_edited_by_hand_into_nonsense_stops_a_start_with_a_line_that_names_it(tmp_path, name, text, where):
    "Before: a traceback (pydantic's, a KeyError, a TypeError)."
    from aiplatform.trading.journal import JournalError
    Market(tmp_path, [{"symbol": "DEMO"}]).close()
    (tmp_path/name).write_text(text)
    with pytest.raises(JournalError, match=f"{name}: {where}"): Market(tmp_path)

def test_a_symbol_whose_journal_is_damaged_mid_file_starts_halted_until_an_admin_resumes_it(tmp_path):
    "Before: it traded on at once, and the acknowledged orders of the intact records set aside after the damage could never be replayed."
    from aiplatform.trading.journal import RECORD_BYTES
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    for i in range(6):
        order(m, 1, f"s{i}", "sell", 100 + i)
        m.flush()  # a record each
    published = m.feeds["DEMO"].seq
    m.close()
    segment = sorted((tmp_path/"books"/"DEMO").glob("journal-*.log"))[-1]
    with open(segment, "r+b") as f: f.seek(segment.stat().st_size - 4 * RECORD_BYTES + 20); f.write(b"\xff\xfe")  # the third order's record: three intact after it
    m = Market(tmp_path)
    assert m.specs["DEMO"].halted and [m.order(1, f"s{i}")["status"] for i in range(6)] == ["open"] * 2 + ["lost"] * 4
    assert published == 6 and m.feeds["DEMO"].snapshot()["seq"] >= published  # its book numbers on past the records set aside (before: from the cut, numbers seen again)
    with pytest.raises(Exception, match="symbol DEMO: halted"): order(m, 1, "new", "sell", 110)
    m.close()
    m = Market(tmp_path)  # the halt saved: the journal, cut, no longer says why
    assert m.specs["DEMO"].halted
    m.halt("DEMO", False)
    order(m, 1, "new", "sell", 110)
    m.flush()
    assert m.order(1, "new")["status"] == "open"
    m.close()

def test_a_cancel_all_after_a_cancel_whose_batch_failed_cancels_the_order_itself(tmp_path, monkeypatch):
    "The cancel_all's request of an order with a cancel queued lands in the next batch (MAX_BATCH), after that cancel failed: it cancels then (cancels pass the halt), as before it queued no second."
    from aiplatform.trading.market import MAX_BATCH
    from aiplatform.trading.orders import Cancel
    m = Market(tmp_path, [{"symbol": "DEMO"}, {"symbol": "OTHER"}])
    order(m, 1, "a", "buy", 100)
    m.flush()
    got = []
    m.cancel(1, Cancel(cid="a"), lambda ok, state, error: got.append(("cancel", ok, state["status"])))
    for i in range(MAX_BATCH - 1): m.submit(2, Order(cid=f"f{i}", symbol="OTHER", side="buy", price=50, qty=1), lambda *a: None)
    m.cancel_all(1, "DEMO", lambda states, failed: got.append(("cancel_all", [s["cid"] for s in states], failed)))
    process = m.engine.process
    monkeypatch.setattr(m.engine, "process", lambda symbol, rows: failing() if symbol == "DEMO" and not got else process(symbol, rows))
    m.flush()  # the cancel refused: DEMO halted
    m.flush(), m.flush()  # the cancel_all's turn: a cancel of its own, in the batch after
    assert got == [("cancel", False, "open"), ("cancel_all", ["a"], {})] and m.order(1, "a")["status"] == "cancelled" and m.specs["DEMO"].halted
    m.close()

KILLED_AFTER_ANSWERING = """
import os, sys
from aiplatform.trading.engine import RiskLimits
from aiplatform.trading.market import Market, symbol_spec
from aiplatform.trading.orders import Order
m = Market(sys.argv[1], [{"symbol": "DEMO"}], limits=RiskLimits(max_order_qty=10, price_band_pct=0))
m.submit(1, Order(cid="big", symbol="DEMO", side="buy", price=100, qty=50), lambda ok, state, error: print(state["status"], flush=True))
m.flushed.append(lambda: os._exit(9))  # killed once the answers are sent, before the batch's ledger line
m.flush()
"""

def test_an_order_refused_by_a_risk_limit_is_rejected_after_a_crash(tmp_path):
    child = subprocess.run([sys.executable, "-c", KILLED_AFTER_ANSWERING, str(tmp_path)], capture_output=True, text=True)
    assert (child.returncode, child.stdout) == (9, "rejected\n")
    m = Market(tmp_path)  # before: lost, as if it had never reached the engine
    assert (m.order(1, "big")["status"], m.order(1, "big")["reason"]) == ("rejected", "risk_max_order_qty")
    m.close()

KILLED_AFTER_MOVING_A_STOP = """
import os, sys
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Modify, Order
m = Market(sys.argv[1], [{"symbol": "DEMO", "price_band_pct": 0}])
m.submit(1, Order(cid="stop", symbol="DEMO", side="sell", kind="stop", stop_price=90, qty=5), lambda *a: None)
m.flush()
m.modify(1, Modify(cid="stop", stop_price=95, qty=3), lambda ok, state, error: print(ok, state["stop_price"], flush=True))
m.flushed.append(lambda: os._exit(9))  # killed once the answer is sent, before the batch's ledger line
m.flush()
"""

def test_a_stops_new_stop_price_acknowledged_is_back_after_a_crash(tmp_path):
    child = subprocess.run([sys.executable, "-c", KILLED_AFTER_MOVING_A_STOP, str(tmp_path)], capture_output=True, text=True)
    assert (child.returncode, child.stdout) == (9, "True 95\n")
    m = Market(tmp_path)  # the modify replayed from the journal into the ledger: its stop price is the journal's, not the one before
    assert {k: m.order(1, "stop")[k] for k in ("stop_price", "remaining", "status")} == {"stop_price": 95, "remaining": 3, "status": "open"}
    assert m.engine.book("DEMO").order(m.order(1, "stop")["order_id"]).stop_price == 95
    m.close()

def test_a_lost_order_keeps_its_place_among_the_done_ones(tmp_path):
    m = Market(tmp_path, [{"symbol": "DEMO"}], keep_done=2)
    m.cids.assign(1, "gone")
    m.cids.flush()  # what a kill between the ids' write and the journal's leaves
    m.close()
    m = Market(tmp_path, keep_done=2)  # it ends lost now, before the three below
    for i in range(3):
        order(m, 1, f"s{i}", "sell", 100), order(m, 2, f"b{i}", "buy", 100)
        m.flush()
    kept = sorted(cid for account, cid in m.cids.ids if account == 1)
    m.close()
    m = Market(tmp_path, keep_done=2)  # before: made lost again at each start, it came back last and pushed s1 out
    assert sorted(cid for account, cid in m.cids.ids if account == 1) == kept == ["s1", "s2"]
    m.close()

NOTING_SYNCS = """
import json, os, sys, time
from aiplatform.trading import journal
from aiplatform.trading.journal import JournalWriter
from aiplatform.trading.engine import RiskLimits
from aiplatform.trading.market import Market
from aiplatform.trading.orders import Order
folder, synced, fsync = sys.argv[1], {}, os.fsync
def noted(fd):
    fsync(fd)
    synced[os.readlink(f"/proc/self/fd/{fd}")] = os.fstat(fd).st_size
os.fsync = noted
"""  # a script's start: each file's size when it was last synced, in `synced`

POWER_LOST = NOTING_SYNCS + """
m = Market(folder, [{"symbol": "DEMO"}], fsync="batch")
m.submit(2, Order(cid="ask", symbol="DEMO", side="sell", price=100, qty=5), lambda *a: None)
m.flush()
m.engine.journals["DEMO"].writer.sync()  # all durable so far
def power_lost(writer):  # the next sync: the files synced before the journal are, then the power goes
    writer.before_sync()
    json.dump(synced, open(os.path.join(folder, "synced.json"), "w"))
    os._exit(9)
JournalWriter._sync_now = power_lost
m.submit(1, Order(cid="buy", symbol="DEMO", side="buy", price=100, qty=3), lambda *a: None)
m.flush()  # journaled, not yet synced; traded; its ledger line written
m.engine.journals["DEMO"].writer.sync()
"""

def test_a_ledger_past_the_journal_after_a_power_loss_is_brought_back_to_it(tmp_path):
    assert subprocess.run([sys.executable, "-c", POWER_LOST, str(tmp_path)]).returncode == 9
    for path, size in json.loads((tmp_path/"synced.json").read_text()).items():  # what was not synced is gone
        if os.path.isfile(path) and os.path.getsize(path) > size: os.truncate(path, size)
    for _ in range(2):  # before: the ledger said the buy filled and the ask 2 left, the engine held the ask whole
        m = Market(tmp_path)
        assert (m.order(1, "buy")["status"], m.order(2, "ask")["remaining"], m.ledger.fills) == ("lost", 5, {})
        assert (m.engine.book("DEMO").depth()["asks"], m.engine.position(1, "DEMO").qty, m.ledger.seqs) == ([(100, 5)], 0, {"DEMO": 1})
        m.close()

REFUSED_THEN_POWER_LOST = NOTING_SYNCS + """
m = Market(folder, [{"symbol": "DEMO"}], fsync=sys.argv[2], limits=RiskLimits(max_order_qty=10, price_band_pct=0))
answers = []
order = lambda account, cid, qty: m.submit(account, Order(cid=cid, symbol="DEMO", side="buy", price=100, qty=qty), lambda ok, s, e: answers.append((cid, s["status"])))
order(1, "alone", 50), m.flush()  # refused by a risk limit, alone in its batch: in no journal
order(1, "beside", 50), order(2, "open", 5), m.flush()  # refused beside an order the journal holds
if m.fsync == "batch":  # 20 ms of quiet, then the service's tick
    time.sleep(0.02), m.sync_due()
    journal._SYNCS.submit(int).result()  # the syncs it started are done
json.dump({"synced": synced, "answers": answers}, open(os.path.join(folder, "synced.json"), "w"))
os._exit(9)  # the power goes once they are answered
"""

@pytest.mark.parametrize("fsync", ["always", "batch"])
def test_a_refusal_is_durable_before_its_answer_with_fsync_always_and_20_ms_after_with_batch(tmp_path, fsync):
    assert subprocess.run([sys.executable, "-c", REFUSED_THEN_POWER_LOST, str(tmp_path), fsync]).returncode == 9
    seen = json.loads((tmp_path/"synced.json").read_text())
    assert seen["answers"] == [["alone", "rejected"], ["beside", "rejected"], ["open", "open"]]
    for path in tmp_path.rglob("*"):  # what was not synced is gone (a file written whole was synced under its .tmp name, then renamed)
        if path.is_file() and path.name not in ("synced.json", "lock"):
            os.truncate(path, min(path.stat().st_size, seen["synced"].get(str(path), seen["synced"].get(f"{path}.tmp", 0))))
    m = Market(tmp_path)  # before: both lost, though told rejected (their ledger lines never synced; with batch, no journal's sync followed)
    assert [(m.order(a, cid)["status"], m.order(a, cid)["reason"][:18]) for a, cid in [(1, "alone"), (1, "beside"), (2, "open")]] == [
        ("rejected", "risk_max_order_qty"), ("rejected", "risk_max_order_qty"), ("open", "")]
    m.close()

KILLED_AFTER_A_REFUSED_MODIFY = """
import os, sys
from aiplatform.trading.engine import RiskLimits
from aiplatform.trading.market import Market, symbol_spec
from aiplatform.trading.orders import Modify, Order
m = Market(sys.argv[1], [{"symbol": "DEMO"}], limits=RiskLimits(max_order_qty=10, price_band_pct=0))
m.submit(1, Order(cid="ask", symbol="DEMO", side="sell", price=100, qty=5), lambda *a: None)
m.flush()
m.submit(2, Order(cid="buy", symbol="DEMO", side="buy", price=100, qty=3), lambda *a: None)
m.modify(1, Modify(cid="ask", qty=50), lambda *a: None)  # refused by a risk limit, in the batch where the ask trades
m.flushed.append(lambda: os._exit(9))
m.flush()
"""

def test_a_modify_refused_by_a_risk_limit_records_nothing_early(tmp_path):
    assert subprocess.run([sys.executable, "-c", KILLED_AFTER_A_REFUSED_MODIFY, str(tmp_path)]).returncode == 9
    m = Market(tmp_path)  # the ask's state after the trade was recorded before the batch: the trade counted twice at the restart
    assert ((ask := m.order(1, "ask"))["filled"], ask["remaining"], m.engine.book("DEMO").depth()["asks"]) == (3, 2, [(100, 2)])
    m.close()

def test_an_id_the_client_ids_file_lost_is_never_given_again(tmp_path, monkeypatch):
    m = Market(tmp_path, [{"symbol": "DEMO"}], keep_done=1)
    monkeypatch.setattr(ClientIds, "_append", failing)
    order(m, 1, "b1", "buy", 100)
    m.flush()  # rejected, and so recorded in the ledger; its id never written (the disk full still when the market stops)
    with pytest.raises(OSError): m.close()
    monkeypatch.undo()
    m._lock.close()
    m = Market(tmp_path, keep_done=1)
    m.halt("DEMO", False)
    order(m, 1, "b1", "buy", 90)  # the same cid again: a new order, with a new id (before: order 1 again, two orders in one)
    m.flush()
    m.submit(1, Order(cid="ioc", symbol="DEMO", side="sell", price=200, qty=1, tif="IOC"), lambda *a: None)
    m.flush()  # a done order more: the rejected b1 is retired, and the open one keeps its cid
    assert (m.order(1, "b1")["order_id"], m.order(1, "b1")["status"], 1 in m.ledger.orders) == (2, "open", False)
    m.close()

def test_lines_the_ledger_could_not_write_go_before_a_snapshot_and_at_close(tmp_path, monkeypatch):
    from aiplatform.trading.engine import RiskLimits
    m = Market(tmp_path, [{"symbol": "DEMO"}], limits=RiskLimits(max_order_qty=10, price_band_pct=0), snapshot_every=2)
    monkeypatch.setattr(m.ledger, "_append", failing)
    order(m, 1, "big", "buy", 100, qty=50)  # refused by a risk limit: in no journal, the ledger's line is all there is
    order(m, 1, "a", "sell", 100), order(m, 2, "b", "buy", 100)
    m.flush()  # a snapshot is due: not while a line waits (the journal it drops is where a line can still come from)
    assert len(m.ledger.unwritten) == 2 and "snapshot" not in m._children
    monkeypatch.undo()
    m.close()  # the disk has room again: the lines go now
    m = Market(tmp_path)
    assert [m.order(*k)["status"] for k in ((1, "big"), (1, "a"), (2, "b"))] == ["rejected", "filled", "filled"]
    m.close()

def test_a_symbol_whose_journal_could_not_be_made_can_be_added_again(tmp_path, monkeypatch):
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    monkeypatch.setattr(JournalWriter, "rotate", failing)  # its first segment: no room
    with pytest.raises(Unsaved, match="symbol 'ACME': not added, nothing changed; the market's files cannot be written"): m.add_symbol(symbol_spec({"symbol": "ACME"}))
    monkeypatch.undo()
    assert sorted(m.specs) == ["DEMO"]
    m.add_symbol(symbol_spec({"symbol": "ACME"}))  # before: its empty folder left, refused for ever as holding a journal
    m.close()
    m = Market(tmp_path)
    assert sorted(m.specs) == ["ACME", "DEMO"]
    m.close()

def test_a_failed_batch_refuses_the_rest_of_its_symbols_commands(tmp_path, monkeypatch):
    from aiplatform.trading.orders import Cancel
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    process, calls = m.engine.process, []
    def once_full(symbol, rows):
        calls.append(len(rows))
        if len(calls) == 1: failing()
        return process(symbol, rows)
    monkeypatch.setattr(m.engine, "process", once_full)
    answers = []
    order(m, 1, "a", "sell", 100, answers=answers)
    m.cancel(1, Cancel(cid="a"), lambda ok, state, error: answers.append(("cancel", ok, state["status"])))  # names "a": a part of its own
    m.flush()  # the first part fails; before, the second went to the journal after it, the symbol halted
    assert calls == [1] and answers == [("a", False, "rejected"), ("cancel", False, "rejected")] and m.specs["DEMO"].halted
    m.close()

@pytest.mark.parametrize("first", [OSError(errno.ENOSPC, "the first"), KeyboardInterrupt()])
def test_a_close_the_disk_refuses_still_closes_every_file_and_frees_the_folder(tmp_path, monkeypatch, first):
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    monkeypatch.setattr(ClientIds, "_append", failing)
    order(m, 1, "b1", "buy", 100)
    flush = m.flush
    def failing_flush():
        flush()
        raise first  # a full disk, or Ctrl-C
    m.flush = failing_flush
    with pytest.raises(type(first)) as raised: m.close()
    assert raised.value is first  # the first error; the client ids' file refusing the id comes after
    assert (m.cids._fd, m.ledger._fd, m.engine.journals["DEMO"].writer._fd, m._lock.closed) == (None, None, None, True)  # before: none closed
    monkeypatch.undo()
    Market(tmp_path).close()  # the folder is free again in this process

def test_a_cancel_all_whose_batch_the_journal_refused_says_which_orders_stay_open(tmp_path, monkeypatch):
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    for cid in ("a", "b"): order(m, 1, cid, "buy", 100)
    m.flush()
    monkeypatch.setattr(m.engine, "process", lambda symbol, rows: failing())
    told = []
    m.cancel_all(1, done=lambda states, failed: told.append(([s["cid"] for s in states], failed)))
    assert told == []  # not before the batch
    m.flush()
    m.close()
    (cids, failed), = told
    assert cids == ["a", "b"] and list(failed) == ["a", "b"] and failed["a"].startswith("not journaled (OSError: [Errno 5] Input/output error)")

def test_an_order_whose_client_id_line_was_torn_keeps_its_client_id(tmp_path):
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    order(m, 1, "first", "sell", 100)
    order(m, 1, "retry-me", "sell", 101)
    m.flush()
    placed = m.order(1, "retry-me")["order_id"]
    m.close()
    ids = tmp_path/"client_ids.tsv"
    assert ids.read_text().splitlines()[-1].split("\t")[1] == "retry-me"
    os.truncate(ids, ids.stat().st_size - 3)  # its line torn (a power loss with fsync = batch), the ledger's whole
    m = Market(tmp_path)
    answers = []
    order(m, 1, "retry-me", "sell", 101, answers=answers)  # sent again: the order placed, never a second
    m.flush()
    assert m.order(1, "retry-me")["order_id"] == placed and answers == [("retry-me", True, "open")] and len(m.ledger.orders) == 2
    m.close()

@pytest.mark.parametrize("name, damage", [
    ("ledger.jsonl", b"{damaged\t"), ("client_ids.tsv", b"{damaged\t"), ("symbols.json", b"{damaged\t"), ("split.json", b"{damaged\t"),
    ("books/accounts.json", b"{damaged\t"), ("books/accounts.json", b'{"seqs": {}}'), ("ledger.jsonl", b'{"s": "DEMO", "q": 1}\n')])  # JSON, not theirs
def test_a_damaged_file_stops_a_start_with_a_line_that_names_it(tmp_path, name, damage):
    "Damage that is not a torn last line: one line naming the file and where (before: a traceback, at times naming no file)."
    from aiplatform.trading.journal import JournalError
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    order(m, 1, "a", "sell", 100), order(m, 1, "b", "sell", 101)
    m.flush()
    m.close()
    path = tmp_path/name
    path.write_bytes(damage if name == "books/accounts.json" else damage + path.read_bytes())  # the accounts' file: written at a snapshot
    with pytest.raises(JournalError, match=f"{name}: (line 1|its JSON) damaged .*: restore the file from a backup"): Market(tmp_path)

def test_a_shard_folder_that_cannot_be_opened_stops_the_service_with_one_line(tmp_path):
    from aiplatform.core import ConfigError, load_settings
    from aiplatform.trading.service import market
    (tmp_path/"trading").mkdir()
    (tmp_path/"trading"/"shard-0").write_text("a file, not the shard's folder")
    with pytest.raises(ConfigError, match="shard-0: the shard's files cannot be opened: File exists"):
        market(load_settings(env={}, platform={"data_dir": tmp_path}))

def _five_orders_and_the_third_garbled(folder):
    "Orders o0 to o4, each acknowledged and synced; then o2's record in the journal garbled: a start cuts the journal there, o2 to o4 with it."
    from aiplatform.trading.journal import HEADER, RECORD_BYTES
    m = Market(folder, [{"symbol": "DEMO"}], fsync="always")
    for i in range(5):
        order(m, 1, f"o{i}", "sell", 100 + i)
        m.flush()
    m.close()
    segment = sorted(folder.rglob("journal-*.log"))[-1]
    with open(segment, "r+b") as f: f.seek(len(HEADER) + 2 * RECORD_BYTES + 20); f.write(b"\xff\xfe")

def test_orders_a_journal_cut_where_damaged_lost_are_not_said_unacknowledged(tmp_path):
    from aiplatform.trading.market import LOST_CUT
    _five_orders_and_the_third_garbled(tmp_path)
    m = Market(tmp_path)
    assert [(m.order(1, f"o{i}")["status"], m.order(1, f"o{i}").get("reason")) for i in (1, 3)] == [("open", ""), ("lost", LOST_CUT)]
    [kept] = tmp_path.glob("ledger.jsonl.cut-*")  # the ledger's lines undone, kept with the rest as the file was
    assert b'"cid":"o3","symbol":"DEMO"' in kept.read_bytes() and b'"cid":"o3","symbol":"DEMO"' not in (tmp_path/"ledger.jsonl").read_bytes()
    m.close()

@pytest.mark.parametrize("fails", ["fsync", "write"])
def test_a_journal_that_cannot_cut_a_group_it_refused_takes_no_more_until_a_restart(tmp_path, monkeypatch, fails):
    "A failing disk: the sync (or the write) of a group fails, and so does cutting it out again; resumed, the symbol still journals nothing."
    m = Market(tmp_path, [{"symbol": "DEMO"}], fsync="always")
    order(m, 1, "a", "sell", 100)
    m.flush()
    answers = []
    real, writer = getattr(os, fails), m.engine.journals["DEMO"].writer
    def the_journals(fd, *args): return failing() if fd == writer._fd else real(fd, *args)
    with monkeypatch.context() as p:
        p.setattr(os, fails, the_journals), p.setattr(os, "ftruncate", failing)
        order(m, 2, "b", "buy", 100, answers=answers)
        m.flush()
    assert answers == [("b", False, "rejected")] and m.specs["DEMO"].halted
    m.halt("DEMO", False)  # an admin resumes it: its journal may end in the group refused, so nothing goes after it
    order(m, 2, "c", "buy", 100, answers=answers)
    m.flush()
    assert answers[1] == ("c", False, "rejected") and "until a restart" in m.order(2, "c")["reason"] and m.engine.position(2, "DEMO").qty == 0
    m.close()

@pytest.mark.parametrize("fsync", ["batch", "always"])
def test_a_shard_folder_deleted_under_the_market_refuses_every_batch_and_change_after(tmp_path, fsync):
    "Deleted (or replaced) while it runs: what it would write goes where no restart looks, or into the files of a service that took its place."
    from aiplatform.trading.market import SymbolSpec
    m = Market(tmp_path/"shard-0", [{"symbol": "DEMO"}], fsync=fsync, snapshot_every=1)
    answers = []
    order(m, 1, "a", "sell", 100, answers=answers)
    m.flush()  # and a snapshot, and the files compacted: children writing them, not yet reaped when the folder goes
    (tmp_path/"shard-0").rename(tmp_path/"deleted")  # as good as deleted: no restart looks there
    if fsync == "batch": m.sync_due()  # the service's every 20 ms; with fsync = always, each batch looks first
    order(m, 1, "b", "sell", 101, answers=answers)
    m.flush()
    assert answers == [("a", True, "open"), ("b", False, "rejected")] and "was deleted or replaced" in m.order(1, "b")["reason"]
    assert m.engine.book("DEMO").depth()["asks"] == [(100, 1)]
    other = Market(tmp_path/"shard-0", [{"symbol": "DEMO"}, {"symbol": "OTHER"}])  # a second service, on the folder's new self
    with pytest.raises(Unsaved, match="deleted or replaced"): m.halt("DEMO")
    with pytest.raises(Exception, match="deleted or replaced"): m.add_symbol(SymbolSpec(symbol="NEW"))
    assert sorted(s["symbol"] for s in json.loads((tmp_path/"shard-0"/"symbols.json").read_text())) == ["DEMO", "OTHER"]  # left as the other wrote it
    order(other, 1, "new", "sell", 200)
    other.flush()
    m.close()  # its children's files not put in place: the other's folder as the other left it
    assert not (tmp_path/"shard-0"/"books"/"accounts.json").exists() and other.order(1, "new")["status"] == "open"
    other.close()
    assert Market(tmp_path/"shard-0").order(1, "new")["status"] == "open"  # before: its ledger and ids replaced by an empty file

def test_a_batch_the_engine_cut_in_two_whose_second_piece_the_journal_refused_answers_the_first_as_done(tmp_path, monkeypatch):
    "A sell a buy stop-limit may bid too much for, once the bid before it triggers it, goes after the rest: two appends. Before, the second's failure refused both, though the first was in the journal."
    from aiplatform.trading.engine import RiskLimits
    m = Market(tmp_path, [{"symbol": "DEMO", "price_band_pct": 0}], limits=RiskLimits(price_band_pct=0))
    order(m, 1, "ask", "sell", 100), order(m, 2, "first", "buy", 100)  # the last trade: 100
    m.submit(3, Order(cid="stop", symbol="DEMO", side="buy", kind="stop_limit", stop_price=110, price=120, qty=1), lambda *a: None)
    m.flush()
    m.engine.user_limits[4] = RiskLimits(max_notional=115, price_band_pct=0)  # 1 at 110 passes, 1 at the stop's 120 would not
    appends, real = [], JournalWriter.append
    def second_fails(self, commands):
        appends.append(len(commands))
        if len(appends) == 2: raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, commands)
    monkeypatch.setattr(JournalWriter, "append", second_fails)
    answers = []
    order(m, 2, "bid", "buy", 110, answers=answers), order(m, 4, "sell", "sell", 100, answers=answers)
    m.flush()
    monkeypatch.undo()
    assert appends == [1, 1] and sorted(answers) == [("bid", True, "open"), ("sell", False, "rejected")] and m.specs["DEMO"].halted
    assert m.engine.book("DEMO").depth()["bids"] == [(110, 1)]
    m.close()
    m = Market(tmp_path)
    assert [m.order(a, c)["status"] for a, c in ((2, "bid"), (4, "sell"))] == ["open", "rejected"]
    m.close()

def test_a_ledger_line_torn_and_not_cut_is_followed_by_none_and_a_restart_rebuilds_the_ledger(tmp_path, monkeypatch):
    "A failing disk: a ledger line half written, and cutting it fails too. Before, the next line was glued to it, and the restart refused the file as damaged."
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    order(m, 1, "a", "sell", 100)
    m.flush()
    real, ledger = os.write, m.ledger
    def torn(fd, data):
        if fd != ledger._fd: return real(fd, data)
        real(fd, bytes(data)[:5])
        raise OSError(errno.EIO, "Input/output error")
    with monkeypatch.context() as p:
        p.setattr(os, "write", torn), p.setattr(os, "ftruncate", failing)
        order(m, 1, "b", "sell", 101)
        m.flush()
    order(m, 1, "c", "sell", 102)
    m.flush()  # its line waits: none goes after the torn part
    m.close()
    m = Market(tmp_path)  # the torn part read as the file's torn end; the journal replayed past it
    assert [m.order(1, c)["status"] for c in "abc"] == ["open"] * 3
    m.close()

def test_a_symbol_not_added_whose_undoing_save_fails_too_is_said_to_be_traded_after_a_restart(tmp_path, monkeypatch):
    "Its journal not made (out of files) and the save that undoes it refused (a full disk): before, the admin was told nothing changed."
    from aiplatform.trading.engine import Engine
    from aiplatform.trading.market import SymbolSpec
    m = Market(tmp_path, [{"symbol": "DEMO"}])
    real, saves = market_module._replace, []
    def second_save_fails(path, text):
        saves.append(path.name)
        if len(saves) == 2: raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)
    monkeypatch.setattr(market_module, "_replace", second_save_fails)
    monkeypatch.setattr(Engine, "add_symbol", lambda self, symbol, tick: failing())
    with pytest.raises(Unsaved, match=r"symbol 'NEW': not added, but symbols.json still names it \(No space left on device.*\): a restart trades it unless"):
        m.add_symbol(SymbolSpec(symbol="NEW"))
    monkeypatch.undo()
    assert sorted(m.specs) == ["DEMO"]
    m.halt("DEMO"), m.halt("DEMO", False)  # a save: the symbols as they are
    m.close()
    m = Market(tmp_path)
    assert sorted(m.specs) == ["DEMO"]
    m.close()

def test_a_start_killed_while_it_cuts_a_ledger_back_to_its_journal_says_the_same_of_the_lost_at_the_next(tmp_path):
    "Killed once the ledger cut back was in place, before the lost orders were recorded: before, the next start no longer saw the cut and said them not acknowledged."
    from aiplatform.trading.market import LOST_CUT
    _five_orders_and_the_third_garbled(tmp_path)
    killed = """
import os, sys
from aiplatform.trading.ledger import Ledger
from aiplatform.trading.market import Market
compact = Ledger.compact
def then_die(self):
    compact(self)
    os._exit(9)  # killed once the ledger's file is cut back and in place
Ledger.compact = then_die
Market(sys.argv[1])
"""
    assert subprocess.run([sys.executable, "-c", killed, str(tmp_path)], capture_output=True).returncode == 9
    m = Market(tmp_path)
    assert [(m.order(1, f"o{i}")["status"], m.order(1, f"o{i}")["reason"]) for i in (1, 2, 3, 4)] == [("open", "")] + [("lost", LOST_CUT)] * 3
    m.close()

def test_cancel_alls_answered_together_try_again_after_a_failed_batch(tmp_path):
    m = Market(tmp_path/"m", [{"symbol": "DEMO"}])
    m.submit(1, Order(cid="x", symbol="DEMO", side="sell", price=100, qty=1), lambda *a: None)
    m.flush()
    process, failures = m.engine.process, [OSError(errno.ENOSPC, "No space left on device")]
    def fails_once(symbol, rows):  # the next batch: a full disk, once
        if failures: raise failures.pop()
        return process(symbol, rows)
    m.engine.process = fails_once
    told = []
    for who in "AB": m.cancel_all(1, done=lambda states, failed, who=who: told.append((who, [s["cid"] for s in states], sorted(failed))))  # a second click
    while m.pending: m.flush()
    assert told == [("A", ["x"], ["x"]), ("B", ["x"], [])], told  # before: B told of A's failure, and x left open
    assert m.order(1, "x")["status"] == "cancelled" and m.specs["DEMO"].halted  # cancels pass the halt the failure made
