"""Speech synthesis against the espeak-ng command line, the effect chain against scipy's sosfilt, and the live chain over WebSocket.

Synthesis: time to first audio (TTFA) of a sentence through `speak_stream`, with espeak-ng and with the packaged neural
voice (joe), against the espeak-ng command line (the peer) writing the same sentence's WAV; the neural voice's real-time
factor (seconds of synthesis per second of audio) over a paragraph, on this machine's cores. Effects: a voice chain
(high pass, two EQ bands, compressor, reverb, limiter) over 60 s of 48 kHz audio (2 s with --quick) in 20 ms blocks, its
real-time factor; its three filters alone against scipy's `sosfilt` of the same sections over the whole file (the peer),
their samples equal. Live: 20 ms blocks (960 samples at 48 kHz) through the ML service's `/voice/live` WebSocket with
that chain, round trip p50 and p99. Medians of repeated runs. Last line: a JSON object."""
import argparse, asyncio, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import aiohttp
import numpy as np
from scipy.signal import sosfilt
from aiplatform.ml.voice.effects import biquad, process_file
from aiplatform.ml.voice.synthesis import SpeechOptions, find_voice, neural_voice, speak, speak_stream
from bench_text import ready, start_service

SENTENCE = "The quarterly report is ready for your review."
PARAGRAPH = ("Markets opened higher this morning as investors welcomed the latest figures. Technology shares led the gains, "
             "while energy stocks slipped. Analysts expect the rally to continue if inflation keeps easing. "
             "Bond yields were little changed, and the dollar weakened against the euro.")
FILTERS = [{"type": "filter", "kind": "highpass", "freq": 90}, {"type": "filter", "kind": "lowshelf", "freq": 250, "gain_db": -3},
           {"type": "filter", "kind": "peaking", "freq": 3000, "q": 1.0, "gain_db": 4}]
CHAIN = FILTERS + [{"type": "compressor", "threshold_db": -24, "ratio": 3, "makeup_db": 4}, {"type": "reverb", "mix": 0.2},
                   {"type": "limiter", "threshold_db": -1}]
RATE, BLOCK = 48_000, 960

def median_ms(fn, runs) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)

def synthesis(runs) -> dict:
    joe = find_voice("joe")
    neural_voice(joe), speak("Warm up.", SpeechOptions(voice="en-us")), speak("Warm up.")  # loaded, espeak-ng's voices listed
    exe = shutil.which("espeak-ng")
    peer = median_ms(lambda: subprocess.run([exe, "-v", "en-us", "--stdout", SENTENCE], capture_output=True, check=True), runs)
    espeak = median_ms(lambda: next(speak_stream(SENTENCE, SpeechOptions(voice="en-us"))), runs)
    neural = median_ms(lambda: next(speak_stream(SENTENCE)), runs)
    neural_paragraph = median_ms(lambda: next(speak_stream(PARAGRAPH)), runs)
    seconds = []
    for _ in range(max(1, runs // 4)):
        start = time.perf_counter()
        audio, rate = speak(PARAGRAPH, SpeechOptions(pause_ms=0))
        seconds.append(time.perf_counter() - start)
    return dict(peer_ms=peer, espeak_ms=espeak, neural_ms=neural, neural_paragraph_ms=neural_paragraph,
                rtf_neural=statistics.median(seconds) / (len(audio) / rate), audio_s=len(audio) / rate)

def effects(seconds, runs) -> dict:
    audio = np.random.default_rng(0).normal(0, 0.1, RATE * seconds) * np.sin(np.linspace(0, 40, RATE * seconds)) ** 2
    process_file(CHAIN, audio[:RATE], RATE, BLOCK)  # compiled
    chain_ms = median_ms(lambda: process_file(CHAIN, audio, RATE, BLOCK), runs)
    sos = np.stack([biquad(f["kind"], f["freq"], RATE, f.get("q", 0.7071), f.get("gain_db", 0.0)) for f in FILTERS])
    ours, peer = process_file(FILTERS, audio, RATE, BLOCK), sosfilt(sos, audio)
    return dict(rtf=chain_ms / 1e3 / seconds, chain_ms=chain_ms, filters_ms=median_ms(lambda: process_file(FILTERS, audio, RATE, BLOCK), runs),
                filters_whole_ms=median_ms(lambda: process_file(FILTERS, audio, RATE), runs), peer_ms=median_ms(lambda: sosfilt(sos, audio), runs),
                max_diff=float(np.abs(ours - peer).max()), seconds=seconds)

async def live_round_trips(url, key, blocks) -> dict:
    audio = np.random.default_rng(1).normal(0, 0.1, BLOCK * blocks).astype("<f4")
    times = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url.replace("http", "ws") + "voice/live",
                                                                     headers={"Authorization": f"Bearer {key}"}) as ws:
        await ws.send_json({"preset": CHAIN, "rate": RATE, "block": BLOCK})
        assert (await ws.receive_json())["type"] == "ready"
        for i in range(blocks):
            start = time.perf_counter()
            await ws.send_bytes(audio[i * BLOCK:(i + 1) * BLOCK].tobytes())
            await ws.receive_bytes()
            times.append((time.perf_counter() - start) * 1e3)
    times = sorted(times[10:])  # after the first blocks
    return dict(p50_ms=times[len(times) // 2], p99_ms=times[int(len(times) * 0.99)], blocks=len(times))

def live(blocks) -> dict:
    proc, url, key = start_service(Path(tempfile.mkdtemp()), 64)
    try:
        ready(proc, url)
        return asyncio.run(live_round_trips(url, key, blocks))
    finally: proc.terminate(), proc.wait(30)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 runs, 2 s of audio, 60 live blocks")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    s = synthesis(2 if args.quick else 21)
    print(f"time to first audio, one sentence: espeak-ng through speak_stream {s['espeak_ms']:.1f} ms (target 50), espeak-ng command line "
          f"(the peer, whole WAV) {s['peer_ms']:.1f} ms, ratio {s['espeak_ms'] / s['peer_ms']:.2f}; neural {s['neural_ms']:.1f} ms (target 250), "
          f"a paragraph's first sentence {s['neural_paragraph_ms']:.1f} ms")
    print(f"neural voice: real-time factor {s['rtf_neural']:.3f} over {s['audio_s']:.1f} s of speech (target 0.2; Piper's published 0.03-0.08 on desktops)")
    e = effects(2 if args.quick else 60, 2 if args.quick else 7)
    print(f"effects, voice chain in 20 ms blocks over {e['seconds']} s at 48 kHz: {e['chain_ms']:.0f} ms, real-time factor {e['rtf']:.4f} (target 0.02)")
    print(f"three filters: ours {e['filters_ms']:.1f} ms in 20 ms blocks, {e['filters_whole_ms']:.1f} ms whole; scipy sosfilt whole "
          f"(the peer) {e['peer_ms']:.1f} ms; ratio whole {e['filters_whole_ms'] / e['peer_ms']:.2f}, blocks {e['filters_ms'] / e['peer_ms']:.2f}; "
          f"largest difference {e['max_diff']:.1e}")
    w = live(60 if args.quick else 3000)
    print(f"live chain over WebSocket, 20 ms blocks: p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms (target p99 20 ms) over {w['blocks']} blocks")
    print(json.dumps({"ttfa_espeak_ms": round(s["espeak_ms"], 1), "ttfa_espeak_cli_ms": round(s["peer_ms"], 1), "ttfa_neural_ms": round(s["neural_ms"], 1),
                      "ttfa_neural_paragraph_ms": round(s["neural_paragraph_ms"], 1), "rtf_neural": round(s["rtf_neural"], 4),
                      "rtf_effects": round(e["rtf"], 5), "filters_vs_sosfilt": round(e["filters_whole_ms"] / e["peer_ms"], 2),
                      "ws_block_p50_ms": round(w["p50_ms"], 2), "ws_block_p99_ms": round(w["p99_ms"], 2)}))

if __name__ == "__main__":
    sys.exit(main())
