"""Real-estate valuation: out-of-sample accuracy on the Windsor sales, a million valuations at once, and one through the app's path.

Accuracy: the cross-validated RMSE of log price (10 folds, the same for every model) of the textbook hedonic OLS fitted
by statsmodels (the peer) and of each of our candidates (the OLS again in scikit-learn, Huber, ridge, boosting); ours is
the best. Batch: 1,000,000 synthetic houses (100,000 with --quick) from `realestate.market.synthetic`, valued by the
app's `Valuer` (each property checked, the best model, the conformal interval) against statsmodels' OLS prediction of
the same rows; the interval's coverage of their synthetic prices is printed. One: `appraise` (value, interval,
contributions, 5 comparables) of 200 different houses (20 with --quick) against statsmodels' textbook prediction with
its interval (`get_prediction().summary_frame`), p50 and p99 in milliseconds. Last line: a JSON object."""
import argparse, json, os, platform, statistics, time
import numpy as np
import pandas as pd
from timing import percentile, timed

def statsmodels_cv(sales, folds) -> float:
    "The peer: statsmodels' OLS of log price refitted on each fold, the RMSE on the held-out fold, averaged."
    import statsmodels.api as sm
    from sklearn.model_selection import KFold
    from aiplatform.realestate.valuation import design
    X, y = sm.add_constant(design(sales)), np.log(sales.price.astype(float))
    errors = [np.sqrt(np.mean((y.iloc[b] - sm.OLS(y.iloc[a], X.iloc[a]).fit().predict(X.iloc[b])) ** 2))
              for a, b in KFold(folds, shuffle=True, random_state=0).split(X)]
    return float(np.mean(errors))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 houses, 20 single valuations")
    args = ap.parse_args()
    n, singles = (100_000, 20) if args.quick else (1_000_000, 200)
    import statsmodels.api as sm
    from aiplatform.realestate.appraisal import appraise, valuer
    from aiplatform.realestate.market import synthetic
    from aiplatform.realestate.valuation import LIMITS, cv_rmse, design, windsor
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    sales = windsor()
    peer_cv, cv = statsmodels_cv(sales, 10), cv_rmse(sales, 10)
    print(f"CV RMSE of log price, 10 folds: statsmodels OLS (the peer) {peer_cv:.4f}; ours " +
          ", ".join(f"{m} {r:.4f}" for m, r in cv.rmse.items()) + f" -> best {cv.index[0]} {cv.rmse.iloc[0]:.4f}")
    assert abs(cv.loc["ols", "rmse"] - peer_cv) < 1e-9, "the scikit-learn OLS must be statsmodels' fit"
    assert cv.rmse.iloc[0] < peer_cv, "ours must beat the textbook OLS out of sample"
    v = valuer(0.1)
    market = synthetic(n, seed=7)
    houses = market.drop(columns="price")
    start = time.perf_counter()
    values = v.value(houses)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    v.ols.predict(sm.add_constant(design(houses)))
    peer_s = time.perf_counter() - start
    covered = float(((market.price >= values.low) & (market.price <= values.high)).mean())
    print(f"{n:,} valuations: ours {ours_s:.2f} s ({n / ours_s:,.0f}/s, checked, with intervals; target < 10 s), "
          f"statsmodels OLS predict {peer_s:.2f} s ({n / peer_s:,.0f}/s); ratio {peer_s / ours_s:.2f}; interval coverage {covered:.3f}")
    picks = [{k: int(x) for k, x in row.items()} for row in houses.head(singles)[list(LIMITS)].to_dict("records")]
    one = timed(lambda p: appraise(p), picks)
    fit = v.ols
    textbook = timed(lambda p: fit.get_prediction(sm.add_constant(design(pd.DataFrame([p])), has_constant="add")).summary_frame(alpha=0.1), picks)
    print(f"one valuation through the app's path (value, interval, contributions, 5 comparables): p50 {statistics.median(one):.1f} ms, "
          f"p99 {percentile(one, 0.99):.1f} ms; statsmodels' prediction with its interval p50 {statistics.median(textbook):.1f} ms, "
          f"p99 {percentile(textbook, 0.99):.1f} ms")
    print(json.dumps(dict(cv_rmse_ols=round(peer_cv, 4), cv_rmse_best=round(float(cv.rmse.iloc[0]), 4), best=cv.index[0],
                          valuations_per_s=round(n / ours_s), valuations_s=round(ours_s, 2), vs_statsmodels_predict=round(peer_s / ours_s, 2),
                          coverage=round(covered, 3), one_p50_ms=round(statistics.median(one), 1), one_p99_ms=round(percentile(one, 0.99), 1),
                          statsmodels_one_p99_ms=round(percentile(textbook, 0.99), 1), houses=n)))

if __name__ == "__main__": main()
