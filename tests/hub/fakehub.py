"""A tiny local stand-in for the Hugging Face Hub HTTP API (standard library only).

Serves model repos from ``ROOT/{org}/{name}/{revision}/{files...}``; every revision folder is a branch
(``%2F`` in a folder name stands for ``/`` in the branch name). Enough of the API is implemented for the real
``huggingface_hub`` client (pointed here with ``HF_ENDPOINT``) to run ``list_repo_refs``, ``list_repo_files`` /
``list_repo_tree``, ``get_hf_file_metadata`` and ``hf_hub_download``, the calls ldw makes:

* ``GET /api/models/{repo}/refs``
* ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (``?recursive=true``)
* ``HEAD|GET /{repo}/resolve/{rev}/{path}`` (``Range`` supported)
* ``GET /api/agent-harnesses`` (an empty registry; the client's user-agent code fetches it)

URLs carry the revision quoted with ``safe=""`` (``exp/step2`` -> ``exp%2Fstep2``), so path segments are split
on ``/`` first and unquoted one by one.

Each branch gets a stable fake commit sha (``sha1("{repo}@{rev}")``), also accepted wherever a revision is.
``main`` is the ``main`` folder if there is one, else an alias of the last revision in natural order.
Files named ``*.safetensors``/``*.bin``/... are treated as LFS files (their ETag is the sha256).
Fault switches (``cut``, ``vanished``, ``gated``, ``bandwidth``) and the request ``log`` are plain attributes,
so a test can flip them while the server runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".npz")


@dataclass(frozen=True)
class Blob:
    """What the Hub knows about one file: size, git blob oid and, for LFS files, sha256 and pointer size."""

    size: int
    oid: str
    sha256: str | None
    pointer_size: int | None


@dataclass(frozen=True)
class Record:
    """One request as the server saw it; ``authorized`` means an Authorization header was sent."""

    method: str
    path: str
    authorized: bool
    range: str | None
    status: int


@dataclass
class Faults:
    """Fault injection switches; mutate them from a test while the server runs.

    cut: ``{"org/name/filename": n}`` - the next n GETs of that file (any revision) send the full
        Content-Length, then close the connection after half the bytes.
    vanished: ``{("org/name", "revision")}`` - that branch (and its commit sha) answers 404 RevisionNotFound.
    gated: ``{"org/name": "token"}`` - requests without ``Authorization: Bearer token`` get 401/403 GatedRepo.
    bandwidth: bytes per second for file bodies, None for unlimited.
    """

    cut: dict[str, int] = field(default_factory=dict)
    vanished: set[tuple[str, str]] = field(default_factory=set)
    gated: dict[str, str] = field(default_factory=dict)
    bandwidth: float | None = None


class HubError(Exception):
    """An error answer: HTTP status plus the ``X-Error-Code`` the client maps to an exception class."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The server. Use as a context manager, or call ``start()`` / ``stop()``; ``endpoint`` is its URL."""

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root)
        self.faults = Faults()
        self.log: list[Record] = []
        self._lock = threading.Lock()
        self._blobs: dict[tuple[str, int, int], Blob] = {}
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- repository model -------------------------------------------------------------------------------------

    @staticmethod
    def commit_sha(repo_id: str, revision: str) -> str:
        """The stable fake commit sha of a branch."""
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    def branches(self, repo_id: str) -> dict[str, Path]:
        """Visible branches (vanished ones left out), ``main`` first then natural order, mapped to their folders."""
        repo_dir = self.root / repo_id
        if not repo_dir.is_dir():
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        found = {unquote(d.name): d for d in repo_dir.iterdir() if d.is_dir()}
        live = {n: d for n, d in found.items() if (repo_id, n) not in self.faults.vanished}
        ordered = dict(sorted(live.items(), key=lambda kv: _natural_key(kv[0])))
        if "main" not in ordered and ordered:
            ordered["main"] = list(ordered.values())[-1]
        return {"main": ordered.pop("main"), **ordered} if ordered else {}

    def resolve(self, repo_id: str, revision: str) -> tuple[str, Path]:
        """Map a branch name or commit sha to ``(commit sha, folder)``; 404 RevisionNotFound otherwise."""
        for name, folder in self.branches(repo_id).items():
            sha = self.commit_sha(repo_id, unquote(folder.name))  # "main" alias shares its target's commit
            if revision in (name, sha):
                return sha, folder
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def blob(self, path: Path) -> Blob:
        """Hub metadata of a file, cached by (path, size, mtime)."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._blobs:
            data = path.read_bytes()
            if path.name.endswith(LFS_SUFFIXES):
                sha = hashlib.sha256(data).hexdigest()
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
                self._blobs[key] = Blob(len(data), _git_oid(pointer), sha, len(pointer))
            else:
                self._blobs[key] = Blob(len(data), _git_oid(data), None, None)
        return self._blobs[key]

    def tree_entry(self, folder: Path, path: Path) -> dict:
        """One ``/tree`` entry in the Hub's JSON shape."""
        rel = path.relative_to(folder).as_posix()
        if path.is_dir():
            return {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": 0, "path": rel}
        b = self.blob(path)
        entry: dict = {"type": "file", "oid": b.oid, "size": b.size, "path": rel}
        if b.sha256:
            entry["lfs"] = {"oid": b.sha256, "size": b.size, "pointerSize": b.pointer_size}
        return entry


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the Hub; every answer carries a Content-Length

        def log_message(self, format: str, *args: object) -> None:  # silence stderr
            pass

        def do_HEAD(self) -> None:
            self._dispatch(body=False)

        def do_GET(self) -> None:
            self._dispatch(body=True)

        def _dispatch(self, body: bool) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            parts = [unquote(p) for p in url.path.strip("/").split("/")]  # %2F in a segment stays inside it
            try:
                if parts == ["api", "agent-harnesses"]:  # fetched by build_hf_headers unless HF_HUB_DISABLE_TELEMETRY=1
                    self._send(200, b'{"standardEnvVars": [], "harnesses": {}}', body, "application/json")
                elif parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo_id, rest = "/".join(parts[2:4]), parts[4:]
                    self._check_auth(repo_id)
                    self._api(repo_id, rest, query, body)
                elif len(parts) >= 5 and parts[2] == "resolve":
                    repo_id = "/".join(parts[:2])
                    self._check_auth(repo_id)
                    self._resolve(repo_id, parts[3], "/".join(parts[4:]), body)
                else:
                    raise HubError(404, "NotFound", f"No route for {url.path}")
            except HubError as e:
                self._send(
                    e.status,
                    json.dumps({"error": e.message}).encode(),
                    body,
                    "application/json",
                    {"X-Error-Code": e.code, "X-Error-Message": e.message, **e.headers},
                )
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _check_auth(self, repo_id: str) -> None:
            token = hub.faults.gated.get(repo_id)
            if token is None:
                return
            sent = self.headers.get("Authorization")
            if sent is None:
                raise HubError(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must be authenticated.")
            if sent != f"Bearer {token}":
                raise HubError(
                    403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the authorized list."
                )

        def _api(self, repo_id: str, rest: list[str], query: dict[str, str], body: bool) -> None:
            if rest == ["refs"]:
                refs = [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": hub.resolve(repo_id, n)[0]}
                    for n in hub.branches(repo_id)
                ]
                data: object = {"branches": refs, "converts": [], "tags": [], "pullRequests": []}
            elif rest[0] == "tree" and len(rest) >= 2:
                sha, folder = hub.resolve(repo_id, rest[1])
                sub = "/".join(rest[2:]).split("/") if rest[2:] else []
                base = folder.joinpath(*sub)
                if ".." in sub or not base.is_dir():
                    raise HubError(404, "EntryNotFound", f"{'/'.join(rest[2:])} does not exist", {"X-Repo-Commit": sha})
                found = base.rglob("*") if query.get("recursive", "").lower() == "true" else base.iterdir()
                data = [hub.tree_entry(folder, p) for p in sorted(found)]
            else:
                raise HubError(404, "NotFound", "Unknown API route")
            self._send(200, json.dumps(data).encode(), body, "application/json")

        def _resolve(self, repo_id: str, revision: str, filename: str, body: bool) -> None:
            sha, folder = hub.resolve(repo_id, revision)
            path = folder.joinpath(*filename.split("/"))
            if ".." in filename.split("/") or not path.is_file():
                raise HubError(404, "EntryNotFound", f"{filename} does not exist", {"X-Repo-Commit": sha})
            b = hub.blob(path)
            headers = {"X-Repo-Commit": sha, "ETag": f'"{b.oid}"', "Accept-Ranges": "bytes"}
            if b.sha256:
                headers.update({"X-Linked-Etag": f'"{b.sha256}"', "X-Linked-Size": str(b.size)})
            start, end, status = 0, b.size - 1, 200
            if rng := self.headers.get("Range"):  # "bytes=S-", "bytes=S-E" or "bytes=-N" (the last N bytes)
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                if m and m[1]:
                    start, end = int(m[1]), min(int(m[2] or end), end)
                elif m and m[2]:
                    start = max(b.size - int(m[2]), 0)
                if not m or not (m[1] or m[2]) or start > end:
                    raise HubError(416, "RangeNotSatisfiable", rng, {"Content-Range": f"bytes */{b.size}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{b.size}"
            length = end - start + 1
            self._head(status, length, "application/octet-stream", headers)
            if body:
                key = f"{repo_id}/{filename}"
                with hub._lock:
                    cut = hub.faults.cut.get(key, 0) > 0
                    if cut:
                        hub.faults.cut[key] -= 1
                self._stream(path, start, length // 2 if cut else length)
                if cut:
                    self.close_connection = True  # peer sees a body shorter than Content-Length

        def _stream(self, path: Path, start: int, length: int) -> None:
            bw = hub.faults.bandwidth
            chunk = max(1024, int(bw / 20)) if bw else 1 << 20
            t0, sent = time.monotonic(), 0
            with path.open("rb") as f:
                f.seek(start)
                while sent < length:
                    data = f.read(min(chunk, length - sent))
                    if not data:
                        break
                    sent += len(data)
                    if bw:  # a chunk may leave once the byte budget allows it, so the last byte arrives at size/bw
                        time.sleep(max(0.0, sent / bw - (time.monotonic() - t0)))
                    self.wfile.write(data)
            self.wfile.flush()

        def _head(self, status: int, length: int, ctype: str, headers: dict[str, str]) -> None:
            with hub._lock:  # logged before anything is sent, so a client never sees an answer not yet in the log
                hub.log.append(
                    Record(self.command, self.path, "Authorization" in self.headers, self.headers.get("Range"), status)
                )
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()

        def _send(
            self, status: int, data: bytes, body: bool, ctype: str, headers: dict[str, str] | None = None
        ) -> None:
            self._head(status, len(data), ctype, headers or {})
            if body:
                self.wfile.write(data)

    return Handler
