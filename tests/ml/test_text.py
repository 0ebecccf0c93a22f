"Sentiment and the text checks: a batch keeps its good rows, the limit is the setting's, scores are stable."
import numpy as np
import pytest
from aiplatform.core import ValidationError, load_settings
from aiplatform.ml.text import sentiment

def test_a_bad_row_is_reported_and_the_rest_analysed(tmp_path):
    s = load_settings(env={}, platform={"data_dir": tmp_path}, ml={"max_text_kb": 1})
    texts = ["What a fantastic, delightful film.", "x" * 2000, None, "This is a disaster, I want my money back."]
    out = sentiment(texts, s)
    assert list(out.label) == ["positive", None, None, "negative"]
    assert out.error[1] == "texts[1]: 2.0 KB, at most 1 KB ([ml] max_text_kb)" and out.error[2] == "texts[2]: expected text, got NoneType"
    np.testing.assert_array_equal(out.score[[0, 3]], sentiment([texts[0], texts[3]], s).score)  # a row's result is its own

@pytest.mark.parametrize("texts,words", [("", "text: empty"), ("\x00\x01binary", "text: binary data"), (b"bytes", "texts: expected a text"),
                                         (42, "texts: expected a text or a list of texts, got int")])
def test_one_bad_text_is_refused(texts, words):
    with pytest.raises(ValidationError, match=words): sentiment(texts)

def test_scores_order_texts_by_feeling():
    out = sentiment(["Absolutely wonderful, best day ever!", "Pretty good overall.", "The meeting is at 3 pm.",
                     "Not great, somewhat disappointing.", "Horrible, disgusting, the worst experience of my life."])
    assert list(out.score) == sorted(out.score, reverse=True)
    assert list(out.label) == ["positive", "positive", "neutral", "negative", "negative"]

def test_a_labels_template_is_text_not_a_format_string():
    "Only `{}` is replaced: `{x}` or `{0.__class__}` in a template stay as they are (str.format would read them)."
    from aiplatform.ml.text import zero_shot
    out = zero_shot("The striker scored twice.", ["sports", "cooking"], template="{0.__class__} {x} This text is about {}.")
    assert out.label[0] == "sports" and out.error[0] is None
