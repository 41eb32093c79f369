"""`make lab`: a Jupyter server on 127.0.0.1 lists the notebooks and runs one through its own kernel."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
LAB_COMMAND = "jupyter lab --ip 127.0.0.1 --notebook-dir notebooks"   # what the Makefile's `lab` target runs
NOTEBOOK = "13_table5_avqa.ipynb"   # small: the paper's table, no data needed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_makefile_lab_target_serves_the_notebooks_folder_on_localhost():
    assert LAB_COMMAND in (REPO / "Makefile").read_text()


def test_make_lab_allows_root_and_passes_extra_arguments():
    """Jupyter refuses to start as root without --allow-root (containers); LAB_ARGS reaches jupyter."""
    shown = subprocess.run(["make", "--no-print-directory", "-n", "-W", ".venv/.installed", "lab", "LAB_ARGS=--port 8890 --no-browser"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    command = subprocess.run(["sh", "-c", f"echo {shown}"], capture_output=True, text=True).stdout
    assert command.strip().endswith("--port 8890 --no-browser") and LAB_COMMAND in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)


def run_cell(ws, code: str, timeout: float = 120) -> list[dict]:
    """Send one execute_request over the kernel's websocket; return its iopub messages until idle."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                                   "session": uuid.uuid4().hex, "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": True,
                                    "user_expressions": {}, "allow_stdin": False}}))
    outputs, deadline = [], time.time() + timeout
    while time.time() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id or msg["channel"] != "iopub":
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return outputs
        outputs.append(msg)
    raise TimeoutError(f"cell did not finish in {timeout} s: {code[:80]}")


@pytest.mark.slow
def test_lab_lists_the_notebooks_and_runs_one_through_its_kernel(tmp_path):
    requests = pytest.importorskip("requests")
    websocket = pytest.importorskip("websocket")
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen([sys.executable, "-m", *LAB_COMMAND.split(), "--no-browser", f"--port={port}",
                               f"--IdentityProvider.token={token}",
                               *(["--allow-root"] if os.geteuid() == 0 else [])], cwd=REPO,
                              env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}
    listing = None
    try:
        for _ in range(120):
            try:
                listing = requests.get(f"{base}/api/contents", headers=auth, timeout=2)
                if listing.ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        assert listing is not None and listing.ok, "the Jupyter server did not answer within 60 s"
        names = {item["name"] for item in listing.json()["content"]}
        assert {p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")} <= names
        session = requests.post(f"{base}/api/sessions", headers=auth, timeout=30, json={
            "path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK, "kernel": {"name": "python3"}}).json()
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{session['kernel']['id']}/channels",
                                         header=[f"Authorization: token {token}"], timeout=120)
        nb = nbformat.read(str(REPO / "notebooks" / NOTEBOOK), as_version=4)
        results = []
        for cell in (c for c in nb.cells if c.cell_type == "code"):
            source = cell.source.replace('RESULTS = ""', f'RESULTS = "{tmp_path}"')  # leave results/ alone
            outputs = run_cell(ws, source)
            assert not [m for m in outputs if m["msg_type"] == "error"], (source, outputs)
            results.append(outputs)
        ws.close()
        assert (tmp_path / "table5.csv").is_file()  # it ran in the server's kernel, in notebooks/
        assert any(m["msg_type"] == "execute_result" for m in results[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)
