"Appraisals as the app, the report and the benchmark ask for them: the form's fields checked, more house worth more, intervals that cover a synthetic market they never saw, and the report run through papermill."
import pytest
from hypothesis import given, settings, strategies as st
from aiplatform.core import ValidationError
from aiplatform.realestate.appraisal import appraise, check_property, valuer
from aiplatform.realestate.market import synthetic
from aiplatform.realestate.valuation import AMENITIES, LIMITS
from conftest import cli

HOUSE = dict(lotsize=6000, bedrooms=3, bathrms=2, stories=2, garagepl=1, driveway=1, recroom=0, fullbase=1, gashw=0, airco=1, prefarea=1)

houses = st.fixed_dictionaries({c: st.integers(lo, hi if c != "lotsize" else 50_000) for c, (lo, hi, _) in LIMITS.items()})

@settings(max_examples=60, deadline=None)
@given(houses, st.sampled_from(["lotsize", "bathrms", "stories", "garagepl", *AMENITIES]))
def test_more_house_is_worth_more(house, more):
    "Every feature but bedrooms adds to the price in the hedonic equation; the valuation agrees, for any house."
    if more in AMENITIES: house, bigger = {**house, more: 0}, {**house, more: 1}
    elif house[more] >= LIMITS[more][1]: return
    else: bigger = {**house, more: house[more] + (1000 if more == "lotsize" else 1)}
    low, high = appraise(house, k=1)["value"], appraise(bigger, k=1)["value"]
    assert high > low, (more, house)

def test_intervals_cover_a_synthetic_market_they_never_saw():
    market = synthetic(200_000, seed=11)
    values = valuer(0.1).value(market.drop(columns="price"))
    covered = ((market.price >= values.low) & (market.price <= values.high)).mean()
    assert 0.88 <= covered <= 0.93, covered
    wider = valuer(0.05).value(market.drop(columns="price").head(1000))
    assert ((wider.high - wider.low) > (values.high - values.low).head(1000)).all()

@pytest.mark.parametrize("bad,words", [
    ({**HOUSE, "pool": 1}, "pool: unknown field"),
    ({**HOUSE, "lotsize": 50}, "lotsize 50: expected a lot of 100 to 1,000,000 square feet"),
    ({**HOUSE, "stories": 0}, "stories 0: expected 1 to 10 stories"),
    ({k: v for k, v in HOUSE.items() if k != "airco"}, "airco: required"),
])
def test_a_bad_form_is_one_error_naming_the_field(bad, words):
    with pytest.raises(ValidationError, match=words): check_property(bad)

def test_the_property_report_runs_and_refuses_a_bad_house(env, tmp_path):
    r = cli("report", "run", "property", "-p", "lotsize", "8000", "-p", "rent", "900", "--out", tmp_path/"ok", env=env)
    assert r.returncode == 0, r.stderr
    page = (tmp_path/"ok"/"property.html").read_text()
    assert "Comparable sales" in page and "IRR by rent, price and rate" in page and "rent 900 a month" in page
    r = cli("report", "run", "property", "-p", "lotsize", "-8000", "--out", tmp_path/"bad", env=env)
    assert r.returncode != 0 and "lotsize -8000: expected a lot of 100 to 1,000,000 square feet" in r.stderr, r.stderr
