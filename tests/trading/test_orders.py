"""Orders as clients send them, fuzzed: whatever JSON object arrives, the answer is a checked order or one
`ValidationError` line that starts with the field it is about, never another exception."""
from hypothesis import given, settings, strategies as st
from aiplatform.core import ValidationError
from aiplatform.trading.orders import Cancel, Modify, Order, plain_order

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False) | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)
FIELDS = ["cid", "symbol", "side", "kind", "tif", "price", "qty", "stop_price", "display_qty", "post_only", "stp", "extra"]
likely = {"cid": st.sampled_from(["c-1", "c:2.x_Y", "", "a b", "é", "x" * 37]), "symbol": st.sampled_from(["EURUSD", "GOOG", "eurusd", "", "A B"]), "side": st.sampled_from(["buy", "sell"]),
          "kind": st.sampled_from(["limit", "market", "stop", "stop_limit"]), "tif": st.sampled_from(["GTC", "IOC", "FOK", "gtc"]), "qty": st.integers(-5, 200), "price": st.integers(-5, 200)}

@st.composite
def requests(draw):
    "A JSON object with some order fields, each either a plausible value or any JSON value."
    names = draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS)))
    return {n: draw(likely[n] if n in likely and draw(st.booleans()) else json_values) for n in names}

@settings(max_examples=400, deadline=None)
@given(fields=requests())
def test_any_request_is_an_order_or_one_line_naming_its_field(fields):
    for model, root in ((Order, "order"), (Modify, "modify"), (Cancel, "cancel")):
        try: model(**fields)
        except ValidationError as e:
            message = str(e)
            assert "\n" not in message and message.split(":")[0].split(" ")[0].split("[")[0] in FIELDS + [root], message

PLAIN = [{"cid": "c-1", "symbol": "EURUSD", "side": "buy", "price": 100, "qty": 1}, {"cid": "m-1", "symbol": "GOOG", "side": "sell", "kind": "market", "qty": 3}]

@st.composite
def near_plain(draw):
    "A plain limit or market order with a few of its fields changed (to a plausible value or any JSON value), removed or added."
    fields = dict(draw(st.sampled_from(PLAIN)))
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=3)):
        change = draw(st.sampled_from(["likely", "any", "remove"]))
        if change == "remove": fields.pop(name, None)
        else: fields[name] = draw(likely[name] if change == "likely" and name in likely else json_values)
    return fields

@settings(max_examples=600, deadline=None)
@given(fields=st.one_of(near_plain(), requests()))
def test_plain_order_takes_what_order_takes_and_nothing_else(fields):
    "The service's fast reading of a plain order agrees with `Order`: the same fields and book command when both take it, and it takes every plain one."
    try: order = Order(**fields)
    except ValidationError: order = None
    plain = plain_order(fields)
    if plain is not None:
        assert order is not None and {f: getattr(plain, f) for f in Order.model_fields} == order.model_dump()
        assert plain.command(12, 34) == order.command(12, 34)
    elif order is not None: assert order.kind not in ("limit", "market") or set(fields) - {"cid", "symbol", "side", "kind", "tif", "price", "qty"}
