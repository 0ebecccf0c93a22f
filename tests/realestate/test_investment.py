"Property investment figures: any loan's schedule pays off to the cent, the IRR zeroes the NPV, bad deals are refused by field."
import numpy as np
import numpy_financial as npf
import pytest
from hypothesis import given, settings, strategies as st
from aiplatform.core import ValidationError
from aiplatform.realestate.investment import amortization, analyze, deal, payment, rent_vs_buy, sensitivity

@settings(max_examples=60, deadline=None)
@given(principal=st.integers(100_000, 10**10), rate=st.floats(0, 25), years=st.integers(1, 40))
def test_any_loan_pays_off_to_the_cent(principal, rate, years):
    s = amortization(principal, rate, years)
    assert s.principal.sum() == principal and s.balance.iloc[-1] == 0 and len(s) <= 12 * years
    assert (s.interest >= 0).all() and (s.balance.diff().dropna() <= 0).all()
    assert abs(int(s.payment.iloc[0]) - payment(principal, rate, years)) <= 1 or len(s) == 1

def base(**changes):
    fields = dict(price=250_000, down_pct=25, rate_pct=6, years=30, rent=2_100, vacancy_pct=5, costs_pct=35, closing_pct=3,
                  appreciation_pct=3, rent_growth_pct=2, hold_years=7, sale_pct=6, discount_pct=8)
    return deal(**fields | changes)

def test_the_irr_zeroes_the_npv_and_the_npv_is_numpy_financials():
    figures, flows = analyze(base())
    stream = np.r_[-figures["invested"], flows.total] / 100
    assert abs(npf.npv(figures["irr_pct"] / 100, stream)) < 1e-6
    assert abs(figures["npv"] / 100 - npf.npv(0.08, stream)) < 0.01
    assert len(flows) == 7 and flows.sale.iloc[:-1].eq(0).all() and flows.sale.iloc[-1] > 0

def test_a_cash_purchase_has_no_debt_and_cash_on_cash_equals_the_cap_rate_without_closing_costs():
    figures, flows = analyze(base(down_pct=100, closing_pct=0))
    assert figures["loan"] == 0 and figures["dscr"] is None and (flows.debt_service == 0).all()
    assert abs(figures["cash_on_cash_pct"] - figures["cap_rate_pct"]) < 1e-9

def test_higher_rent_buys_more_and_dearer_money_less():
    t = sensitivity(base(), [225_000, 250_000], [5, 7], [1_900, 2_300])
    assert (t.xs(2_300, level="rent").to_numpy() > t.xs(1_900, level="rent").to_numpy()).all()
    assert (t[5] > t[7]).all()
    assert rent_vs_buy(250_000, 20, 6, 30, 500, 1.5, 3, 3, 10, 3, 6, 5)["cheaper"] == "rent"  # a cheap rent: renting wins

@pytest.mark.parametrize("changes,words", [
    (dict(price=-1), "price -1: expected a price above 0"), (dict(rate_pct=101), "rate_pct 101: expected a mortgage rate from 0 to 100 %"),
    (dict(hold_years=0), "hold_years 0: expected a holding period of 1 to 50 years"), (dict(colour="red"), "colour: unknown field"),
    (dict(rent="a lot"), "rent 'a lot'"),
])
def test_a_bad_deal_is_one_error_naming_the_field(changes, words):
    with pytest.raises(ValidationError, match=words.replace("(", r"\(")): base(**changes)
