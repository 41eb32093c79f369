"""`avmaster data fetch <dataset>`: the official annotation files, verified against recorded checksums.
The files of each benchmark (URLs, checksums, licences) are declared in its DatasetSpec (dataset_registry).

    avmaster data list                       what is known, and what is on disk
    avmaster data fetch music_avqa           -> data/music_avqa/avqa-{train,val,test}.json ...
    avmaster data fetch all --root data

Files come from their authors' GitHub repositories (raw.githubusercontent.com, default branch). Each is
checked against the sha256 recorded here or, where only a git blob id is known, against the git blob hash
(sha1 of b"blob <size>\\0" + content, what `git hash-object` prints), compared by the recorded prefix.
Downloads go to `<name>.part` beside the target and resume with an HTTP Range request; only a verified
file is renamed to its final name, so a half file never sits under the final name.
`--mirror URL` (or AVMASTER_DATA_MIRROR) replaces https://raw.githubusercontent.com by a mirror with the
same <owner>/<repo>/<ref>/<path> layout.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .dataset_registry import GITHUB_RAW, MIRROR_ENV, SPECS, OfficialFile, official_files

CHUNK = 1 << 16
# The official files (URLs, checksums) and licences are declared per benchmark in the registry.
OFFICIAL_FILES: tuple[OfficialFile, ...] = official_files()
LICENCES = {spec.name: spec.licence for spec in SPECS if spec.licence}


class DownloadError(RuntimeError):
    """A file that could not be fetched; the message names the URL and where to put a manual copy."""


class ChecksumError(DownloadError):
    """A downloaded (or present) file whose content is not the recorded one."""


# --------------------------------------------------------------------------- checksums

def file_digests(path: str | Path) -> tuple[str, str]:
    """(sha256 hex, git blob sha1 hex) of a file, in one pass."""
    path = Path(path)
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def verify(spec: OfficialFile, path: str | Path) -> bool | None:
    """True if `path` holds the recorded content, False if not, None if nothing is recorded to compare."""
    if not spec.sha256 and not spec.git_blob_prefix:
        return None
    sha256, blob = file_digests(path)
    if spec.sha256:
        return sha256 == spec.sha256.lower()
    return blob.startswith(spec.git_blob_prefix.lower())


def _expected(spec: OfficialFile) -> str:
    return f"sha256 {spec.sha256}" if spec.sha256 else f"git blob {spec.git_blob_prefix}…"


# --------------------------------------------------------------------------- fetching

def files_for(dataset: str, files: tuple[OfficialFile, ...] = OFFICIAL_FILES) -> list[OfficialFile]:
    """The official files of one dataset ("all": every dataset)."""
    chosen = [f for f in files if dataset in ("all", f.dataset)]
    if not chosen:
        known = sorted({f.dataset for f in files})
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(known)} or 'all'")
    return chosen


def fetch_file(spec: OfficialFile, root: str | Path = "data", *, mirror: str | None = None, force: bool = False,
               timeout: float = 60.0, progress: bool = True) -> Path:
    """Download one file to <root>/<dataset>/<name>, verified; returns the path. Skips a verified copy."""
    target = Path(root) / spec.dataset / spec.name
    url = spec.url(mirror)
    if target.exists():
        ok = verify(spec, target)
        if ok or (ok is None and not force):
            return target
        if not force:
            raise ChecksumError(f"{target} exists but is not the official file (expected {_expected(spec)}). "
                                f"Delete it, or rerun with --force to replace it by a fresh download of {url}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    _download(url, part, target, spec, timeout=timeout, progress=progress)
    ok = verify(spec, part)
    if ok is False:
        got_sha256, got_blob = file_digests(part)
        part.unlink(missing_ok=True)
        raise ChecksumError(f"the file downloaded from {url} is not the official {spec.name} (expected "
                            f"{_expected(spec)}, got sha256 {got_sha256} / git blob {got_blob}); it was deleted. "
                            f"Rerun the fetch, or download it by hand and place it at {target}.")
    os.replace(part, target)
    return target


def _download(url: str, part: Path, target: Path, spec: OfficialFile, *, timeout: float, progress: bool) -> None:
    """Stream `url` into `part`, resuming from its current size with an HTTP Range request."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "avmaster-data-fetch"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    by_hand = (f"If this machine is offline or the URL moved, download it by hand and place it at {target} "
               f"(then rerun `avmaster data fetch {spec.dataset}` to verify it).")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part may be complete; verify decides
            return
        raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}. {by_hand}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not download {url}: {reason}. {by_hand}") from None
    with response:
        status = getattr(response, "status", None) or response.getcode()
        resumed = have > 0 and status == 206
        if not resumed:
            have = 0  # the server (or file://) sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        received = have
        try:
            with open(part, "ab" if resumed else "wb") as out, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, desc=spec.name,
                    disable=not progress, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"the download of {url} was interrupted after {received} bytes ({e}); rerun to "
                                f"resume it. {by_hand}") from None
    if total is not None and received < total:  # http.client returns short reads silently
        raise DownloadError(f"the download of {url} was interrupted after {received} of {total} bytes; rerun to "
                            f"resume it. {by_hand}")


def fetch(dataset: str, root: str | Path = "data", *, only: list[str] | None = None, mirror: str | None = None,
          force: bool = False, files: tuple[OfficialFile, ...] = OFFICIAL_FILES, progress: bool = True,
          log=print) -> list[Path]:
    """Fetch every official file of `dataset` ("all" for all); `only` restricts to those file names."""
    chosen = files_for(dataset, files)
    if only:
        unknown = set(only) - {f.name for f in chosen}
        if unknown:
            raise ValueError(f"no official file named {sorted(unknown)} for {dataset}; "
                             f"choose from {[f.name for f in chosen]}")
        chosen = [f for f in chosen if f.name in only]
    paths, failures = [], []
    for spec in chosen:
        try:
            path = fetch_file(spec, root, mirror=mirror, force=force, progress=progress)
        except DownloadError as e:
            failures.append(str(e))
            log(f"FAILED {spec.dataset}/{spec.name}: {e}")
            continue
        status = {True: "verified", None: "not verified (no checksum recorded)"}[verify(spec, path)]
        log(f"ok     {path} ({status})")
        paths.append(path)
    if failures:
        raise DownloadError(f"{len(failures)} of {len(chosen)} file(s) could not be fetched:\n" + "\n".join(failures))
    return paths


def status(root: str | Path = "data", files: tuple[OfficialFile, ...] = OFFICIAL_FILES) -> list[dict]:
    """One row per official file: dataset, name, state (missing / ok / unverified / MISMATCH / partial), url."""
    rows = []
    for spec in files:
        target = Path(root) / spec.dataset / spec.name
        if target.exists():
            state = {True: "ok", False: "MISMATCH", None: "unverified"}[verify(spec, target)]
        elif target.with_name(target.name + ".part").exists():
            state = "partial"
        else:
            state = "missing"
        rows.append({"dataset": spec.dataset, "name": spec.name, "state": state, "url": spec.url(),
                     "note": spec.note})
    return rows


# --------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="official annotation files (fetch, list)",
                                 description="Download and check the benchmarks' official annotation files.")
    data_sub = data.add_subparsers(dest="data_command", metavar="<data command>")
    datasets = sorted(spec.name for spec in SPECS if spec.files) + ["all"]

    fetch_parser = data_sub.add_parser("fetch", help="download a dataset's annotation files, verified",
                                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch_parser.add_argument("dataset", choices=datasets)
    fetch_parser.add_argument("--root", default="data", help="folder that gets <dataset>/<file> (default: data)")
    fetch_parser.add_argument("--only", action="append", metavar="FILE", help="fetch only this file (repeatable)")
    fetch_parser.add_argument("--mirror", help=f"base URL replacing {GITHUB_RAW} (env {MIRROR_ENV})")
    fetch_parser.add_argument("--force", action="store_true", help="replace a present file that fails its checksum")
    fetch_parser.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch_parser.set_defaults(func=_cmd_fetch)

    list_parser = data_sub.add_parser("list", help="the official files and whether they are on disk and verified")
    list_parser.add_argument("--root", default="data")
    list_parser.set_defaults(func=_cmd_list)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def _cmd_fetch(args) -> int:
    try:
        fetch(args.dataset, args.root, only=args.only, mirror=args.mirror, force=args.force, progress=not args.quiet)
    except (DownloadError, ValueError) as e:
        print(f"avmaster data fetch: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_list(args) -> int:
    rows = status(args.root)
    width = max(len(f"{r['dataset']}/{r['name']}") for r in rows)
    for r in rows:
        print(f"{r['dataset'] + '/' + r['name']:<{width}}  {r['state']:<10}  {r['note']}")
    print("\nlicences:")
    for dataset, licence in LICENCES.items():
        print(f"  {dataset}: {licence}")
    return 0
