"The ML service as its own process: the client's answers, bad input on every route, each user's own collections, micro-batching."
import concurrent.futures, json, re, subprocess
import numpy as np
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

def _ws(url, path, key, exchange):
    "Run `exchange(ws)` (an async function) on a WebSocket of the service, in a fresh event loop."
    import asyncio, aiohttp
    async def run():
        async with aiohttp.ClientSession() as session, session.ws_connect(url.replace("http", "ws") + path, headers={"Authorization": f"Bearer {key}"}) as ws:
            return await exchange(ws)
    return asyncio.run(run())

def test_speech_and_audio_answer_through_the_client(service):
    url, (key, _) = service
    with MLClient(url, key) as ml:
        voices = ml.voices()
        assert voices.name[0] == "joe" and (voices.engine == "espeak").sum() > 50
        audio, rate = ml.speak("Hello there. How are you?", pause_ms=100)
        assert rate == 22_050 and 1 < len(audio) / rate < 5
        from aiplatform.ml.voice.audio import wav_bytes
        from aiplatform.ml.voice.synthesis import SpeechOptions, speak
        np.testing.assert_allclose(audio, speak("Hello there. How are you?", SpeechOptions(pause_ms=100))[0], atol=1 / 2**15)
        wav = wav_bytes(audio, rate)
        louder, same_rate = ml.process_audio(wav, [{"type": "gain", "db": 6}], name="hello.wav")
        assert same_rate == rate and np.abs(louder).max() == pytest.approx(min(1, 2 * np.abs(audio).max()), abs=0.01)
        normal, _ = ml.process_audio(wav, [], lufs=-20, name="hello.wav")
        assert ml.analyze_audio(wav_bytes(normal, rate), name="n.wav")["loudness_lufs"] == pytest.approx(-20, abs=0.3)
        with pytest.raises(ValidationError, match=r"preset\[0\].db 90: expected a gain from -60 to \+40 dB"): ml.process_audio(wav, [{"type": "gain", "db": 90}])
        with pytest.raises(ValidationError, match="notes.wav: not audio"): ml.analyze_audio(b"just text", name="notes.wav")
        with pytest.raises(NotFound, match="voice 'zz': not found"): ml.speak("hi", voice="zz")
        with pytest.raises(ValidationError, match="speed: unknown field|volume: unknown field"): ml.speak("hi", volume=3)

def test_text_streams_in_as_audio_chunks_in_order(service):
    url, (key, _) = service
    text = "First sentence here. Second one follows! And a third?"
    async def exchange(ws):
        await ws.send_json({"text": text, "pause_ms": 0})
        start, heads, chunks = await ws.receive_json(), [], []
        while (message := await ws.receive_json())["type"] == "chunk":
            heads.append(message)
            chunks.append(np.frombuffer(await ws.receive_bytes(), "<i2"))
        await ws.send_json({"text": ""})
        return start, heads, chunks, message, await ws.receive_json()
    start, heads, chunks, end, error = _ws(url, "voice/speak/ws", key, exchange)
    assert start == {"type": "start", "rate": 22_050, "pieces": 3, "format": "pcm_s16le"}
    assert [h["index"] for h in heads] == [0, 1, 2] and [h["text"] for h in heads] == ["First sentence here.", "Second one follows!", "And a third?"]
    assert [h["samples"] for h in heads] == [len(c) for c in chunks] and all(np.abs(c).max() > 3000 for c in chunks)
    assert end == {"type": "end", "seconds": round(sum(map(len, chunks)) / 22_050, 3)}
    assert error == {"type": "error", "error": "text: empty; expected 1 to 5,000 characters to speak", "status": 400}

def test_a_live_chain_answers_each_block_as_the_file_would(service):
    url, (key, _) = service
    from aiplatform.ml.voice.effects import process_file
    preset = [{"type": "filter", "kind": "highpass", "freq": 100}, {"type": "compressor"}, {"type": "reverb"}, {"type": "pitch", "semitones": 2}]
    audio = (np.random.default_rng(1).normal(0, 0.2, 48_000)).astype(np.float32)
    async def exchange(ws):
        await ws.send_bytes(audio[:10].tobytes())
        early = await ws.receive_json()
        await ws.send_json({"preset": preset, "rate": 48_000, "block": 960})
        ready = await ws.receive_json()
        out = []
        for i in range(0, len(audio), 960):
            await ws.send_bytes(audio[i:i + 960].astype("<f4").tobytes())
            out.append(np.frombuffer(await ws.receive_bytes(), "<f4"))
        errors = []
        for bad in (b"\0" * 5, np.zeros(961, "<f4").tobytes(), np.array([np.nan], "<f4").tobytes()):
            await ws.send_bytes(bad)
            errors.append((await ws.receive_json())["error"])
        await ws.send_json({"preset": [{"type": "gain", "db": 99}]})
        errors.append((await ws.receive_json())["error"])
        await ws.send_bytes(audio[:960].tobytes())  # the chain held through the errors
        after = np.frombuffer(await ws.receive_bytes(), "<f4")
        return early, ready, np.concatenate(out), errors, after
    early, ready, out, errors, after = _ws(url, "voice/live", key, exchange)
    assert early["error"] == "frame: send {preset, rate, block} before audio" and ready == {"type": "ready", "rate": 48_000, "block": 960}
    whole = process_file(preset, audio.astype(np.float64), 48_000)
    np.testing.assert_allclose(out, whole, atol=1e-6)
    assert errors == ["block: 5 bytes; expected 1 to 960 float32 samples (4 bytes each)", "block: 3844 bytes; expected 1 to 960 float32 samples (4 bytes each)",
                      "block: NaN or infinite samples; expected finite floats", "preset[0].db 99: expected a gain from -60 to +40 dB"]
    np.testing.assert_allclose(after, process_file(preset, np.concatenate([audio, audio[:960]]).astype(np.float64), 48_000)[-960:], atol=1e-6)

@pytest.mark.parametrize("first,words", [
    ({"preset": [], "rate": 4000}, "rate 4000: expected an integer from 8000 to 96000 Hz"),
    ({"preset": [], "block": 10_000}, "block 10000: expected an integer from 16 to 8192 samples"),
    ({"presets": []}, "presets: unknown field; expected preset, rate, block"),
    ({"preset": "loud"}, "preset: expected a list of at most 32 effects")])
def test_a_bad_live_start_is_one_error(service, first, words):
    url, (key, _) = service
    async def exchange(ws):
        await ws.send_json(first)
        return await ws.receive_json()
    assert _ws(url, "voice/live", key, exchange) == {"type": "error", "error": words, "status": 400}
