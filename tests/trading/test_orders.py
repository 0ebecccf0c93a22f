"""Orders as clients send them, fuzzed: whatever JSON object arrives, the answer is a checked order or one
`ValidationError` line that starts with the field it is about, never another exception."""
from hypothesis import given, settings, strategies as st
from aiplatform.core import ValidationError
from aiplatform.trading.orders import Cancel, Modify, Order

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False) | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)
FIELDS = ["cid", "symbol", "side", "kind", "tif", "price", "qty", "stop_price", "display_qty", "post_only", "stp", "extra"]
likely = {"cid": st.just("c-1"), "symbol": st.sampled_from(["EURUSD", "GOOG"]), "side": st.sampled_from(["buy", "sell"]),
          "kind": st.sampled_from(["limit", "market", "stop", "stop_limit"]), "qty": st.integers(-5, 200), "price": st.integers(-5, 200)}

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
