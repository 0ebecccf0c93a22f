"The ML service as its own process: the client's answers, bad input on every route, each user's own collections, micro-batching."
import concurrent.futures, json, re, subprocess
import pytest
from aiplatform.core import NotFound, ValidationError
from aiplatform.ml.client import MLClient
from conftest import BIN, cli, clean_env, free_port, http, wait_for

@pytest.fixture(scope="module")
def models_dir(tmp_path_factory): return tmp_path_factory.mktemp("models")

@pytest.fixture(scope="module")
def service(tmp_path_factory, models_dir):
    "The ML service on a free port, and API keys of two analysts."
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path_factory.mktemp("data"), AIPLATFORM_ML__MAX_WAIT_MS=20, AIPLATFORM_MODELS__DIR=models_dir,
                    AIPLATFORM_ML__MAX_IMAGE_MB=2)
    keys = []
    for name in ("ada", "bob"):
        assert cli("users", "add", name, "--role", "analyst", env=env).returncode == 0
        keys.append(cli("users", "key", name, env=env).stdout.strip())
    port = free_port()
    proc = subprocess.Popen([str(BIN/"aiplatform"), "service", "ml", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, timeout=120)
        yield f"http://127.0.0.1:{port}/", keys
    finally:
        proc.terminate(); proc.wait(10)

def test_every_function_answers_through_the_client(service):
    url, (key, _) = service
    with MLClient(url, key) as ml:
        assert list(ml.sentiment(["Brilliant!", "Awful."]).label) == ["positive", "negative"]
        assert ml.language("Guten Morgen, wie geht es dir heute?").language[0] == "de"
        assert ml.zero_shot(["The goalkeeper saved a penalty."], ["sports", "finance"]).label[0] == "sports"
        assert ml.embed(["a", "b"]).shape == (2, 384)
        assert len(ml.keywords("Solar panels and wind turbines cut the town's power bills.", n=2)) == 2
        assert len(ml.summary("One. Two is here. Three is longer than the others.", n=1)) == 1
        assert {m["name"] for m in ml.models()["available"]} >= {"minilm", "sentiment"}

@pytest.mark.parametrize("path,body,words", [
    ("sentiment", {"texts": []}, "texts: expected a list of 1 to 10,000 texts"),
    ("sentiment", {"texts": "one"}, "texts 'one': expected a list of 1 to 10,000 texts"),
    ("sentiment", {"texts": ["a"], "extra": 1}, "extra: unknown field"),
    ("language", {}, "texts: required"),
    ("zero_shot", {"texts": ["a"], "labels": ["one"]}, "labels: expected a list of 2 to 100 labels"),
    ("zero_shot", {"texts": ["a"], "labels": ["x", "y"], "template": "no slot"}, "template"),
    ("keywords", {"text": "a", "diversity": 2}, "diversity 2: expected a diversity from 0 to 1"),
    ("summary", {"text": 5}, "text 5: expected a text"),
    ("search/notes", {"query": "x", "k": 0}, "k 0: expected 1 to 1000 results"),
    ("search/no.dots/add", {"texts": ["a"]}, "collection 'no.dots': expected 1 to 64 letters"),
    ("sentiment", [1, 2], "request body: expected a JSON object"),
])
def test_bad_input_is_a_400_naming_the_field(service, path, body, words):
    url, (key, _) = service
    status, _, answer = http(url + path, data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert status == 400 and words in answer["error"], answer

def test_no_key_no_answer(service):
    url, _ = service
    assert http(url + "sentiment", data=b'{"texts": ["hi"]}')[0] == 401

def test_a_collection_is_its_owners_alone(service):
    url, (ada, bob) = service
    with MLClient(url, ada) as a, MLClient(url, bob) as b:
        assert a.add("private", ["Ada's secret plan for the launch."], ids=["plan"])["added"] == 1
        assert a.search("private", "launch plan").id[0] == "plan"
        with pytest.raises(ValidationError, match="collection 'private': empty"): b.search("private", "launch plan")
        with pytest.raises(NotFound): b._post("search/../1/private", query="launch")

def test_concurrent_requests_share_batches(service):
    url, (key, _) = service
    def batches():
        status, _, text = http(url + "metrics", headers={"Authorization": f"Bearer {key}"})
        m = re.search(r'aiplatform_ml_batch_items_count\{function="sentiment"\} ([0-9.]+)', text.decode() if isinstance(text, bytes) else text)
        return float(m[1]) if m else 0.0
    before = batches()
    clients = [MLClient(url, key) for _ in range(16)]
    for c in clients: c._headers()  # sessions first: the requests below then all arrive within the batch window
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda c: c.sentiment(["Lovely weather today.", "Dreadful traffic."]), clients))
    assert all(list(a.label) == ["positive", "negative"] for a in answers)
    assert batches() - before < 16  # fewer model calls than requests

def _png(rgb) -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()

def test_an_image_is_analysed_and_stripped_through_the_client(service, tmp_path):
    import numpy as np
    from skimage import data
    url, (key, _) = service
    (tmp_path/"astronaut.png").write_bytes(_png(data.astronaut()))
    with MLClient(url, key) as ml:
        found = ml.analyze_image(tmp_path/"astronaut.png")
        assert set(found) == {"name", "width", "height", "format", "faces", "people", "text", "quality", "metadata", "ms"}
        assert (found["name"], len(found["faces"]), found["quality"]["sharpness"] > 100) == ("astronaut.png", 1, True)
        assert list(ml.analyze_image(_png(np.zeros((20, 20, 3), np.uint8)), what="quality, metadata")["ms"]) == ["quality", "metadata"]
        assert ml.strip_metadata(tmp_path/"astronaut.png")[:4] == b"\x89PNG"

@pytest.mark.parametrize("query,body,status,words", [
    ("?what=faces,colour", b"x", 400, "what 'faces,colour': unknown colour"),
    ("?name=a/b.png", b"x", 400, "name 'a/b.png': expected a file name"),
    ("?name=cut.png", None, 400, "cut.png: truncated or corrupt PNG"),
    ("?name=notes.txt", b"hello", 400, "notes.txt: not an image"),
    ("?name=big.png", b"\0" * (2 * 2**20 + 1), 413, "big.png: 2,097,153 bytes, at most 2 MB ([ml] max_image_mb)"),
])
def test_a_bad_image_request_is_refused_naming_the_problem(service, query, body, status, words):
    from skimage import data
    url, (key, _) = service
    if body is None: body = _png(data.astronaut())[:50_000]
    got, _, answer = http(url + "images/analyze" + query, data=body, headers={"Authorization": f"Bearer {key}", "Content-Type": "image/png"})
    assert got == status and words in answer["error"], answer
    assert http(url + "images/analyze", data=b"x")[0] == 401

def test_an_image_model_of_the_models_folder_answers_through_the_service(service, models_dir):
    from skimage import data
    from aiplatform.ml.vision.models import tiny_models
    url, (key, _) = service
    tiny_models(models_dir)  # the registry looks in the folder at each load
    with MLClient(url, key) as ml:
        found = ml.image_model(_png(data.astronaut()), "tiny-classifier", name="a.png")
        assert found["kind"] == "image-classifier" and [r["label"] for r in found["labels"]] == ["cat", "rocket", "coffee"]
        assert ml.image_model(_png(data.astronaut()), "tiny-captioner")["caption"]
        with pytest.raises(ValidationError, match="model 'minilm': its kind is encoder"): ml.image_model(_png(data.astronaut()), "minilm")
        with pytest.raises(NotFound, match="model 'nope': not found"): ml.image_model(_png(data.astronaut()), "nope")
