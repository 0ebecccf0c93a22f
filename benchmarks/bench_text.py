"""Sentiment against VADER and TextBlob on the ICWSM-14 ground truth, and the encoder's speed against sentence-transformers'.

Accuracy: macro-F1 and accuracy on the held-out halves of the tweets, movie and Amazon sets and on the NYT editorials
(never trained on), for our head on the int8 ONNX encoder (what runs on a CPU) and on torch's, VADER (compound +-0.05, as
its README says) and TextBlob (polarity's sign), on the same rows. Speed: texts a second through the MiniLM encoder, ours
on int8 ONNX and on torch, and sentence-transformers' (the peer), on the same texts, one at a time and 64 at a time, and
through the whole sentiment call. Service: one short text's round trip through the ML
service (p50, p99), and texts a second from 50 concurrent clients with micro-batching and without it (`[ml] max_batch`
= 1), on the same machine. Last line: a JSON object."""
import argparse, asyncio, json, os, platform, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import aiohttp, httpx
import numpy as np
from aiplatform.core import get_settings
from aiplatform.ml.models import Encoder, available, load
from aiplatform.ml.sentiment_training import icwsm_2014, scores, split, vader_labels
from aiplatform.ml.text import labels, sentiment, sentiment_features

def textblob_labels(texts):
    from textblob import TextBlob
    return labels(np.array([TextBlob(t).sentiment.polarity for t in texts]), 1e-9)  # positive above 0, negative below

def head_labels(texts, encoder):
    "The sentiment head's labels of `texts` from `encoder`'s embeddings (what `sentiment` does, without its checks)."
    head = load("sentiment")
    return labels(np.clip(sentiment_features(texts, encoder) @ head["w"] + head["b"], -4, 4), head["threshold"])

def rate(fn, texts, batch, runs) -> float:
    "Median texts a second of `fn` over `texts` in batches of `batch`."
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for i in range(0, len(texts), batch): fn(texts[i:i + batch])
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)

def start_service(data, max_batch):
    "The ML service on a free port with a user's key, started as `aiplatform service ml` would be."
    from aiplatform.core import load_settings
    from aiplatform.platform.auth import add_user, create_key
    settings = load_settings(env={}, platform={"data_dir": data})
    add_user(f"bench{max_batch}", "analyst", settings=settings)
    key = create_key(f"bench{max_batch}", settings=settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")} | {
        "AIPLATFORM_PLATFORM__DATA_DIR": str(data), "AIPLATFORM_ML__MAX_BATCH": str(max_batch)}
    proc = subprocess.Popen([str(Path(sys.executable).parent/"aiplatform"), "service", "ml", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/", key

def ready(proc, url):
    "Wait until the service at `url` answers its health check."
    end = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "health").status_code == 200: return
        except httpx.TransportError: pass
        if proc.poll() is not None or time.monotonic() > end: raise RuntimeError("the ML service did not start")
        time.sleep(0.2)

def round_trips(url, key, n) -> dict:
    "One short text at a time through the client: p50 and p99 in milliseconds."
    from aiplatform.ml.client import MLClient
    with MLClient(url, key) as ml:
        ml.sentiment("warm up")
        times = []
        for i in range(n):
            start = time.perf_counter()
            ml.sentiment(f"Delivery number {i} arrived early and intact, great job.")
            times.append(time.perf_counter() - start)
    times.sort()
    return {"p50_ms": times[len(times) // 2] * 1e3, "p99_ms": times[int(len(times) * 0.99)] * 1e3}

async def concurrent(url, key, clients, seconds) -> float:
    "Texts a second answered to `clients` connections each sending one short text at a time."
    from aiplatform.ml.client import MLClient
    with MLClient(url, key) as ml: headers = ml._headers()
    done, stop = 0, time.monotonic() + seconds
    async def client(http, i):
        nonlocal done
        while time.monotonic() < stop:
            async with http.post(url + "sentiment", json={"texts": [f"Client {i} finds this service quick and pleasant."]}) as r:
                assert r.status == 200, await r.text()
                await r.read()
            done += 1
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=clients)) as http:  # lighter than httpx:
        start = time.monotonic()                                                                              # the clients share the cores
        await asyncio.gather(*(client(http, i) for i in range(clients)))
        return done / (time.monotonic() - start)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 texts of each set, few timing runs, a short service run")
    args = ap.parse_args()
    df = icwsm_2014(get_settings().data_dir/"ml")
    test = df[~split(df)]
    if args.quick: test = test.groupby("set", sort=False).head(10)
    texts = test["text"].tolist()
    encoder, reference = load("minilm"), Encoder(available()["minilm"], backend="torch")
    table = scores(test, {"ours": sentiment(texts)["label"], "ours_torch": head_labels(texts, reference), "vader": vader_labels(texts),
                          "textblob": textblob_labels(texts)})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {len(test):,} held-out texts")
    print(table.to_string())
    f1 = table.xs("f1", axis=1, level=1)
    margin = (f1["ours"] - f1["vader"]).min()
    print(f"smallest macro-F1 margin over VADER: {margin:+.3f} ({(f1['ours'] - f1['vader']).idxmin()}); ours on {encoder.backend}, "
          f"largest macro-F1 difference from torch: {(f1['ours'] - f1['ours_torch']).abs().max():.3f}")

    from sentence_transformers import SentenceTransformer
    peer = SentenceTransformer(str(available()["minilm"].path), device="cpu")
    sample = [t for t in texts if len(t) < 400][:16 if args.quick else 512]
    runs = 1 if args.quick else 3
    speed = {}
    for batch in (1, 64):
        n = sample[:8 if args.quick else 32] if batch == 1 else sample
        speed[f"ours_b{batch}"] = rate(lambda b: encoder.encode(b, batch_size=batch), n, batch, runs)
        speed[f"torch_b{batch}"] = rate(lambda b: reference.encode(b, batch_size=batch), n, batch, runs)
        speed[f"peer_b{batch}"] = rate(lambda b: peer.encode(b, batch_size=batch, normalize_embeddings=True), n, batch, runs)
        print(f"encoder, batch {batch:>2}: ours on {encoder.backend} {speed[f'ours_b{batch}']:6.0f} texts/s, on torch "
              f"{speed[f'torch_b{batch}']:6.0f}; sentence-transformers {speed[f'peer_b{batch}']:6.0f}; ours / peer: "
              f"{speed[f'ours_b{batch}'] / speed[f'peer_b{batch}']:.2f}, torch / peer: {speed[f'torch_b{batch}'] / speed[f'peer_b{batch}']:.2f}")
    for batch in (1, 64):
        n = sample[:8 if args.quick else 32] if batch == 1 else sample
        speed[f"sentiment_b{batch}"] = rate(lambda b: head_labels(b, encoder), n, batch, runs)
        speed[f"sentiment_torch_b{batch}"] = rate(lambda b: head_labels(b, reference), n, batch, runs)
        print(f"sentiment (encoder, VADER, head), batch {batch:>2}: on {encoder.backend} {speed[f'sentiment_b{batch}']:6.0f} texts/s, "
              f"on torch {speed[f'sentiment_torch_b{batch}']:6.0f}")
    data, figures, services = Path(tempfile.mkdtemp()), {}, {}
    try:
        for max_batch in (64, 1): services[max_batch] = start_service(data/str(max_batch), max_batch)  # both start at once
        for proc, url, _ in services.values(): ready(proc, url)
        for max_batch, (proc, url, key) in services.items():
            if max_batch == 64: figures["rt"] = round_trips(url, key, 10 if args.quick else 300)
            figures[max_batch] = asyncio.run(concurrent(url, key, 5 if args.quick else 50, 0.5 if args.quick else 10.0))
    finally:
        for proc, _, _ in services.values(): proc.terminate(), proc.wait(30)
    rt = figures["rt"]
    print(f"service, one short text: p50 {rt['p50_ms']:.1f} ms, p99 {rt['p99_ms']:.1f} ms (target p99 50 ms)")
    print(f"service, {5 if args.quick else 50} concurrent clients: {figures[64]:.0f} texts/s micro-batched, {figures[1]:.0f} texts/s one "
          f"at a time: {figures[64] / figures[1]:.2f}x")
    print(json.dumps({"f1_nyt": f1.loc["nyt", "ours"], "f1_nyt_vader": f1.loc["nyt", "vader"], "f1_nyt_textblob": f1.loc["nyt", "textblob"],
                      "f1_min_margin_vs_vader": round(float(margin), 3), "f1_max_diff_int8_vs_torch": round(float((f1["ours"] - f1["ours_torch"]).abs().max()), 3),
                      "backend": encoder.backend, "texts_per_s_onnx": round(speed["ours_b64"]), "texts_per_s_onnx_b1": round(speed["ours_b1"]),
                      "texts_per_s_torch": round(speed["torch_b64"]), "texts_per_s_torch_b1": round(speed["torch_b1"]),
                      "vs_sentence_transformers_b64": round(speed["ours_b64"] / speed["peer_b64"], 2),
                      "sentiment_texts_per_s": round(speed["sentiment_b64"]),
                      "sentiment_texts_per_s_torch": round(speed["sentiment_torch_b64"]), "service_p50_ms": round(rt["p50_ms"], 1),
                      "service_p99_ms": round(rt["p99_ms"], 1), "batching_speedup": round(figures[64] / figures[1], 2)}))

if __name__ == "__main__":
    sys.exit(main())
