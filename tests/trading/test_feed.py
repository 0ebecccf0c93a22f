"""The book feed against the book itself: a subscriber that applies every snapshot and delta holds exactly the
publisher's view after each batch of orders, and one that misses a delta or receives a wrong one is told so."""
import random
from hypothesis import given, settings, strategies as st
import pytest
from aiplatform.trading.book import OrderBook
import zlib
from aiplatform.trading.feed import TOP, BookFeed, BookOutOfSync, LocalBook, _changes, _checksum, book_checksum, changes

def random_batches(seed, batches):
    "A book and, per batch, a few random limit orders, cancels and market orders around a mid of 1000."
    rng, book, live, next_id = random.Random(seed), OrderBook(tick_size=1), [], 1
    def batch():
        nonlocal next_id
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.2 and live: book.cancel(live.pop(rng.randrange(len(live))))
            elif r < 0.3: book.submit(next_id, rng.choice(("buy", "sell")), 0, rng.randint(1, 30), kind="market"); next_id += 1
            else:
                side = rng.choice(("buy", "sell"))
                price = 1000 - rng.randint(0, 30) if side == "buy" else 1001 + rng.randint(0, 30)
                book.submit(next_id, side, price, rng.randint(1, 50)); live.append(next_id); next_id += 1
    return book, (batch() for _ in range(batches))  # each batch submitted as the test iterates

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), depth=st.sampled_from([TOP, 25]))
def test_a_subscriber_holds_the_publishers_view_after_every_batch(seed, depth):
    book, batches = random_batches(seed, 40)
    feed, local = BookFeed("SYM", book, depth), LocalBook("SYM")
    local.apply(feed.snapshot())
    for _ in batches:
        if (delta := feed.update()) is not None: local.apply(delta)
        assert local.depth() == book.depth(depth) and local.seq == feed.seq

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), drop=st.integers(0, 30))
def test_a_missed_delta_is_noticed_and_a_snapshot_repairs_it(seed, drop):
    book, batches = random_batches(seed, 40)
    feed, local = BookFeed("SYM", book), LocalBook("SYM")
    local.apply(feed.snapshot())
    deltas = [d for _ in batches if (d := feed.update()) is not None]
    if drop + 1 >= len(deltas): return
    for d in deltas[:drop]: local.apply(d)
    with pytest.raises(BookOutOfSync, match=f"delta {drop + 2} after {drop}: a delta was missed"): local.apply(deltas[drop + 1])
    with pytest.raises(BookOutOfSync, match="before any snapshot"): local.apply(deltas[drop + 1])  # unusable until resynced
    local.apply(feed.snapshot())
    assert local.depth() == book.depth(TOP)

def test_a_wrong_quantity_in_the_top_levels_fails_the_checksum():
    book, batches = random_batches(7, 20)
    for _ in batches: pass
    feed, local = BookFeed("SYM", book), LocalBook("SYM")
    local.apply(feed.snapshot())
    book.submit(10_000, "buy", 1000, 3)
    delta = feed.update()
    delta["changes"] = [(side, price, qty + 1) for side, price, qty in delta["changes"]]
    with pytest.raises(BookOutOfSync, match=r"SYM: checksum \d+ after message 1, the publisher's \d+"): local.apply(delta)

def test_the_checksum_covers_the_top_ten_asks_then_the_top_ten_bids():
    bids, asks = [(1000 - i, 10 + i) for i in range(15)], [(1001 + i, 30 + i) for i in range(15)]
    text = "".join(str(p) + str(q) for p, q in asks[:10]) + "".join(str(p) + str(q) for p, q in bids[:10])
    assert book_checksum(bids, asks) == zlib.crc32(text.encode())

levels = st.dictionaries(st.integers(1, 40), st.integers(1, 9), max_size=12)

@settings(max_examples=300, deadline=None)
@given(old_bids=levels, old_asks=levels, new_bids=levels, new_asks=levels)
def test_changes_name_each_level_that_differs_once_in_price_order(old_bids, old_asks, new_bids, new_asks):
    view = lambda bids, asks: {"bids": sorted(bids.items(), reverse=True), "asks": sorted(asks.items())}
    diff = changes(view(old_bids, old_asks), view(new_bids, new_asks))
    for side, old, new in (("bids", old_bids, new_bids), ("asks", old_asks, new_asks)):
        mine = [(p, q) for s, p, q in diff if s == side]
        assert [p for p, _ in mine] == sorted({p for p, _ in mine})  # each price once, rising
        assert all(old.get(p, 0) != q for p, q in mine)  # each one a change
        applied = dict(old)
        for p, q in mine:
            if q: applied[p] = q
            else: del applied[p]
        assert applied == new  # and together, all of them
    sides = [s for s, _, _ in diff]
    assert sides == sorted(sides, key=("bids", "asks").index)  # bids first, then asks

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), depth=st.sampled_from([TOP, 25]))
def test_the_compiled_delta_and_checksum_equal_their_plain_twins(seed, depth):
    book, batches = random_batches(seed, 40)
    view, levels = book.depth(depth), book.depth_arrays(depth)
    for _ in batches:
        new_view, new_levels = book.depth(depth), book.depth_arrays(depth)
        assert [(("bids", "asks")[s], p, q) for s, p, q in _changes(*levels, *new_levels).tolist()] == changes(view, new_view)
        assert _checksum(*new_levels, TOP) == book_checksum(new_view["bids"], new_view["asks"])
        view, levels = new_view, new_levels
