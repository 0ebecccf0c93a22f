"""A connection's outbox between the book feed and a reader of random speed, who subscribes and unsubscribes too: memory
stays bounded, the reader's local book never goes out of sync, and it ends equal to the book."""
import random
from hypothesis import given, settings, strategies as st
from aiplatform.trading.book import OrderBook
from aiplatform.trading.feed import BookFeed, LocalBook
from aiplatform.platform.services import RateLimit
from aiplatform.trading.sessions import Outbox

def _change(rng, books, live, i) -> str:
    "Cancel one of a random book's `live` orders or place order `i` near its touch; the book's symbol."
    s = rng.choice(list(books))
    if live[s] and rng.random() < 0.3: books[s].cancel(live[s].pop(rng.randrange(len(live[s]))))
    else:
        side = rng.choice(("buy", "sell"))
        books[s].submit(i, side, (100 - rng.randint(0, 15)) if side == "buy" else (101 + rng.randint(0, 15)), rng.randint(1, 9))
        live[s].append(i)
    return s

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), limit=st.integers(1, 20))
def test_a_slow_reader_stays_in_sync_within_bounded_memory(seed, limit):
    rng, books = random.Random(seed), {s: OrderBook(tick_size=1) for s in "AB"}
    feeds = {s: BookFeed(s, b) for s, b in books.items()}
    locals_ = {s: LocalBook(s) for s in feeds}
    box = Outbox(limit)
    for s, f in feeds.items(): locals_[s].apply(f.snapshot())
    live = {s: [] for s in feeds}
    for i in range(1, 300):
        s = _change(rng, books, live, i)
        if (delta := feeds[s].update()) is not None: box.put(delta)
        box.trim()  # as the connection does for a reader behind
        assert len(box.queue) <= limit + len(feeds) and box.closed is None  # a mark at most for each symbol beside the limit
        if rng.random() < 0.2:
            for m in box.take(lambda symbol: feeds[symbol].snapshot(), n=rng.randint(1, 3)): locals_[m["symbol"]].apply(m)
    for m in box.take(lambda symbol: feeds[symbol].snapshot()): locals_[m["symbol"]].apply(m)
    assert all(locals_[s].depth() == books[s].depth() for s in feeds)

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), limit=st.integers(1, 20))
def test_a_slow_reader_that_subscribes_and_unsubscribes_stays_in_sync(seed, limit):
    rng, books = random.Random(seed), {s: OrderBook(tick_size=1) for s in "AB"}
    feeds = {s: BookFeed(s, b) for s, b in books.items()}
    box, subscribed, locals_ = Outbox(limit), set(), {}
    snap = lambda symbol: feeds[symbol].snapshot()
    def subscribe(s, op):  # as service._subscribe does for a book
        box.stale.pop(s, None)
        if op == "unsubscribe": subscribed.discard(s); box.put({"type": "unsubscribed", "channel": "book", "symbol": s})
        else: subscribed.add(s); box.put({"type": "subscribed", "channel": "book", "symbol": s}); box.put(snap(s))
    def read(messages):  # the reader: a book from the snapshot after `subscribed`, dropped at `unsubscribed`
        for m in messages:
            if m["type"] == "subscribed": locals_[m["symbol"]] = LocalBook(m["symbol"])
            elif m["type"] == "unsubscribed": locals_.pop(m["symbol"], None)
            elif m["symbol"] in locals_: locals_[m["symbol"]].apply(m)  # BookOutOfSync on a delta before its snapshot
    live = {s: [] for s in feeds}
    for i in range(1, 300):
        if rng.random() < 0.1: subscribe(rng.choice("AB"), rng.choice(("subscribe", "unsubscribe")))
        s = _change(rng, books, live, i)
        if (delta := feeds[s].update()) is not None and s in subscribed: box.put(delta)
        box.trim()
        if box.closed: return  # answers alone past the limit: a slow consumer, closed
        if rng.random() < 0.2: read(box.take(snap, n=rng.randint(1, 3)))
    read(box.take(snap))
    assert all(locals_[s].depth() == books[s].depth() for s in subscribed)  # before: a delta before its snapshot, the fresh snapshot ahead of `subscribed`

def test_other_messages_past_the_limit_close_the_connection_and_free_its_queue():
    box = Outbox(limit=2)
    for i in range(3): box.put({"type": "fill", "order_id": i})
    assert len(box.queue) == 3  # a reader that keeps up may take them all at once
    box.trim()
    assert (box.closed, len(box.queue)) == ("slow consumer: 3 messages waiting, at most 2 ([trading] queue_limit)", 0)
    box.put({"type": "fill", "order_id": 9})
    assert len(box.queue) == 0

def test_book_messages_give_way_to_others_before_the_connection_is_closed():
    box = Outbox(limit=3)
    for i in range(3): box.put({"type": "book", "symbol": "AB"[i % 2], "seq": i})
    box.put({"type": "trade", "symbol": "A"})
    box.trim()
    assert ([m["type"] for m in box.queue], set(box.stale), box.closed) == (["fresh", "fresh", "trade"], {"A", "B"}, None)
    assert [m["type"] for m in box.take(lambda symbol: {"type": "book_snapshot", "symbol": symbol})] == ["book_snapshot"] * 2 + ["trade"]

def test_the_rate_limit_refills_at_its_rate():
    now = [0.0]
    limit = RateLimit(rate=10, burst=1, clock=lambda: now[0])
    passed = 0
    for _ in range(1000):
        now[0] += 0.01
        passed += limit.take()
    assert passed == 100

def test_a_fresh_snapshot_goes_where_its_symbols_first_book_message_stood():
    "Not first of all: a subscription's snapshot dropped comes back after its `subscribed` answer (before: ahead of it, and a client waiting for the answer threw the snapshot away)."
    box = Outbox(limit=2)
    box.put({"type": "trade", "symbol": "A"})
    box.put({"type": "subscribed", "channel": "book", "symbol": "B"})
    for seq in range(3): box.put({"type": "book", "symbol": "B", "seq": seq})
    box.trim()
    sent = box.take(lambda symbol: {"type": "book_snapshot", "symbol": symbol})
    assert [m["type"] for m in sent] == ["trade", "subscribed", "book_snapshot"] and box.stale == {}

def test_an_unsubscribe_drops_the_mark_and_a_new_subscription_gets_its_own_snapshot_once():
    box = Outbox(limit=1)
    for seq in range(3): box.put({"type": "book", "symbol": "B", "seq": seq})
    box.trim()
    box.stale.pop("B")  # unsubscribed, as the service does: no snapshot for it
    box.put({"type": "subscribed", "channel": "book", "symbol": "B"})
    box.put({"type": "book_snapshot", "symbol": "B", "seq": 9})
    box.trim()  # its new snapshot gives way too: a new mark, after `subscribed`; the old one goes
    sent = box.take(lambda symbol: {"type": "book_snapshot", "symbol": symbol, "seq": 10})
    assert [(m["type"], m.get("seq")) for m in sent] == [("subscribed", None), ("book_snapshot", 10)]
