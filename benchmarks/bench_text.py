"""Sentiment against VADER and TextBlob on the ICWSM-14 ground truth, and the encoder's speed against sentence-transformers'.

Accuracy: macro-F1 and accuracy on the held-out halves of the tweets, movie and Amazon sets and on the NYT editorials
(never trained on), for our head, VADER (compound +-0.05, as its README says) and TextBlob (polarity's sign), on the same
rows. Speed: texts a second through the MiniLM encoder, ours and sentence-transformers' (the peer) on the same texts, one
at a time and 64 at a time, and through the whole sentiment call. Last line: a JSON object."""
import argparse, json, os, platform, statistics, sys, time
import numpy as np
from aiplatform.core import get_settings
from aiplatform.ml.models import available, load
from aiplatform.ml.sentiment_training import icwsm_2014, scores, split, vader_labels
from aiplatform.ml.text import labels, sentiment

def textblob_labels(texts):
    from textblob import TextBlob
    return labels(np.array([TextBlob(t).sentiment.polarity for t in texts]), 1e-9)  # positive above 0, negative below

def rate(fn, texts, batch, runs) -> float:
    "Median texts a second of `fn` over `texts` in batches of `batch`."
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for i in range(0, len(texts), batch): fn(texts[i:i + batch])
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 texts of each set and few timing runs")
    args = ap.parse_args()
    df = icwsm_2014(get_settings().data_dir/"ml")
    test = df[~split(df)]
    if args.quick: test = test.groupby("set", sort=False).head(100)
    texts = test["text"].tolist()
    ours = sentiment(texts)
    table = scores(test, {"ours": ours["label"], "vader": vader_labels(texts), "textblob": textblob_labels(texts)})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {len(test):,} held-out texts")
    print(table.to_string())
    f1 = table.xs("f1", axis=1, level=1)
    margin = (f1["ours"] - f1["vader"]).min()
    print(f"smallest macro-F1 margin over VADER: {margin:+.3f} ({(f1['ours'] - f1['vader']).idxmin()})")

    from sentence_transformers import SentenceTransformer
    encoder = load("minilm")
    peer = SentenceTransformer(str(available()["minilm"].path), device="cpu")
    sample = [t for t in texts if len(t) < 400][:64 if args.quick else 512]
    runs = 1 if args.quick else 3
    speed = {}
    for batch in (1, 64):
        n = sample[:32] if batch == 1 else sample
        speed[f"ours_b{batch}"] = rate(lambda b: encoder.encode(b, batch_size=batch), n, batch, runs)
        speed[f"peer_b{batch}"] = rate(lambda b: peer.encode(b, batch_size=batch, normalize_embeddings=True), n, batch, runs)
        print(f"encoder, batch {batch:>2}: {speed[f'ours_b{batch}']:8.0f} texts/s   sentence-transformers: {speed[f'peer_b{batch}']:8.0f} texts/s"
              f"   ours / peer: {speed[f'ours_b{batch}'] / speed[f'peer_b{batch}']:.2f}")
    speed["sentiment_b64"] = rate(sentiment, sample, 64, runs)
    print(f"sentiment (checks, encoder, VADER, head), batch 64: {speed['sentiment_b64']:.0f} texts/s")
    print(json.dumps({"f1_nyt": f1.loc["nyt", "ours"], "f1_nyt_vader": f1.loc["nyt", "vader"], "f1_nyt_textblob": f1.loc["nyt", "textblob"],
                      "f1_min_margin_vs_vader": round(float(margin), 3), "texts_per_s_b1": round(speed["ours_b1"]),
                      "texts_per_s_b64": round(speed["ours_b64"]), "vs_sentence_transformers_b64": round(speed["ours_b64"] / speed["peer_b64"], 2),
                      "sentiment_texts_per_s": round(speed["sentiment_b64"])}))

if __name__ == "__main__":
    sys.exit(main())
