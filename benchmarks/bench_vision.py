"""Faces against OpenCV's Haar cascade, OCR on rendered pages, perceptual hashes over a folder, and one image through the ML service.

Faces: recall and precision on the labelled set (`ml.vision.faces.face_set`: two hand-labelled package photos and 640 x 480
scenes of LFW faces, turned, darkened, blurred), and milliseconds per 640 x 480 scene, for MTCNN (ours) and OpenCV's
default Haar cascade (the peer) on the same images. OCR: pages a second and word accuracy on pages of the ICWSM-14 check
texts rendered at 16, 25 and 50 pixels (12 pt on a 96 dpi screen, at 150 dpi, at 300 dpi). Hashes: images a second
indexed from a folder of JPEGs (10,000; 300 with --quick), and the time to group them. Service: one photo's full analysis
(faces, people, text, quality, metadata) through the ML service, p50 and p99. Last line: a JSON object."""
import argparse, io, json, os, platform, re, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
from PIL import Image
from aiplatform.ml.models import CHECK_TEXTS
from aiplatform.ml.vision.duplicates import ImageIndex
from aiplatform.ml.vision.faces import detect_faces, face_set, haar_faces, score
from aiplatform.ml.vision.images import Picture
from aiplatform.ml.vision.ocr import ocr, render, word_accuracy
from bench_text import ready, start_service

def timed(fn, items) -> tuple[list, float]:
    "`fn` of each item, and the median milliseconds per item."
    out, times = [], []
    for item in items:
        start = time.perf_counter()
        out.append(fn(item))
        times.append((time.perf_counter() - start) * 1e3)
    return out, statistics.median(times)

def faces(n):
    labelled = face_set(n=n)
    scenes, truth = [rgb for _, rgb, _ in labelled], [boxes for _, _, boxes in labelled]
    detect_faces(scenes[0]), haar_faces(scenes[0])  # loaded
    ours, ours_ms = timed(lambda rgb: [f["box"] for f in detect_faces(rgb)], scenes)
    haar, haar_ms = timed(lambda rgb: [f["box"] for f in haar_faces(rgb)], scenes)
    scene_ms = lambda fn: timed(fn, scenes[2:])[1]  # the 640 x 480 scenes only
    fine, _ = timed(lambda rgb: [f["box"] for f in detect_faces(rgb, min_face=20)], scenes)
    return dict(ours=score(ours, truth), haar=score(haar, truth), ours_ms=scene_ms(detect_faces), haar_ms=scene_ms(haar_faces),
                fine=score(fine, truth), fine_ms=scene_ms(lambda rgb: detect_faces(rgb, min_face=20)), images=len(scenes))

def pages(words_per_page, sizes):
    words = [w for t in json.loads(CHECK_TEXTS.read_text()) for w in re.findall(r"[A-Za-z]{2,}", t)]
    found = {}
    for size in sizes:
        texts = [words[i:i + words_per_page] for i in range(0, min(len(words), 3 * words_per_page), words_per_page)]
        pictures = [Picture("page", np.asarray(render(t, size).convert("RGB")), "PNG", 0, None) for t in texts]
        read, ms = timed(ocr, pictures)
        found[size] = dict(accuracy=round(float(np.mean([word_accuracy(t, [w["text"] for w in r["words"]]) for t, r in zip(texts, read)])), 4),
                           pages_per_s=round(1e3 / ms, 2))
    return found

def hashes(n):
    from skimage import data
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.retina()]
    rng, folder = np.random.default_rng(0), Path(tempfile.mkdtemp())
    for i in range(n):  # crops of five photos, a tenth of them resized copies of an earlier one
        if i and rng.random() < 0.1: im = Image.open(folder/f"{rng.integers(i):05d}.jpg").resize((200, 150))
        else:
            p = photos[i % len(photos)]
            y, x = rng.integers(0, p.shape[0] // 2), rng.integers(0, p.shape[1] // 2)
            im = Image.fromarray(p[y:y + p.shape[0] // 2, x:x + p.shape[1] // 2]).resize((640, 480))
        im.save(folder/f"{i:05d}.jpg", quality=85)
    index = ImageIndex(Path(tempfile.mkdtemp())/"index.parquet")
    start = time.perf_counter()
    index.update(folder)
    per_s = n / (time.perf_counter() - start)
    start = time.perf_counter()
    groups = index.duplicates()
    group_s = time.perf_counter() - start
    start = time.perf_counter()
    again = ImageIndex(index.path).update(folder)
    return dict(images=n, per_s=round(per_s), group_s=round(group_s, 3), groups=int(groups["group"].nunique()) if len(groups) else 0,
                second_update_s=round(time.perf_counter() - start, 2), unchanged=again["unchanged"])

def service(n):
    from skimage import data
    from aiplatform.ml.client import MLClient
    from aiplatform.ml.vision.ocr import render
    photo = np.array(Image.fromarray(data.astronaut()).resize((640, 480)))
    photo[400:470, 20:620] = np.asarray(render("Mission briefing at noon".split(), 40).convert("RGB").resize((600, 70)))
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=90)
    proc, url, key = start_service(Path(tempfile.mkdtemp()), 64)
    try:
        ready(proc, url)
        with MLClient(url, key) as ml:
            ml.analyze_image(buf.getvalue(), name="photo.jpg")  # the engines loaded
            times = []
            for _ in range(n):
                start = time.perf_counter()
                found = ml.analyze_image(buf.getvalue(), name="photo.jpg")
                times.append((time.perf_counter() - start) * 1e3)
    finally: proc.terminate(), proc.wait(30)
    times.sort()
    return dict(p50_ms=round(times[len(times) // 2], 1), p99_ms=round(times[int(len(times) * 0.99)], 1), faces=len(found["faces"]),
                text=found["text"]["text"], ms=found["ms"])

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few scenes, one page a size, 300 images, 5 service calls")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    f = faces(6 if args.quick else 100)
    print(f"faces on {f['images']} labelled images: MTCNN recall {f['ours']['recall']:.3f} precision {f['ours']['precision']:.3f} "
          f"({f['ours']['found']} found, {f['ours']['known']} known); Haar recall {f['haar']['recall']:.3f} precision {f['haar']['precision']:.3f}")
    print(f"faces, ms per 640x480 scene (median): MTCNN {f['ours_ms']:.1f}, Haar {f['haar_ms']:.1f}; MTCNN / Haar time: {f['ours_ms'] / f['haar_ms']:.2f}")
    print(f"MTCNN with min_face=20 (default 28): {f['fine_ms']:.1f} ms, recall {f['fine']['recall']:.3f}, precision {f['fine']['precision']:.3f}")
    o = pages(60 if args.quick else 200, (16, 25, 50))
    for size, r in o.items(): print(f"OCR at {size} px: word accuracy {r['accuracy']:.3f}, {r['pages_per_s']:.2f} pages/s")
    h = hashes(300 if args.quick else 10_000)
    print(f"hashes: {h['images']:,} JPEGs indexed at {h['per_s']:,} images/s; grouped in {h['group_s']:.3f} s ({h['groups']} groups); "
          f"updated again in {h['second_update_s']} s ({h['unchanged']:,} unchanged)")
    s = service(5 if args.quick else 200)
    print(f"service, one 640x480 photo, every analysis: p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms (target p99 500 ms); "
          f"inside: {s['ms']}")
    print(json.dumps({"face_ms": round(f["ours_ms"], 1), "face_ms_haar": round(f["haar_ms"], 1), "face_recall": f["ours"]["recall"],
                      "face_recall_haar": f["haar"]["recall"], "face_precision": f["ours"]["precision"], "face_precision_haar": f["haar"]["precision"],
                      "face_ms_min20": round(f["fine_ms"], 1), "face_recall_min20": f["fine"]["recall"],
                      "ocr_word_accuracy": o[25]["accuracy"], "ocr_word_accuracy_16px": o[16]["accuracy"], "ocr_pages_per_s": o[25]["pages_per_s"],
                      "hashes_per_s": h["per_s"], "service_p50_ms": s["p50_ms"], "service_p99_ms": s["p99_ms"]}))

if __name__ == "__main__":
    sys.exit(main())
