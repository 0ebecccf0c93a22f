"Predictive analytics on any table: files in, leakage guards, models compared, intervals that cover what they say on fresh rows, a classification of several classes, rows checked against the schema, models kept per user."
import numpy as np
import pandas as pd
import pytest
from aiplatform.core import NotFound, TooLarge, ValidationError, load_settings
from aiplatform.ml.tabular import load_model, predict, read_table, save_model, train

def linear_table(n, seed):
    "y = 3 x1 - 2 x2 + 5 [colour = red] + N(0, 1): known noise, a category, a missing value here and there."
    rng = np.random.default_rng(seed)
    x1, x2, colour = rng.normal(size=n), rng.normal(size=n), rng.choice(["red", "blue", "green"], n)
    y = 3 * x1 - 2 * x2 + 5 * (colour == "red") + rng.normal(size=n)
    df = pd.DataFrame(dict(x1=x1, x2=x2, colour=colour, y=y))
    df.loc[rng.choice(n, n // 50, replace=False), "x2"] = np.nan
    return df

def test_intervals_cover_what_they_say_on_fresh_rows():
    m = train(linear_table(1500, 0), "y", alpha=0.1)
    fresh = linear_table(4000, 1)
    p = predict(m, fresh.drop(columns="y"))
    covered = ((fresh.y >= p.lower) & (fresh.y <= p.upper)).mean()
    assert 0.86 <= covered <= 0.94, covered  # 90% asked
    assert m.best in ("linear", "ridge") and m.metrics["rmse"] < 1.15  # the noise's own RMSE is 1
    assert list(m.importance.column[:2]) == ["x1", "colour"] or list(m.importance.column[:2]) == ["x1", "x2"]

def test_leaky_columns_are_left_out_and_said():
    df = linear_table(300, 2).assign(row_id=range(300), y_copy=lambda d: d.y * 100 + 7)
    m = train(df, "y")
    assert [(d["column"], d["why"].split(":")[0]) for d in m.dropped] == [("row_id", "ID-like"), ("y_copy", "derived from the target")]
    assert set(m.schema) == {"x1", "x2", "colour"}

def test_a_classification_of_three_classes():
    from sklearn.datasets import load_iris
    iris = load_iris(as_frame=True).frame.assign(species=lambda d: d.target.map(dict(enumerate(["setosa", "versicolor", "virginica"])))).drop(columns="target")
    m = train(iris, "species")
    assert m.task == "classification" and m.classes == ["setosa", "versicolor", "virginica"]
    assert m.comparison.loc[m.best, "accuracy"] > 0.9 and m.comparison.loc["baseline", "accuracy"] < 0.4
    p = predict(m, iris.drop(columns="species"))
    assert (p.prediction == iris.species).mean() > 0.95 and np.allclose(p.filter(like="p_").sum(1), 1)

def test_files_and_bad_input(tmp_path):
    df = linear_table(100, 3)
    df.to_csv(tmp_path/"t.csv", index=False), df.to_parquet(tmp_path/"t.parquet", engine="fastparquet")
    assert read_table(tmp_path/"t.csv").shape == read_table(tmp_path/"t.parquet").shape == (100, 4)
    (tmp_path/"t.xlsx").write_bytes(b"x")
    for source, words in ((tmp_path/"t.xlsx", "expected a .csv or .parquet file"), (tmp_path/"none.csv", "no such file"), (df.head(5), "5 rows, at least 20")):
        with pytest.raises((ValidationError, NotFound), match=words): read_table(source)
    with pytest.raises(TooLarge, match="at most 0 MB"): read_table(tmp_path/"t.csv", max_mb=0)
    with pytest.raises(ValidationError, match="target 'price': not a column; columns: x1, x2, colour, y"): train(df, "price")
    with pytest.raises(ValidationError, match="alpha 0.7: expected a miscoverage from 0 to 0.5"): train(df, "y", alpha=0.7)
    with pytest.raises(ValidationError, match="drop: 'zz' is not a column"): train(df, "y", drop=["zz"])
    m = train(df, "y", drop=["colour"])
    with pytest.raises(ValidationError, match="column 'x1': expected numbers, got 'n/a' in row 0"):
        predict(m, pd.DataFrame(dict(x1=["n/a"], x2=[1.0])))
    assert len(predict(m, pd.DataFrame(dict(x1=["1.5"], x2=[None])))) == 1  # numbers as text, a missing value: imputed

def test_each_user_keeps_their_own_models(tmp_path):
    s = load_settings(env={}, platform={"data_dir": tmp_path})
    m = train(linear_table(200, 4), "y")
    assert save_model(m, "ann", "demo", s) == 1 and save_model(m, "ann", "demo", s) == 2
    assert load_model("ann", "demo", 1, s).version == 1
    with pytest.raises(NotFound, match="model 'demo': no such model of bob"): load_model("bob", "demo", settings=s)
    with pytest.raises(NotFound, match="model 'demo' version 7: no such model of ann"): load_model("ann", "demo", 7, s)
