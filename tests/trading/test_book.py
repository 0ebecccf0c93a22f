"The compiled order book against the reference model, on random command streams of every kind (hypothesis)."
import random
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from aiplatform.core import ValidationError
from aiplatform.trading.book import COMMAND_DTYPE, COMMAND_FIELDS, MAX_QTY, S_PN, OrderBook
from reference_book import ReferenceBook

IDS = range(1, 25)
NEAR = (96, 104)  # prices around the market, so orders cross often
BAD = [("side", 2), ("kind", 4), ("tif", 3), ("stp", 4), ("qty", 0), ("qty", -1), ("qty", MAX_QTY + 1), ("price", 0),
       ("price", -2), ("price", 1 << 41), ("stop_price", 0), ("display_qty", -1), ("display_qty", 50), ("post_only", 1),
       ("op", 3), ("op", -1)]

def _command(r: random.Random, near, ids):
    op = r.choice([0, 0, 0, 0, 0, 0, 1, 2, 2])
    c = dict(op=op, order_id=r.choice(ids), user=r.randint(1, 3))
    if op == 0:
        kind, tif, qty = r.choice([0, 0, 0, 0, 0, 1, 2, 3]), r.choice([0, 0, 0, 1, 2]), r.randint(1, 12)
        iceberg = kind in (0, 3) and tif == 0 and r.randint(0, 3) == 0
        c |= dict(side=r.randint(0, 1), kind=kind, tif=tif, price=r.randint(*near), qty=qty, stop_price=r.randint(*near),
                  display_qty=r.randint(1, qty) if iceberg else 0, stp=r.choice([0, 0, 0, 1, 2, 3]),
                  post_only=int(kind == 0 and tif == 0 and r.randint(0, 4) == 0))
    elif op == 2:
        c |= dict(price=r.choice([0, r.randint(*near)]), qty=r.choice([0, r.randint(1, 12)]), stop_price=r.choice([0, 0, r.randint(*near)]))
    if r.randint(0, 19) == 0:
        field, value = r.choice(BAD)
        c[field] = value
    return c

def command(near=NEAR, ids=IDS):
    """A command of any kind, valid but for one in twenty that breaks one rule. Hypothesis draws one seed per command, not
    each field (a draw costs ~0.1 ms: drawing the fields took 90 % of these tests' minute); it still shrinks a stream by
    dropping commands."""
    return st.integers(0, 2**32 - 1).map(lambda seed: _command(random.Random(seed), near, ids))

def as_array(cmds):
    return np.array([tuple(c.get(f, 0) for f in COMMAND_FIELDS) for c in cmds], COMMAND_DTYPE)

def live_orders(book):
    return {oid: book.order(oid) for oid in IDS if book.order(oid) is not None}

def ref_live_orders(ref):
    return {o.id: (("buy", "sell")[o.side], o.price, o.remaining, o.visible, o.user, o.stop if o.stop_waiting else None, o.display or None)
            for o in ref.orders.values()}

@pytest.mark.slow  # ~11 s
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(command(), min_size=40, max_size=200), st.sampled_from([1, 1, 1, 2]))
def test_compiled_book_matches_reference(cmds, tick):
    arr = as_array(cmds)
    book, ref = OrderBook(tick_size=tick, capacity=16), ReferenceBook(tick)  # a small pool: growth is exercised
    got = book.process(arr)
    assert got.tolist() == ref.process(arr)
    assert book.depth(1000) == ref.depth(1000)
    assert {k: tuple(v) for k, v in live_orders(book).items()} == ref_live_orders(ref)
    assert len(book) == len(ref.orders) and book.last_price == ref.last

WIDE_IDS = range(1, 400)

@pytest.mark.slow  # ~11 s
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(command((1, 800), WIDE_IDS), min_size=300, max_size=800))
def test_compiled_book_matches_reference_over_many_levels(cmds):
    "Hundreds of price levels: empty levels kept in place, then compacted away, must not change anything."
    arr = as_array(cmds)
    book, ref = OrderBook(capacity=16), ReferenceBook()
    assert book.process(arr).tolist() == ref.process(arr)
    assert book.depth(10_000) == ref.depth(10_000) and book.queues()["bids"] == [
        (p, [(o.id, o.visible, o.remaining) for o in q]) for p, q in sorted(ref.levels[0].items(), reverse=True)]

def test_empty_levels_are_compacted():
    book = OrderBook()
    for i in range(1, 301): book.submit(i, "buy", i, 1)
    for i in range(2, 300): book.cancel(i)  # all but the best and the worst level
    assert book._S[S_PN + 0] < 100 and book.depth(5) == {"bids": [(300, 1), (1, 1)], "asks": []}
    for i in range(2, 300): book.submit(i, "buy", i, 2)
    assert book.depth(2) == {"bids": [(300, 1), (299, 2)], "asks": []}

@settings(max_examples=100, deadline=None)
@given(st.lists(command(), min_size=1, max_size=60))
def test_one_by_one_equals_batch(cmds):
    arr = as_array(cmds)
    batch, single = OrderBook(), OrderBook()
    events = batch.process(arr)
    one_by_one = np.concatenate([single.process(arr[i:i + 1]) for i in range(len(arr))])
    assert events.tobytes() == one_by_one.tobytes()

def test_deep_sweep_grows_the_event_buffer():
    book = OrderBook(capacity=16)
    cmds = np.zeros(5001, COMMAND_DTYPE)
    cmds["order_id"] = np.arange(1, 5002)
    cmds["side"][:5000], cmds["price"][:5000], cmds["qty"][:5000] = 1, np.arange(100, 5100), 1
    cmds["side"][5000], cmds["kind"][5000], cmds["qty"][5000] = 0, 1, 10_000  # a market order through 5000 levels
    events = book.process(cmds)
    assert (events["kind"] == 1).sum() == 5000 and events["seq"].tolist() == list(range(1, len(events) + 1))
    assert book.depth() == {"bids": [], "asks": []} and len(book) == 0

def test_far_prices_are_just_more_levels():
    book = OrderBook()
    book.submit(1, "sell", 1 << 39, 1)
    book.submit(2, "buy", 1, 1)
    book.submit(3, "sell", 50, 1)
    assert book.depth() == {"bids": [(1, 1)], "asks": [(50, 1), (1 << 39, 1)]}

@pytest.mark.parametrize("kwargs,words", [
    (dict(order_id=1.5), "order_id: expected an integer"), (dict(side="long"), "side: expected one of buy, sell"),
    (dict(kind="twap"), "kind: expected one of limit, market, stop, stop_limit"), (dict(tif="DAY"), "tif: expected one of GTC"),
    (dict(stp="maybe"), "stp: expected one of none"), (dict(qty="5"), "qty: expected an integer"),
    (dict(price=True), "price: expected an integer")])
def test_wrong_types_raise_and_change_nothing(kwargs, words):
    book = OrderBook()
    book.submit(1, "buy", 100, 5)
    args = dict(order_id=2, side="buy", price=100, qty=5) | kwargs
    with pytest.raises(ValidationError, match=words): book.submit(**args)
    assert book.depth() == {"bids": [(100, 5)], "asks": []} and len(book) == 1

@pytest.mark.parametrize("call,reason", [
    (lambda b: b.submit(2, "buy", 100, 0), "invalid_qty"), (lambda b: b.submit(2, "buy", 100, -3), "invalid_qty"),
    (lambda b: b.submit(2, "buy", 100, 10**30), "invalid_qty"), (lambda b: b.submit(2, "buy", 101, 5), "off_tick"),
    (lambda b: b.submit(2, "buy", 0, 5), "invalid_price"), (lambda b: b.submit(1, "buy", 100, 5), "duplicate_id"),
    (lambda b: b.submit(2, "buy", None, 5, kind="stop"), "invalid_stop_price"),
    (lambda b: b.submit(2, "buy", None, 5, kind="stop", stop_price=103), "off_tick"),
    (lambda b: b.submit(2, "buy", 100, 5, display_qty=6), "invalid_display"),
    (lambda b: b.submit(2, "buy", 100, 5, tif="IOC", post_only=True), "invalid_combination"),
    (lambda b: b.submit(2, "buy", None, 5, kind="market", display_qty=1), "invalid_combination"),
    (lambda b: b.cancel(9), "unknown_id"), (lambda b: b.cancel(1, user=8), "not_owner"),
    (lambda b: b.modify(9, qty=1), "unknown_id"), (lambda b: b.modify(1, qty=1, user=8), "not_owner"),
    (lambda b: b.modify(1, qty=-1), "invalid_qty"), (lambda b: b.modify(1, price=3), "off_tick"),
    (lambda b: b.modify(3, price=110), "invalid_combination"), (lambda b: b.modify(3, stop_price=121), "off_tick"),
    (lambda b: b.modify(3, stop_price=-2), "invalid_stop_price"), (lambda b: b.modify(3, qty=-1), "invalid_qty"),
    (lambda b: b.modify(1, stop_price=120), "invalid_combination"), (lambda b: b.modify(4, price=110), "post_only_would_take")])
def test_bad_commands_are_rejected_and_change_nothing(call, reason):
    book = OrderBook(tick_size=2)
    book.submit(1, "buy", 100, 5)
    book.submit(3, "buy", None, 5, kind="stop", stop_price=120)
    book.submit(4, "buy", 98, 5, post_only=True)
    book.submit(5, "sell", 110, 5)
    before = (book.depth(), {i: book.order(i) for i in range(10)}, len(book))
    [event] = call(book)
    assert (event.kind, event.reason) == ("rejected", reason)
    assert (book.depth(), {i: book.order(i) for i in range(10)}, len(book)) == before

def test_modify_needs_something_to_change():
    with pytest.raises(ValidationError, match="expected a new price, qty or stop_price"): OrderBook().modify(1)
