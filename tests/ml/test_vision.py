"""Images in every common format and every bad kind, EXIF orientation, metadata stripping, and face detection on
package-shipped images with known faces against OpenCV's Haar cascade."""
import io
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps
from skimage import data
from aiplatform.core import TooLarge, ValidationError, load_settings
from aiplatform.ml.vision.faces import detect_faces, face_set, haar_faces, people, score
from aiplatform.ml.vision.images import Picture, load_image, load_images, metadata, quality, strip_metadata

ASTRONAUT = data.astronaut()

def encoded(im, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()

@pytest.mark.parametrize("fmt,mode,ext", [("JPEG", "RGB", "jpg"), ("PNG", "RGBA", "png"), ("WEBP", "RGB", "webp"), ("TIFF", "RGB", "tif"),
                                          ("GIF", "P", "gif"), ("BMP", "RGB", "bmp"), ("PNG", "I;16", "png"), ("JPEG", "CMYK", "jpg"),
                                          ("PNG", "L", "png"), ("PNG", "1", "png")])
def test_every_common_format_reads_as_upright_8_bit_rgb(fmt, mode, ext, tmp_path):
    im = Image.fromarray(ASTRONAUT[:64, :96]).convert(mode) if mode != "I;16" else Image.fromarray((ASTRONAUT[:64, :96, 0].astype(np.uint16) * 257))
    (tmp_path/f"a.{ext}").write_bytes(encoded(im, fmt))
    picture = load_image(tmp_path/f"a.{ext}")
    assert (picture.rgb.shape, picture.rgb.dtype, picture.format, picture.name) == ((64, 96, 3), np.uint8, fmt, f"a.{ext}")
    if mode == "I;16": np.testing.assert_array_equal(picture.rgb[..., 0], ASTRONAUT[:64, :96, 0])  # 16 bits scaled, not clipped

def test_an_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    picture = load_image(encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), "anim.gif")
    assert tuple(picture.rgb[0, 0]) == (255, 0, 0)

@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_is_turned_upright(orientation):
    upright = Image.fromarray(ASTRONAUT[:40, :60])
    undo = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180], 4: [Image.Transpose.FLIP_TOP_BOTTOM],
            5: [Image.Transpose.TRANSPOSE], 6: [Image.Transpose.ROTATE_90], 7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_270]}
    stored = upright
    for t in undo.get(orientation, []): stored = stored.transpose(t)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    np.testing.assert_array_equal(ImageOps.exif_transpose(Image.open(io.BytesIO(encoded(stored, "PNG", exif=exif)))), upright)
    np.testing.assert_array_equal(load_image(encoded(stored, "PNG", exif=exif), "o.png").rgb, np.asarray(upright))

def test_each_bad_image_is_one_clear_error_and_a_batch_keeps_the_rest(tmp_path):
    good = encoded(Image.fromarray(ASTRONAUT), "PNG")
    bad = {"empty.png": (b"", "empty (0 bytes)"), "notes.png": (b"hello", "not an image"),
           "cut.png": (good[:len(good) // 2], "truncated or corrupt PNG"),
           "photo.jpg": (good, "a PNG file named .jpg; expected JPEG content"),
           "bomb.png": (encoded(Image.new("1", (9_000, 9_000)), "PNG"), "9000x9000 = 81.0 megapixels, at most 50 ([ml] max_image_mp)"),
           "zero.gif": (b"GIF89a\x00\x00\x00\x00\x00\x00\x00;", "not an image")}  # 0 x 0 pixels
    sources = [good] + [data for data, _ in bad.values()] + [good]
    pictures, errors = load_images(sources, ["first.png", *bad, "last.png"])
    assert [p is not None for p in pictures] == [True] + [False] * len(bad) + [True]
    for i, (name, (_, message)) in enumerate(bad.items(), 1): assert errors[i].startswith(f"images[{i}]: {name}: ") and message in errors[i]
    with pytest.raises(TooLarge, match="bomb.png: 9000x9000"): load_image(bad["bomb.png"][0], "bomb.png")
    with pytest.raises(ValidationError, match="missing.png: no such file"): load_image(tmp_path/"missing.png")

def test_the_limits_come_from_the_settings(tmp_path):
    s = load_settings(env={}, platform={"data_dir": tmp_path}, ml={"max_image_mb": 1, "max_image_mp": 0.1})
    (tmp_path/"big.bmp").write_bytes(encoded(Image.new("RGB", (700, 700)), "BMP"))
    with pytest.raises(TooLarge, match=r"big.bmp: 1.4 MB, at most 1 MB \(\[ml\] max_image_mb\)"): load_image(tmp_path/"big.bmp", settings=s)
    with pytest.raises(TooLarge, match=r"0.3 megapixels, at most 0.1"): load_image(encoded(Image.fromarray(ASTRONAUT), "PNG"), "a.png", settings=s)

def test_quality_tells_sharp_from_blurred_and_measures_noise():
    import cv2
    sharp, blurred = (quality(Picture("x", rgb, "PNG", 0, Image.Exif())) for rgb in (ASTRONAUT, cv2.GaussianBlur(ASTRONAUT, (0, 0), 2)))
    assert blurred["sharpness"] < sharp["sharpness"] / 5
    flat = np.full((200, 200, 3), 128, np.uint8) + np.random.default_rng(1).normal(0, 6, (200, 200, 1)).round().astype(np.int8).view(np.uint8)
    assert abs(quality(Picture("n", flat, "PNG", 0, Image.Exif()))["noise"] - 6) < 0.6
    white = quality(Picture("w", np.full((50, 50, 3), 255, np.uint8), "PNG", 0, Image.Exif()))
    assert (white["brightness"], white["highlights_clipped"], white["colours"]) == (1.0, 1.0, [("#ffffff", 1.0)])

def test_metadata_is_read_and_stripped_from_jpeg_and_png():
    exif = Image.Exif()
    exif[ExifTags.Base.Model] = "Pixel 9"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({ExifTags.GPS.GPSLatitudeRef: "S", ExifTags.GPS.GPSLatitude: (33.0, 51.0, 54.0),
                                               ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (151.0, 12.0, 36.0)})
    for fmt, name in (("JPEG", "a.jpg"), ("PNG", "a.png")):
        original = encoded(Image.fromarray(ASTRONAUT), fmt, exif=exif)
        meta = metadata(load_image(original, name))
        assert meta["camera"] == "Pixel 9" and meta["gps"] == {"latitude": -33.865, "longitude": 151.21}
        clean = strip_metadata(original, name)
        assert b"Pixel 9" not in clean and "gps" not in metadata(load_image(clean, name))
        np.testing.assert_array_equal(load_image(clean, name).rgb, load_image(original, name).rgb)

def test_faces_are_found_on_package_photos_with_their_landmarks():
    import matplotlib
    hopper = np.asarray(Image.open(f"{matplotlib.get_data_path()}/sample_data/grace_hopper.jpg").convert("RGB"))
    for rgb, (x, y) in ((ASTRONAUT, (222, 115)), (hopper, (255, 225))):
        [face] = detect_faces(rgb)
        bx, by, bw, bh = face["box"]
        assert bx < x < bx + bw and by < y < by + bh and face["score"] > 0.99  # the face's centre, labelled by hand
        left, right, nose = face["landmarks"]["left_eye"], face["landmarks"]["right_eye"], face["landmarks"]["nose"]
        assert left[0] < nose[0] < right[0] and max(left[1], right[1]) < nose[1]

def test_mtcnn_finds_more_known_faces_than_the_haar_cascade():
    labelled = face_set(n=30, seed=1)  # not the benchmark's scenes (seed 0)
    truth = [boxes for _, _, boxes in labelled]
    ours = score([[f["box"] for f in detect_faces(rgb)] for _, rgb, _ in labelled], truth)
    haar = score([[f["box"] for f in haar_faces(rgb)] for _, rgb, _ in labelled], truth)
    assert ours["recall"] >= 0.75 and ours["recall"] > haar["recall"] + 0.1 and ours["precision"] > max(0.95, haar["precision"]), (ours, haar)
    assert detect_faces(np.zeros((480, 640, 3), np.uint8)) == [] and detect_faces(np.zeros((10, 10, 3), np.uint8)) == []

def test_people_boxes_are_in_the_pictures_pixels_whatever_the_working_size():
    import cv2
    small = people(Picture("a", ASTRONAUT, "PNG", 0, Image.Exif()))
    large = people(Picture("b", cv2.resize(ASTRONAUT, (1024, 1024)), "PNG", 0, Image.Exif()))  # searched at 640 wide
    assert small and len(large) == len(small)
    for a, b in zip(small, large): assert all(abs(2 * u - v) <= 8 for u, v in zip(a["box"], b["box"]))

OCR_WORDS = ("Quarterly revenue rose eleven percent while operating margins narrowed as freight costs climbed across "
             "every region the company serves including Europe Asia and both Americas").split() * 3

@pytest.mark.parametrize("size", [25, 33, 50])  # 12, 16 and 24 pt at 150 dpi
def test_ocr_reads_rendered_words_at_12_pt_and_up(size):
    from aiplatform.ml.vision.ocr import ocr, render, word_accuracy
    page = render(OCR_WORDS, size)
    read = ocr(Picture("page", np.asarray(page.convert("RGB")), "PNG", 0, Image.Exif()))
    assert word_accuracy(OCR_WORDS, [w["text"] for w in read["words"]]) >= 0.95 and read["rotate"] == 0
    for w in read["words"]:
        x, y, bw, bh = w["box"]
        assert 0 <= x < x + bw <= page.width and 0 <= y < y + bh <= page.height and 0 <= w["confidence"] <= 100

@pytest.mark.parametrize("turn", [90, 180, 270])
def test_ocr_reads_a_turned_page_upright(turn):
    from aiplatform.ml.vision.ocr import ocr, render, word_accuracy
    page = render(OCR_WORDS, 33).rotate(turn, expand=True)
    read = ocr(Picture("page", np.asarray(page.convert("RGB")), "PNG", 0, Image.Exif()))
    assert word_accuracy(OCR_WORDS, [w["text"] for w in read["words"]]) >= 0.95
    assert read["rotate"] in (0, 360 - turn)  # Tesseract's layout analysis reads some turned lines by itself, as surely

def test_ocr_of_a_blank_image_and_an_unknown_language():
    from aiplatform.core import ConfigError
    from aiplatform.ml.vision.ocr import ocr
    blank = Picture("blank", np.full((100, 300, 3), 255, np.uint8), "PNG", 0, Image.Exif())
    assert ocr(blank)["words"] == [] and ocr(blank)["text"] == ""
    with pytest.raises(ConfigError, match="OCR lang 'xyz': not installed; installed: eng"): ocr(blank, lang="xyz")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry", "hubble_deep_field", "camera", "moon", "brick")

def photo(name):
    rgb = getattr(data, name)()
    return np.dstack([rgb] * 3) if rgb.ndim == 2 else rgb[..., :3]

def test_hashes_survive_resizing_and_recompression_and_tell_photos_apart():
    from aiplatform.ml.vision.duplicates import distance, image_hash
    hashes = {}
    for name in PHOTOS:
        im = Image.fromarray(photo(name))
        hashes[name] = image_hash(load_image(encoded(im, "PNG"), "a.png"))
        for variant in (encoded(im.resize((im.width // 3, im.height // 3)), "PNG"), encoded(im, "JPEG", quality=25), encoded(im, "WEBP")):
            assert distance(hashes[name], image_hash(load_image(variant, "v"))) <= 6, name
    values = np.array(list(hashes.values()), np.uint64)
    apart = distance(values[:, None], values[None, :])[np.triu_indices(len(values), 1)]
    assert apart.min() > 12, apart.min()

def test_the_index_follows_a_folder_incrementally(tmp_path):
    import os
    from aiplatform.ml.vision.duplicates import ImageIndex
    folder, outside = tmp_path/"photos", tmp_path/"outside"
    folder.mkdir(), outside.mkdir()
    for name in PHOTOS[:4]: (folder/f"{name}.jpg").write_bytes(encoded(Image.fromarray(photo(name)), "JPEG"))
    (folder/"astronaut_copy.png").write_bytes(encoded(Image.fromarray(photo("astronaut")).resize((100, 100)), "PNG"))
    (outside/"secret.png").write_bytes(encoded(Image.fromarray(photo("moon")), "PNG"))
    os.symlink(outside/"secret.png", folder/"link.png")  # leads outside the folder: never read
    index = ImageIndex(tmp_path/"index.parquet")
    assert index.update(folder) == dict(added=5, changed=0, unchanged=0, removed=0, errors=0)
    assert "link.png" not in set(index.table["path"])
    (folder/"coffee.jpg").write_bytes(encoded(Image.fromarray(photo("chelsea")), "JPEG"))  # now a second cat
    (folder/"rocket.jpg").unlink()
    seen = []
    counts = ImageIndex(tmp_path/"index.parquet").update(folder, progress=lambda done, total: seen.append((done, total)))
    assert counts == dict(added=0, changed=1, unchanged=3, removed=1, errors=0) and seen == [(i, 4) for i in range(1, 5)]
    found = ImageIndex(tmp_path/"index.parquet").duplicates()
    assert sorted(found.groupby("group")["path"].agg(tuple)) == [("astronaut.jpg", "astronaut_copy.png"), ("chelsea.jpg", "coffee.jpg")]
    with pytest.raises(ValidationError, match="not a folder"): index.update(tmp_path/"nowhere")

@pytest.mark.parametrize("shape", [(1, 1), (10, 300), (127, 64), (64, 64), (300, 10)])
def test_tiny_images_are_analysed_without_crashing(shape):
    from aiplatform.ml.vision.analysis import analyze
    found = analyze(Picture("tiny", np.full(shape + (3,), 200, np.uint8), "PNG", 0, Image.Exif()))
    assert (found["faces"], found["people"], found["text"]["words"]) == ([], [], [])

@pytest.mark.slow  # papermill runs the report: ~15 s
def test_the_image_folder_report_runs_and_keeps_its_hashes(tmp_path):
    from conftest import clean_env, cli
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path/"data")
    photos = tmp_path/"data"/"photos"
    photos.mkdir(parents=True)
    for name in ("astronaut", "coffee"): Image.fromarray(photo(name)).save(photos/f"{name}.jpg")
    Image.fromarray(photo("astronaut")).resize((128, 128)).save(photos/"small.png")
    (photos/"broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    r = cli("report", "run", "image_folder", "-p", "folder", "photos", "-p", "analyses", "faces,quality", "--out", tmp_path/"out", env=env)
    assert r.returncode == 0, r.stderr
    page = (tmp_path/"out"/"image_folder.html").read_text()
    assert "4 images, 1 could not be read; 2 faces in 2 images" in page and "1 group</strong> of near-duplicates" in page and "small.png" in page
    r = cli("report", "run", "image_folder", "-p", "folder", "../..", "--out", tmp_path/"out2", env=env)
    assert r.returncode == 2 and "path '../..': must stay inside the data folder" in r.stderr

def test_image_models_in_the_models_folder_are_listed_loaded_and_run(tmp_path):
    import json
    from aiplatform.core import ConfigError, NotFound
    from aiplatform.ml.models import available, load, loaded, unload
    from aiplatform.ml.vision.models import caption, classify, detect, run_model, tiny_models
    s = load_settings(env={}, platform={"data_dir": tmp_path/"data"}, models={"dir": tmp_path/"models"})
    names = tiny_models(tmp_path/"models")
    assert {n: available(s)[n].kind for n in names} == {"tiny-captioner": "captioner", "tiny-classifier": "image-classifier", "tiny-detector": "detector"}
    picture = Picture("a", ASTRONAUT, "PNG", 0, Image.Exif())
    assert [r["label"] for r in classify(picture, "tiny-classifier", k=2, settings=s)] == ["cat", "rocket"]
    assert all(r["label"] in ("face", "person") and len(r["box"]) == 4 for r in detect(picture, "tiny-detector", threshold=0, settings=s))
    assert caption(picture, "tiny-captioner", settings=s) and run_model(picture, "tiny-captioner", s)["kind"] == "captioner"
    assert {m["name"]: m["kind"] for m in loaded() if m["name"].startswith("tiny")} == {n: available(s)[n].kind for n in names}
    for n in names: unload(n)
    with pytest.raises(ValidationError, match="model 'tiny-detector': its kind is detector; expected image-classifier"): classify(picture, "tiny-detector", settings=s)
    with pytest.raises(ValidationError, match="model 'sentiment': its kind is head; expected image-classifier or detector or captioner"):
        run_model(picture, "sentiment", s)
    with pytest.raises(NotFound, match="model 'nope': not found"): run_model(picture, "nope", s)
    config = json.loads((tmp_path/"models"/"tiny-classifier"/"config.json").read_text())
    (tmp_path/"models"/"torn").mkdir()
    (tmp_path/"models"/"torn"/"config.json").write_text(json.dumps(config))  # a config, no weights
    with pytest.raises(ConfigError, match=f"model 'torn' in {tmp_path}/models/torn: cannot be loaded as a image-classifier"): load("torn", s)

def test_strip_metadata_takes_a_path_bytes_or_an_open_file(tmp_path):
    exif = Image.Exif()
    exif[ExifTags.Base.Model] = "Pixel 9"
    (tmp_path/"a.jpg").write_bytes(encoded(Image.fromarray(ASTRONAUT[:64, :64]), "JPEG", exif=exif))
    with open(tmp_path/"a.jpg", "rb") as f: from_file = strip_metadata(f, "a.jpg")
    assert strip_metadata(tmp_path/"a.jpg") == strip_metadata((tmp_path/"a.jpg").read_bytes(), "a.jpg") == from_file
    assert b"Pixel 9" not in from_file
