"The journal: deterministic replay, recovery from snapshots, torn and corrupt tails cut, a process killed mid-write."
import os, signal, subprocess, sys, time
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from aiplatform.core import ValidationError
from aiplatform.trading.book import COMMAND_DTYPE, OrderBook
from aiplatform.trading.journal import (HEADER, RECORD_BYTES, JournaledBook, JournalError, JournalWriter, commands_of,
                                        read_journal, seq_of)
from test_book import as_array, command

def stream(n, seed=0):
    "A random but valid-looking stream of `n` commands around price 100."
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COMMAND_DTYPE)
    c["op"] = rng.choice([0, 0, 0, 1, 2], n)
    c["order_id"], c["user"] = rng.integers(1, 400, n), rng.integers(1, 4, n)
    c["side"], c["kind"], c["tif"] = rng.integers(0, 2, n), rng.choice([0, 0, 0, 1, 3], n), rng.choice([0, 0, 1, 2], n)
    c["price"], c["stop_price"], c["qty"] = rng.integers(90, 111, n), rng.integers(90, 111, n), rng.integers(1, 20, n)
    return c

@settings(max_examples=30, deadline=None)
@given(st.lists(command(), min_size=40, max_size=200), st.integers(1, 60))
def test_replay_is_deterministic_byte_for_byte(tmp_path_factory, cmds, snapshot_every):
    arr = as_array(cmds)
    def run(folder, every):
        live = JournaledBook.open(folder, snapshot_every=every, fsync="never")
        events = np.concatenate([live.process(arr[i:i + 7]) for i in range(0, len(arr), 7)])
        live.close()
        return live, events
    whole = tmp_path_factory.mktemp("whole")
    live, events = run(whole, 10**9)  # no snapshot: the journal holds everything
    replayed = OrderBook()
    assert replayed.process(commands_of(read_journal(whole)[0])).tobytes() == events.tobytes()
    assert replayed.queues() == live.book.queues()
    snapped = tmp_path_factory.mktemp("snapped")
    live, events = run(snapped, snapshot_every)
    snapshots = sorted(snapped.glob("snapshot-*.npz"))
    if snapshots:  # replaying the tail after the latest snapshot gives the same events as they were first
        with np.load(snapshots[-1]) as arrays: book = OrderBook.from_arrays(arrays)
        tail = book.process(commands_of(read_journal(snapped, after=seq_of(snapshots[-1]))[0]))
        assert tail.tobytes() == events[len(events) - len(tail):].tobytes()
    recovered = JournaledBook.open(snapped)  # the latest snapshot plus the tail
    assert recovered.book.queues() == live.book.queues() and recovered.book.seq == live.book.seq
    recovered.close()

def _expected_after(commands):
    book = OrderBook()
    book.process(commands)
    return book.queues()

@pytest.mark.parametrize("damage", ["torn", "corrupt"])
def test_damaged_tail_is_cut_and_reported(tmp_path, damage):
    cmds = stream(3000)
    jb = JournaledBook.open(tmp_path, snapshot_every=1100)  # snapshots at 1250 and 2500
    for i in range(0, 3000, 250): jb.process(cmds[i:i + 250], keep_events=False)
    jb.close()
    seg = sorted(tmp_path.glob("journal-*.log"))[-1]
    size = seg.stat().st_size
    if damage == "torn": os.truncate(seg, size - RECORD_BYTES // 2)  # the last record half written
    else:
        with open(seg, "r+b") as f: f.seek(size - 3 * RECORD_BYTES + 20); f.write(b"\xff\xfe")  # third-last record garbled
    lost, damaged = (1 if damage == "torn" else 3), seg.read_bytes()
    jb = JournaledBook.open(tmp_path)
    assert jb.recovery["cut_at_seq"] == 3000 - lost + 1 and jb.recovery["snapshot_seq"] == 2500
    assert jb.book.queues() == _expected_after(cmds[:3000 - lost])
    assert jb.recovery["cut_records"] == (0 if damage == "torn" else 3) and jb.recovery["cut_bytes"] > 0
    assert jb.recovery["intact_after"] == (0 if damage == "torn" else 2)  # a garbled record, two intact ones after: said
    aside = list(tmp_path.glob("journal-*.log.cut-*"))  # whole records cut are kept beside the segment
    assert [p.name for p in aside] == ([] if damage == "torn" else [f"{seg.name}.cut-{3000 - lost + 1}"])
    if aside: assert aside[0].read_bytes() == damaged[-3 * RECORD_BYTES:]
    jb.process(cmds[3000 - lost:], keep_events=False)  # the lost commands, sent again, continue the same sequence
    jb.close()
    again = JournaledBook.open(tmp_path)
    assert again.recovery["cut_bytes"] == 0 and again.book.queues() == _expected_after(cmds)
    again.close()

@pytest.mark.parametrize("written", [0, 5, len(HEADER) - 1])
def test_a_segment_killed_before_its_header_was_whole_is_started_again(tmp_path, written):
    cmds = stream(600)
    jb = JournaledBook.open(tmp_path, snapshot_every=10**9)
    jb.process(cmds[:400], keep_events=False)
    jb.close()
    (tmp_path/f"journal-{401:020d}.log").write_bytes(HEADER[:written])  # as if killed inside `rotate`
    jb = JournaledBook.open(tmp_path)
    assert jb.writer.next_seq == 401 and jb.book.queues() == _expected_after(cmds[:400])
    jb.process(cmds[400:], keep_events=False)
    jb.close()
    again = JournaledBook.open(tmp_path)
    assert again.book.queues() == _expected_after(cmds) and again.recovery["cut_bytes"] == 0
    again.close()

def test_damage_before_the_last_segment_is_an_error_where_it_is_needed(tmp_path):
    jb = JournaledBook.open(tmp_path, snapshot_every=100, fsync="never")
    jb.process(stream(250), keep_events=False)
    jb.close()
    first = sorted(tmp_path.glob("journal-*.log"))[0]
    with open(first, "r+b") as f: f.seek(len(HEADER) + 5 * RECORD_BYTES + 8); f.write(b"\x00\x01")
    again = JournaledBook.open(tmp_path)  # the newest snapshot covers it: not needed, not read (before: a start refused)
    assert again.book.queues() == _expected_after(stream(250))
    again.close()
    for snap in tmp_path.glob("snapshot-*.npz"): snap.unlink()  # force a replay from the first segment
    with pytest.raises(JournalError, match="before the last segment"): JournaledBook.open(tmp_path)

def test_recovery_runs_the_matching_loop_already_compiled(tmp_path):
    "Replayed commands come from a read-only map (one record's, unlike many's, is not copied by taking its columns); copied, they run the loop compiled for live ones (`aiplatform warm`'s), not a second compilation (25 s)."
    from aiplatform.trading.book import _run
    live = JournaledBook.open(tmp_path, fsync="never")
    live.process(stream(1))
    live.close()
    again = JournaledBook.open(tmp_path)
    again.close()
    assert again.recovery["replayed"] == 1
    assert all(signature[6].mutable for signature in _run.signatures)

def test_bad_fsync_policy():
    with pytest.raises(ValidationError, match="fsync: 'sometimes'"): JournalWriter("/tmp/x-unused", fsync="sometimes")

CHILD = """
import sys, numpy as np
sys.path[:0] = {paths!r}  # this folder and tests/, where reference_book lives
from test_journal import stream
from aiplatform.trading.journal import JournaledBook
jb = JournaledBook.open({folder!r}, fsync="always", snapshot_every=5000)
cmds = stream(1_000_000, seed=3)
print("ready", flush=True)
for i in range(0, len(cmds), 100):
    jb.process(cmds[i:i + 100], keep_events=False)
    if i == 0: print("writing", flush=True)
"""

def test_process_killed_mid_write_recovers_a_consistent_book(tmp_path):
    here = os.path.dirname(__file__)
    code = CHILD.format(paths=[here, os.path.dirname(here)], folder=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    assert child.stdout.readline().strip() == "writing"  # its first batch journaled: however loaded the host, the kill comes mid-stream
    time.sleep(1.0)
    child.send_signal(signal.SIGKILL)
    child.wait()
    jb = JournaledBook.open(tmp_path)
    n = jb.writer.next_seq - 1
    assert n > 0 and jb.book.queues() == _expected_after(stream(1_000_000, seed=3)[:n])
    jb.close()

def test_batch_syncs_run_in_a_forked_child_too(tmp_path):
    "The sync thread is the parent's: a child forked after it started must sync on one of its own, not wait for ever."
    parent = JournalWriter(tmp_path/"parent", fsync="batch", interval_ms=0)
    parent.append(stream(3)); parent.append(stream(3))  # the sync thread has started
    pid = os.fork()
    if pid == 0:
        child = JournalWriter(tmp_path/"child", fsync="batch", interval_ms=0)
        child.append(stream(3)); child.append(stream(3)); child.close()
        os._exit(0)
    end = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < end: time.sleep(0.05)
    if done[0] == 0: os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
    parent.close()
    assert done[0] == pid and done[1] == 0, "the child's syncs never ran"
    assert len(read_journal(tmp_path/"child")[0]) == 6

def test_an_unreadable_snapshot_never_leaves_a_book_short(tmp_path):
    jb = JournaledBook.open(tmp_path, snapshot_every=100, fsync="never")
    for i in range(0, 500, 50): jb.process(stream(500)[i:i + 50])  # a snapshot every 100 commands
    jb.prune()
    jb.close()
    newest, older = sorted(tmp_path.glob("snapshot-*.npz"), reverse=True)[:2]
    newest.write_bytes(bytes(newest.stat().st_size))  # zeroed, as a crash on a failing disk can leave it
    with pytest.raises(JournalError, match="snapshot unreadable"): JournaledBook.open(tmp_path, snapshot_seq=seq_of(newest))  # named: needed
    back = JournaledBook.open(tmp_path)  # not named: the older one, and the journal kept since
    assert back.recovery["snapshot_seq"] == seq_of(older) and back.book.depth(50) == jb.book.depth(50)
    back.close()
    older.unlink()  # nothing left to start from but an empty book, and the journal's start was pruned
    with pytest.raises(JournalError, match="the records between are gone"): JournaledBook.open(tmp_path)

def test_a_journal_written_under_older_matching_rules_replays_under_them(tmp_path):
    from aiplatform.trading.book import RULES, submit_fields
    from aiplatform.trading.journal import MAGIC, records
    then = [submit_fields(1, "sell", 101, 5, user=1), submit_fields(2, "sell", 100, 1, user=1), submit_fields(3, "buy", 100, 1, user=2),
            submit_fields(4, "buy", None, 2, user=3, kind="stop", stop_price=100)]  # rules 1: a stop at the last trade triggered at once
    rules_1 = MAGIC + np.array([1, RECORD_BYTES], np.int32).tobytes()
    (tmp_path/"journal-00000000000000000001.log").write_bytes(rules_1 + records(np.array(then, np.int64), 1).tobytes())
    jb = JournaledBook.open(tmp_path)
    assert (jb.book.depth()["asks"], jb.book.rules) == ([(101, 3)], RULES)  # as it traded then: 2 at 101 (before: refused on replay)
    assert [(e.kind, e.reason) for e in jb.command(submit_fields(5, "buy", None, 1, user=3, kind="stop", stop_price=100))] == [("rejected", "stop_already_reached")]
    jb.close()
    again = JournaledBook.open(tmp_path)  # each segment under its own rules
    assert again.book.depth()["asks"] == [(101, 3)] and again.recovery["replayed"] == 5
    assert (tmp_path/"journal-00000000000000000005.log").read_bytes()[:len(HEADER)] == HEADER
    again.close()
    (tmp_path/"journal-00000000000000000006.log").write_bytes(MAGIC + np.array([RULES + 1, RECORD_BYTES], np.int32).tobytes())
    with pytest.raises(JournalError, match=f"written under matching rules {RULES + 1}, this code knows 1 to {RULES}"): JournaledBook.open(tmp_path)

def test_a_stop_modified_under_rules_2_stays_as_it_was_on_replay(tmp_path):
    "Rules 2 refused to modify a stop waiting for its trigger (`not_modifiable`); its journal replays so, and the same modify passes now."
    from aiplatform.trading.book import modify_fields, submit_fields
    from aiplatform.trading.journal import MAGIC, records
    then = [submit_fields(1, "sell", None, 2, user=3, kind="stop", stop_price=90), modify_fields(1, user=3, stop_price=95)]
    rules_2 = MAGIC + np.array([2, RECORD_BYTES], np.int32).tobytes()
    (tmp_path/"journal-00000000000000000001.log").write_bytes(rules_2 + records(np.array(then, np.int64), 1).tobytes())
    jb = JournaledBook.open(tmp_path)
    assert jb.book.order(1).stop_price == 90
    assert [(e.kind, e.reason) for e in jb.command(modify_fields(1, user=3, stop_price=95))] == [("accepted", "")]
    jb.close()
    again = JournaledBook.open(tmp_path)
    assert again.book.order(1).stop_price == 95 and again.recovery["replayed"] == 3
    again.close()

def test_a_segment_that_cannot_be_opened_changes_nothing_and_the_journal_goes_on(tmp_path, monkeypatch):
    "Out of files (EMFILE) as a snapshot rotates: the segment before stays open and written to, and no empty one is left to break the sequence."
    jb, orders = JournaledBook.open(tmp_path), stream(600, seed=5)
    jb.process(orders[:300])
    real_open = os.open
    def out_of_files(path, *args, **kwargs):
        if str(path).endswith(".log"): raise OSError(24, "Too many open files", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", out_of_files)
    with pytest.raises(OSError, match="Too many open files"): jb.begin_snapshot()
    monkeypatch.undo()
    jb.process(orders[300:])  # was a TypeError: the segment before closed, none open
    jb.close()
    assert [seq_of(p) for p in tmp_path.glob("journal-*.log")] == [1]
    back = JournaledBook.open(tmp_path)
    assert back.recovery["last_seq"] == 600 and back.book.depth(50) == jb.book.depth(50)

def test_a_sync_with_nothing_written_since_the_last_is_no_fsync(tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    before = []
    w = JournalWriter(tmp_path, before_sync=lambda: before.append(1))
    synced.clear()  # the folder's, as the first segment was made
    w.append(stream(10)), w.sync()
    assert len(synced) == len(before) == 1
    w.sync(), w.sync()  # nothing new: a snapshot's sync, then its rotation's
    assert len(synced) == len(before) == 1
    w.close()

def test_the_segment_in_use_rotated_again_keeps_its_header_whatever_fails(tmp_path, monkeypatch):
    "A snapshot begun again before a record (its child failed): the rotation reopens the segment in use; a write refused then cost its header."
    jb, orders = JournaledBook.open(tmp_path), stream(300, seed=6)
    jb.process(orders[:100])
    jb.writer.rotate()  # a snapshot's, whose child then failed
    def refused(fd, data): raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "write", refused)
    jb.writer.rotate()  # the next snapshot's: the same segment, its header this code's, left alone
    monkeypatch.undo()
    jb.process(orders[100:])
    jb.close()
    back = JournaledBook.open(tmp_path)  # was: "not a journal segment (bad header)"
    assert back.recovery["last_seq"] == 300 and back.book.depth(50) == jb.book.depth(50)
