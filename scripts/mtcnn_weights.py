"""Write the MTCNN face detector that ships in aiplatform/ml/vision/mtcnn/: its three networks as ONNX, with their licence.

    python scripts/mtcnn_weights.py

The networks are aiplatform.ml.vision.faces' own torch definitions (PNet, RNet, ONet); their weights (Zhang et al. 2016,
converted by facenet-pytorch, MIT) come from the facenet-pytorch 2.6.0 wheel, fetched with pip --no-deps (its pins of
torch < 2.3 and Pillow < 10.3 clash with ours: only its weight files are taken)."""
import io, subprocess, sys, tempfile, warnings, zipfile
from pathlib import Path
import torch
from aiplatform.ml.vision.faces import NETS, WEIGHTS

SOURCE = "facenet-pytorch==2.6.0"

def main():
    WEIGHTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, SOURCE], check=True)
        with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as wheel:
            for name, (net, side) in NETS.items():
                state = torch.load(io.BytesIO(wheel.read(f"facenet_pytorch/data/{name}.pt")), map_location="cpu", weights_only=True)
                model = net()
                model.load_state_dict(state)  # strict: our definition has exactly their layers and shapes
                x = torch.zeros(1, 3, side, side)
                dims = {"x": {0: "n", 2: "h", 3: "w"}} if name == "pnet" else {"x": {0: "n"}}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model.eval(), (x,), WEIGHTS/f"{name}.onnx", input_names=["x"], dynamic_axes=dims, opset_version=17, dynamo=False,
                                      do_constant_folding=False)  # keeps the layer names (onnxruntime folds them itself)
                print(f"wrote {WEIGHTS/name}.onnx ({(WEIGHTS/f'{name}.onnx').stat().st_size:,} bytes)")
            licence = wheel.read("facenet_pytorch-2.6.0.dist-info/LICENSE.md").decode()
    (WEIGHTS/"LICENSE.md").write_text(f"The weights in these networks come from {SOURCE} (data/*net.pt), under its licence:\n\n{licence}")

if __name__ == "__main__":
    main()
