"The Voice Studio under Voila in headless Chromium: text spoken by both engines, a preset heard, a file uploaded, a take recorded, a WAV downloaded."
import io, re
import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect
from browser import app_page, upload
from aiplatform.ml.voice.audio import wav_bytes

pytestmark = pytest.mark.browser

expect.set_options(timeout=60_000)

@pytest.fixture(scope="module")
def page(gateway):
    with app_page(gateway, "voice_studio", "Voice Studio", timeout=120_000) as page: yield page

def test_text_is_spoken_shaped_and_downloaded(page, gateway, tmp_path):
    page.get_by_placeholder("Type a text to speak…").fill("Good morning. The studio is open.")
    page.get_by_role("button", name="Speak").click()
    expect(page.locator(".aip-status")).to_contain_text("Spoke 2 sentences")
    expect(page.locator(".aip-measures")).to_contain_text("22,050 Hz")
    expect(page.locator(".aip-measures")).to_contain_text("LUFS")
    expect(page.locator("audio")).to_have_attribute("src", re.compile("^blob:"))
    expect(page.locator(".js-plotly-plot")).to_have_count(2)
    page.locator(".aip-preset-choice select").select_option("Hall")
    expect(page.locator(".aip-preset")).to_contain_text('"reverb"')
    page.locator(".aip-voice select").select_option(label="en-us (espeak-ng)")
    page.get_by_role("button", name="Speak").click()
    expect(page.locator(".aip-status")).to_contain_text(re.compile(r"Spoke 2 sentences with en-us \([0-9.]+ s of audio\)"))
    page.screenshot(path=gateway.root / "voice_studio.png", full_page=True)
    (tmp_path/"tone.wav").write_bytes(wav_bytes(0.3 * np.sin(2 * np.pi * 220 * np.arange(32_000) / 16_000), 16_000))
    (tmp_path/"notes.wav").write_text("not audio")
    upload(page, "Upload audio", tmp_path/"tone.wav")
    expect(page.locator(".aip-status")).to_contain_text("tone.wav: 2.0 s at 16,000 Hz")
    expect(page.locator(".aip-measures")).to_contain_text("16,000 Hz")
    upload(page, "Upload audio", tmp_path/"notes.wav")
    expect(page.locator(".aip-status")).to_contain_text("notes.wav: not audio")
    with page.expect_download() as dl: page.get_by_text("Download WAV").click()
    info = sf.info(io.BytesIO(open(dl.value.path(), "rb").read()))
    assert (info.samplerate, info.channels) == (16_000, 1) and info.duration == pytest.approx(2.0)
    page.get_by_role("button", name="Record").click()
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".aip-status")).to_contain_text(re.compile(r"recording.wav: 1\.[0-9] s at [0-9,]+ Hz"))
    with page.expect_download() as dl: page.get_by_text("Download WAV").click()
    info = sf.info(io.BytesIO(open(dl.value.path(), "rb").read()))
    assert info.channels == 1 and 1.2 < info.duration < 2.5 and info.samplerate >= 16_000  # the take at the sound card's rate
