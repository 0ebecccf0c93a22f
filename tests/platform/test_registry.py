"""The tool registry: a tool installed from outside (tests/plugins/echo_tool.py) gets its settings section, command,
magic, API route, app and service from one entry point, and a broken record is refused in one line."""
import subprocess, sys
from conftest import PLUGINS, cli, clean_env, http

def plugin_env(tmp_path, *paths, **extra):
    return clean_env(PYTHONPATH=":".join(map(str, paths or [PLUGINS])), AIPLATFORM_PLATFORM__DATA_DIR=tmp_path/"data",
                     HOME=tmp_path, **extra)

def test_the_tools_settings_section_reads_like_the_platforms(tmp_path):
    (tmp_path/"settings.ini").write_text("[echo]\ngreeting = ahoy\n")
    out = cli("--settings", tmp_path/"settings.ini", "config", env=plugin_env(tmp_path))
    assert out.returncode == 0 and "echo.greeting = ahoy" in out.stdout and str(tmp_path/"settings.ini") in out.stdout
    out = cli("config", env=plugin_env(tmp_path, AIPLATFORM_ECHO__GREETING="hey"))
    assert "echo.greeting = hey" in out.stdout and "AIPLATFORM_ECHO__GREETING" in out.stdout
    (tmp_path/"settings.ini").write_text("[echo]\nloudness = 11\n")
    out = cli("--settings", tmp_path/"settings.ini", "config", env=plugin_env(tmp_path))
    assert out.returncode == 2 and "[echo] loudness: unknown key; expected one of greeting" in out.stderr

def test_the_tools_command_and_magic(tmp_path):
    out = cli("echo", "hi", "there", env=plugin_env(tmp_path))
    assert (out.returncode, out.stdout) == (0, "hello hi there\n")
    code = ("from IPython.core.interactiveshell import InteractiveShell\nimport aiplatform\n"
            "shell = InteractiveShell.instance()\naiplatform.load_ipython_extension(shell)\n"
            "print(shell.run_line_magic('echo', 'world'))")
    out = subprocess.run([sys.executable, "-c", code], env=plugin_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "hello, world", out.stderr

def test_the_tools_app_and_service_are_registered(tmp_path):
    code = ("from aiplatform.platform.registry import registered_apps, registered_services\n"
            "print([a.name for a in registered_apps()], list(registered_services()))")
    out = subprocess.run([sys.executable, "-c", code], env=plugin_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "['backtest_lab', 'code_generator', 'documents', 'echo', 'image_analyzer', 'status', 'predict', 'realestate', 'reports', 'resume', 'text_analyzer', 'trading_desk', 'voice_studio'] ['echo', 'ml', 'resume', 'trading']", out.stderr

def test_the_gateway_mounts_the_tools_route_behind_the_login(gateway):
    status, _, body = http(gateway.url + "aiplatform/api/echo/ping", token=gateway.token)
    assert (status, body) == (200, {"greeting": "hello"})
    assert http(gateway.url + "aiplatform/api/echo/ping")[0] == 403

def _bad_tool(tmp_path, record):
    (tmp_path/"bad_tool.py").write_text("from aiplatform.core import Setting\nfrom aiplatform.platform.registry import Tool\n" + record)
    info = tmp_path/"bad_tool-0.1.dist-info"
    info.mkdir()
    (info/"METADATA").write_text("Metadata-Version: 2.1\nName: bad-tool\nVersion: 0.1\n")
    (info/"entry_points.txt").write_text("[aiplatform.tools]\nbad = bad_tool:TOOL\n")
    return cli("config", env=plugin_env(tmp_path, tmp_path))

def test_a_record_under_another_name_is_refused(tmp_path):
    out = _bad_tool(tmp_path, "TOOL = Tool('other', 'Other')\n")
    assert out.returncode == 2 and out.stderr.strip() == ("aiplatform: error: entry point aiplatform.tools:bad = bad_tool:TOOL: "
                                                           "expected a Tool named 'bad'")

def test_two_tools_cannot_declare_one_section(tmp_path):
    out = _bad_tool(tmp_path, "TOOL = Tool('bad', 'Bad', settings={'codegen': {'x': Setting('str', '', 'x')}})\n")
    assert out.returncode == 2 and out.stderr.strip() == "aiplatform: error: settings section [codegen]: declared by both bad and codegen"
