"The AI Platform kernel: it starts through jupyter_client with the extension loaded, and `%aiplatform` answers."
import json
import aiplatform
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel
from conftest import REPO, clean_env

def test_kernelspec_installed_from_the_repository():
    spec = KernelSpecManager().get_kernel_spec("aiplatform")
    ours = json.loads((REPO/"kernels"/"aiplatform"/"kernel.json").read_text())
    assert spec.display_name == "AI Platform" and spec.argv == ours["argv"]

def test_aiplatform_magic_answers_in_the_kernel(tmp_path):
    env = clean_env(AIPLATFORM_PLATFORM__DATA_DIR=tmp_path/"data", JUPYTER_RUNTIME_DIR=tmp_path/"runtime")
    km, kc = start_new_kernel(kernel_name="aiplatform", env=env, cwd=str(tmp_path))
    try:
        outputs = []
        reply = kc.execute_interactive("%aiplatform", timeout=120, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        [result] = [m["content"]["data"] for m in outputs if m["msg_type"] == "execute_result"]
        md = result["text/markdown"]
        assert f"**aiplatform {aiplatform.__version__}**" in md and str(tmp_path/"data") in md, md
        assert "| backend | NumPy (CPU)" in md or "| backend | CuPy (GPU) on" in md
        assert "not initialised" in md  # the status reads the database without creating it
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
