"""The model registry: the packaged encoder equals sentence-transformers' own, its int8 export agrees with torch and is chosen
by its check, a user's folder is exported, loaded and unloaded, errors name the folder."""
import json
import numpy as np
import pytest
from aiplatform.core import ConfigError, NotFound, load_settings
from aiplatform.ml import models
from aiplatform.ml.models import Encoder, available, load, loaded, unload

TEXTS = ["The market rallied after the announcement.", "Stocks fell sharply.", "ok", "Ein ganz anderer Satz auf Deutsch. " * 40]

@pytest.fixture
def s(tmp_path): return load_settings(env={}, platform={"data_dir": tmp_path/"data"}, models={"dir": tmp_path/"models"})

@pytest.fixture(scope="module")
def reference():
    "The packaged encoder on torch: the reference every int8 export is measured against."
    return Encoder(available()["minilm"], backend="torch")

def test_the_packaged_encoder_equals_sentence_transformers(reference):
    from sentence_transformers import SentenceTransformer
    peer = SentenceTransformer(str(available()["minilm"].path), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(reference.encode(TEXTS, batch_size=3), peer, atol=1e-5)

def test_on_a_cpu_the_packaged_encoder_runs_its_checked_int8_export(reference):
    encoder = load("minilm")
    assert (encoder.backend, encoder.check["chosen"]) == ("onnx-int8", True), encoder.check
    assert encoder.check["cosine_min"] >= models.MIN_COSINE and encoder.check["int8_texts_per_s"] > encoder.check["torch_texts_per_s"]
    cosine = (encoder.encode(TEXTS, batch_size=3) * reference.encode(TEXTS)).sum(1)
    assert cosine.min() >= models.MIN_COSINE, cosine

def test_an_export_outside_the_tolerance_is_not_chosen_unless_onnx_is_asked_for(monkeypatch):
    monkeypatch.setattr(models, "MIN_MEAN_COSINE", 0.9999)
    encoder = Encoder(available()["minilm"])
    assert encoder.backend == "torch" and "below the tolerance (0.95 each, 0.9999 on average)" in encoder.check["why"]
    assert Encoder(available()["minilm"], backend="onnx").backend == "onnx-int8"

def test_a_failed_export_is_recorded_and_leaves_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(models, "_CHILD", "raise SystemExit('this exporter cannot trace the model')")
    encoder = Encoder(available()["minilm"])
    assert encoder.backend == "torch" and encoder.check["why"] == "the export failed: this exporter cannot trace the model"
    with pytest.raises(ConfigError, match=r"model 'minilm' in .*: no int8 ONNX export \(the export failed: this exporter cannot"):
        Encoder(available()["minilm"], backend="onnx")

def test_a_folder_in_the_models_dir_is_exported_checked_loaded_and_unloaded(s, reference, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path/"cache"))
    reference.torch_model().save_pretrained(s.models_dir/"mine"), reference.tokenizer.save_pretrained(s.models_dir/"mine")
    info = available(s)["mine"]
    assert (info.kind, info.source) == ("encoder", f"models folder {s.models_dir}")
    mine = load("mine", s)
    check = json.loads((models.int8_folder(info)/"check.json").read_text())
    assert mine.backend == "onnx-int8" and check["texts"] == 128 and check["cosine_mean"] >= models.MIN_MEAN_COSINE
    assert ((mine.encode(TEXTS) * reference.encode(TEXTS)).sum(1) >= models.MIN_COSINE).all()
    assert {"name": "mine", "kind": "encoder", "source": info.source, "backend": "onnx-int8", "megabytes": 21.9} in loaded()
    unload("mine")
    assert "mine" not in [m["name"] for m in loaded()]
    monkeypatch.setattr(models, "_CHILD", "raise SystemExit('exported again')")  # a second load reads the cache
    assert Encoder(info).backend == "onnx-int8"

def test_missing_and_broken_models_name_the_folder(s):
    with pytest.raises(NotFound, match=f"model 'gpt': not found; available: minilm, sentiment .*= {s.models_dir}"): load("gpt", s)
    (s.models_dir/"torn").mkdir(parents=True)
    (s.models_dir/"torn"/"config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match=f"model 'torn' in {s.models_dir}/torn: cannot be loaded"): load("torn", s)
