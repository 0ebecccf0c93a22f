"The model registry: the packaged encoder equals sentence-transformers' own, a user's folder loads, errors name the folder."
import numpy as np
import pytest
from aiplatform.core import ConfigError, NotFound, load_settings
from aiplatform.ml.models import available, load, loaded, unload

TEXTS = ["The market rallied after the announcement.", "Stocks fell sharply.", "ok", "Ein ganz anderer Satz auf Deutsch. " * 40]

@pytest.fixture
def s(tmp_path): return load_settings(env={}, platform={"data_dir": tmp_path/"data"}, models={"dir": tmp_path/"models"})

def test_the_packaged_encoder_equals_sentence_transformers():
    from sentence_transformers import SentenceTransformer
    peer = SentenceTransformer(str(available()["minilm"].path), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(load("minilm").encode(TEXTS, batch_size=3), peer, atol=1e-5)

def test_a_folder_in_the_models_dir_is_listed_loaded_and_unloaded(s):
    encoder = load("minilm")
    encoder.model.save_pretrained(s.models_dir/"mine"), encoder.tokenizer.save_pretrained(s.models_dir/"mine")
    info = available(s)["mine"]
    assert (info.kind, info.source) == ("encoder", f"models folder {s.models_dir}")
    mine = load("mine", s)
    np.testing.assert_allclose(mine.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    assert {"name": "mine", "kind": "encoder", "source": info.source, "megabytes": 86.6} in loaded()
    unload("mine")
    assert "mine" not in [m["name"] for m in loaded()]

def test_missing_and_broken_models_name_the_folder(s):
    with pytest.raises(NotFound, match=f"model 'gpt': not found; available: minilm, sentiment .*= {s.models_dir}"): load("gpt", s)
    (s.models_dir/"torn").mkdir(parents=True)
    (s.models_dir/"torn"/"config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match=f"model 'torn' in {s.models_dir}/torn: cannot be loaded"): load("torn", s)
