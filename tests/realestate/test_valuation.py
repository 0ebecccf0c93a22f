"Valuation on the Windsor sales: the textbook OLS as statsmodels fits it, a model that beats it out of sample on the same folds, intervals that cover on sales left out, comparables, bad input."
import numpy as np
import pandas as pd
import pytest
from aiplatform.core import ValidationError
from aiplatform.realestate.valuation import Valuer, comparables, coefficients, cv_rmse, design, hedonic, windsor

HOUSE = dict(lotsize=6000, bedrooms=3, bathrms=2, stories=2, garagepl=1, driveway=1, recroom=0, fullbase=1, gashw=0, airco=1, prefarea=1)

def test_the_hedonic_ols_is_the_textbooks():
    fit = hedonic(windsor())
    t = coefficients(fit)
    assert abs(fit.rsquared - 0.6865) < 5e-4 and fit.nobs == 546
    assert np.allclose(t.loc[["log_lotsize", "bathrms", "airco", "prefarea"], "coef"], [0.3031, 0.1658, 0.1664, 0.1319], atol=5e-4)

def test_a_candidate_beats_the_ols_out_of_sample_on_the_same_folds():
    table = cv_rmse(windsor(), folds=10)
    assert table.index[0] != "ols" and table.rmse.iloc[0] < table.loc["ols", "rmse"]

def test_intervals_cover_sales_the_valuer_never_saw():
    sales = windsor().sample(frac=1, random_state=3).reset_index(drop=True)
    train, held = sales.iloc[:440], sales.iloc[440:]
    v = Valuer(train, alpha=0.1, folds=5)
    est = v.value(held)
    covered = ((held.price >= est.low) & (held.price <= est.high)).mean()
    assert 0.8 <= covered <= 0.98, covered

def test_comparables_are_near_and_adjusted_toward_the_property():
    sales = windsor()
    comps = comparables(sales, HOUSE, k=8)
    assert len(comps) == 8 and comps.distance.is_monotonic_increasing
    bigger = comps.lotsize > HOUSE["lotsize"] * 1.3
    assert (comps.adjusted[bigger] < comps.price[bigger]).all()  # a bigger lot than the property's: adjusted down

@pytest.mark.parametrize("bad,words", [
    ({k: v for k, v in HOUSE.items() if k != "stories"}, "column 'stories': missing"),
    ({**HOUSE, "lotsize": -5}, "row 0, column 'lotsize' -5: expected a lot of 100 to 1,000,000 square feet"),
    ({**HOUSE, "lotsize": float("nan")}, "row 0, column 'lotsize' nan: expected a lot of"),
    ({**HOUSE, "bedrooms": "three"}, "row 0, column 'bedrooms' 'three': expected 0 to 20 bedrooms"),
    ({**HOUSE, "airco": 2}, "row 0, column 'airco' 2: expected 0 \\(no\\) or 1 \\(yes\\)"),
])
def test_bad_input_is_one_error(bad, words):
    with pytest.raises(ValidationError, match=words): design(pd.DataFrame([bad]))
    with pytest.raises(ValidationError, match="k 0: expected 1 to 50 comparables"): comparables(windsor(), HOUSE, k=0)
    with pytest.raises(ValidationError, match="alpha 0.9"): Valuer(windsor(), alpha=0.9)
