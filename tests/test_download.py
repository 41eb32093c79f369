"""Fetching official files: checksums, resume, corruption and offline errors, against a local HTTP server."""
from __future__ import annotations

import hashlib
import http.server
import threading
from dataclasses import replace

import pytest

from avmaster_core.cli import main as cli_main
from avmaster_core.data.download import (OFFICIAL_FILES, ChecksumError, DownloadError, OfficialFile, fetch, fetch_file,
                                    file_digests, status, verify)

CONTENT = b'[{"video_id": "00000001", "question_id": 1}]\n' * 2000  # ~90 kB, several chunks


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Server:
    """Serves in-memory files with Range support; can cut a response short to mimic a broken connection."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None  # bytes of the body to send before dropping the connection
        self.range_headers: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                server.range_headers.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[:server.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    server.cut_after = None
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _spec(url, **checks):
    return OfficialFile("music_avqa", "avqa-test.json", "GeWu-Lab/MUSIC-AVQA", "data/json_update/avqa-test.json",
                        url_override=url, **checks)


def test_recorded_sha256_match_the_shared_files(shared_data):
    checked = 0
    for spec in OFFICIAL_FILES:
        path = shared_data / spec.dataset / spec.name
        if path.exists():
            assert verify(spec, path) is True, spec.name
            checked += 1
    assert checked >= 6


def test_urls_and_mirror(monkeypatch):
    spec = next(f for f in OFFICIAL_FILES if f.name == "avqa-test.json")
    assert spec.url() == ("https://raw.githubusercontent.com/GeWu-Lab/MUSIC-AVQA/HEAD/"
                          "data/json_update/avqa-test.json")
    assert spec.url("http://mirror.local/raw/").startswith("http://mirror.local/raw/GeWu-Lab/MUSIC-AVQA/HEAD/")
    monkeypatch.setenv("AVMASTER_DATA_MIRROR", "http://m")
    assert spec.url().startswith("http://m/GeWu-Lab/")


def test_fetch_verifies_sha256_and_blob_prefix(server, tmp_path):
    server.files["/a.json"] = CONTENT
    sha = hashlib.sha256(CONTENT).hexdigest()
    path = fetch_file(_spec(server.base + "/a.json", sha256=sha), tmp_path, progress=False)
    assert path == tmp_path / "music_avqa" / "avqa-test.json" and path.read_bytes() == CONTENT
    assert file_digests(path) == (sha, _git_blob(CONTENT))
    path.unlink()
    fetch_file(_spec(server.base + "/a.json", git_blob_prefix=_git_blob(CONTENT)[:12]), tmp_path, progress=False)
    assert path.read_bytes() == CONTENT
    n_requests = len(server.range_headers)
    fetch_file(_spec(server.base + "/a.json", sha256=sha), tmp_path, progress=False)  # verified copy: no request
    assert len(server.range_headers) == n_requests


def test_checksum_mismatch_deletes_download(server, tmp_path):
    server.files["/a.json"] = CONTENT[:-1] + b"X"  # corrupted upstream / in transit
    spec = _spec(server.base + "/a.json", sha256=hashlib.sha256(CONTENT).hexdigest())
    with pytest.raises(ChecksumError, match=r"not the official avqa-test.json.*place it at"):
        fetch_file(spec, tmp_path, progress=False)
    assert list((tmp_path / "music_avqa").iterdir()) == []  # neither the final name nor a .part


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.files["/a.json"] = CONTENT
    spec = _spec(server.base + "/a.json", sha256=hashlib.sha256(CONTENT).hexdigest())
    server.cut_after = 30000
    with pytest.raises(DownloadError, match="interrupted after 30000"):
        fetch_file(spec, tmp_path, progress=False)
    target = tmp_path / "music_avqa" / "avqa-test.json"
    part = target.with_name("avqa-test.json.part")
    assert not target.exists() and part.stat().st_size == 30000
    fetch_file(spec, tmp_path, progress=False)
    assert server.range_headers[-1] == "bytes=30000-"
    assert target.read_bytes() == CONTENT and not part.exists()


def test_complete_part_file_is_verified_and_moved(server, tmp_path):
    server.files["/a.json"] = CONTENT
    part = tmp_path / "music_avqa" / "avqa-test.json.part"
    part.parent.mkdir()
    part.write_bytes(CONTENT)  # fully downloaded before a crash, never renamed: the server answers 416
    fetch_file(_spec(server.base + "/a.json", sha256=hashlib.sha256(CONTENT).hexdigest()), tmp_path, progress=False)
    assert (tmp_path / "music_avqa" / "avqa-test.json").read_bytes() == CONTENT


def test_file_url_and_stale_part(tmp_path):
    source = tmp_path / "upstream.json"
    source.write_bytes(CONTENT)
    part = tmp_path / "data" / "music_avqa" / "avqa-test.json.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that file:// cannot resume")  # no Range support: restart cleanly
    spec = _spec(source.as_uri(), sha256=hashlib.sha256(CONTENT).hexdigest())
    path = fetch_file(spec, tmp_path / "data", progress=False)
    assert path.read_bytes() == CONTENT and not part.exists()


def test_offline_and_http_errors_say_download_by_hand(server, tmp_path):
    spec = _spec("http://127.0.0.1:9/avqa-test.json", sha256="0" * 64)  # nothing listens on port 9
    with pytest.raises(DownloadError, match=r"127.0.0.1:9/avqa-test.json.*download it by hand and place it at .*"
                                            r"avqa-test.json"):
        fetch_file(spec, tmp_path, progress=False, timeout=5)
    with pytest.raises(DownloadError, match="HTTP 404.*download it by hand"):
        fetch_file(_spec(server.base + "/missing.json"), tmp_path, progress=False)


def test_present_file_with_wrong_content_needs_force(server, tmp_path):
    server.files["/a.json"] = CONTENT
    spec = _spec(server.base + "/a.json", sha256=hashlib.sha256(CONTENT).hexdigest())
    target = tmp_path / "music_avqa" / "avqa-test.json"
    target.parent.mkdir()
    target.write_bytes(b"[]")
    with pytest.raises(ChecksumError, match="--force"):
        fetch_file(spec, tmp_path, progress=False)
    assert target.read_bytes() == b"[]"
    fetch_file(spec, tmp_path, progress=False, force=True)
    assert target.read_bytes() == CONTENT


def test_fetch_dataset_only_and_status(server, tmp_path):
    server.files["/v.json"], server.files["/t.json"] = b"[1]", b"[2]"
    files = (replace(_spec(server.base + "/v.json", sha256=hashlib.sha256(b"[1]").hexdigest()), name="avqa-val.json"),
             replace(_spec(server.base + "/t.json"), name="avqa-test.json"))  # no checksum recorded
    log = []
    paths = fetch("music_avqa", tmp_path, files=files, only=["avqa-val.json"], progress=False, log=log.append)
    assert [p.name for p in paths] == ["avqa-val.json"] and "verified" in log[0]
    assert [r["state"] for r in status(tmp_path, files)] == ["ok", "missing"]
    fetch("all", tmp_path, files=files, progress=False, log=log.append)
    assert "not verified" in log[-1]
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch("musicavqa", tmp_path, files=files)


def test_cli_data_fetch_reports_failure(tmp_path, capsys):
    code = cli_main(["data", "fetch", "music_avqa", "--root", str(tmp_path), "--only", "avqa-val.json",
                     "--mirror", "http://127.0.0.1:9", "--quiet"])
    assert code == 1
    assert "download it by hand" in capsys.readouterr().err
    assert cli_main(["data", "list", "--root", str(tmp_path)]) == 0
    assert "music_avqa/avqa-val.json" in capsys.readouterr().out
