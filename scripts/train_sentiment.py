"""Train the sentiment head that ships in aiplatform/ml/heads/sentiment.npz, and print its held-out scores beside VADER's;
also write the held-out texts an int8 encoder is checked on (aiplatform/ml/check_texts.json).

    python scripts/train_sentiment.py [--data FOLDER] [--out FILE] [--check-texts FILE]

Reproducible: the ICWSM-14 archive from vaderSentiment 3.3.2's source distribution (fetched with pip into FOLDER once),
the split's seed (aiplatform.ml.sentiment_training.SEED), the cross-validation's folds and a closed-form ridge fit, on the
encoder's torch embeddings (the reference its int8 export is checked against)."""
import argparse, json, time
from pathlib import Path
import numpy as np
from aiplatform.core import get_settings
from aiplatform.ml.models import Encoder, available
from aiplatform.ml.sentiment_training import check_sample, icwsm_2014, scores, split, train, vader_labels
from aiplatform.ml.text import labels, sentiment_features

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="folder keeping the ICWSM-14 archive (default: ml/ in the data folder)")
    package = Path(__file__).resolve().parents[1]/"aiplatform"/"ml"
    ap.add_argument("--out", type=Path, default=package/"heads"/"sentiment.npz")
    ap.add_argument("--check-texts", type=Path, default=package/"check_texts.json")
    args = ap.parse_args()
    df = icwsm_2014(args.data or get_settings().data_dir/"ml")
    train_rows = split(df)
    start = time.perf_counter()
    features = sentiment_features(df["text"].tolist(), Encoder(available()["minilm"], backend="torch"))
    print(f"{len(df):,} texts embedded in {time.perf_counter() - start:.0f} s; {train_rows.sum():,} to train on")
    head, table = train(features, df, train_rows)
    print("cross-validated smallest margin over VADER's macro-F1 (tweets, movies, Amazon), best first:")
    print(table.head(8).to_string(index=False))
    test = df[~train_rows]
    ours = labels(features[~train_rows] @ head["w"] + head["b"], head["threshold"])
    print("held-out halves and the NYT editorials (never trained on):")
    print(scores(test, {"ours": ours, "vader": vader_labels(test["text"])}).to_string())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **head)
    args.check_texts.write_text(json.dumps(check_sample(df), ensure_ascii=False, indent=0) + "\n")
    print(f"wrote {args.check_texts}")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): alpha {head['alpha']:g}, threshold {head['threshold']:g}")

if __name__ == "__main__":
    main()
