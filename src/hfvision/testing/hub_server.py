"""A local, stdlib-only HTTP server speaking enough of the Hugging Face Hub protocol for offline tests.

`huggingface_hub` (`create_repo`, `upload_folder`, `create_commit`, `hf_hub_download`, `snapshot_download`, ...),
`transformers` and `diffusers` (`push_to_hub` / `from_pretrained`) work against it once `HF_ENDPOINT` points to it
(see [`hub_env`]). Files are always committed inline ("regular" upload mode, base64 in the commit payload), so neither
LFS nor Xet storage is needed. Weight-like files (`*.safetensors`, `*.bin`, ... or >= 10 MiB) are *presented* as LFS
files, like the real Hub does: their `ETag` is the sha256 of the content and tree entries carry `lfs.oid`.

Storage under `root`: `{type}s/{namespace}/{name}/repo.json` (refs, and every commit with its full file manifest) and
`{type}s/{namespace}/{name}/blobs/{sha256}` (content-addressed file contents).

Example:

```py
>>> with LocalHubServer(tmp_path) as server:
...     subprocess.run([sys.executable, "script.py"], env={**os.environ, **hub_env(server.endpoint)}, check=True)
```
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import os
import re
import shutil
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

USER = "user"
TOKEN = "hf_local_test_token"
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_NAME_RE = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_LFS_SUFFIXES = (
    *".7z .arrow .bin .bz2 .ckpt .ftz .gz .h5 .joblib .mlmodel .model .msgpack .npy .npz .onnx .ot .parquet".split(),
    *".pb .pickle .pkl .pt .pth .rar .safetensors .tar .tflite .tgz .wasm .xz .zip .zst".split(),
)
_LFS_MIN_SIZE = 10 * 1024 * 1024


def hub_env(endpoint: str) -> dict[str, str]:
    """
    Environment variables a client process needs to talk to a [`LocalHubServer`].

    `huggingface_hub` reads them once, at import time: set them before it is imported (e.g. in a subprocess).

    Args:
        endpoint (`str`):
            The server endpoint, e.g. `server.endpoint`.

    Returns:
        `dict[str, str]`: `HF_ENDPOINT`, `HF_TOKEN` (any token is accepted), Xet and telemetry disabled, online mode,
        and the server host added to `NO_PROXY` so a configured HTTP proxy is bypassed.
    """
    bypass = [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), urlsplit(endpoint).hostname]
    no_proxy = ",".join(host for host in bypass if host)
    return {
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


class _HubError(Exception):
    """An HTTP error answered the way the Hub does (JSON body, `X-Error-Code` / `X-Error-Message` headers)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str, size: int) -> bool:
    return size >= _LFS_MIN_SIZE or path.lower().endswith(_LFS_SUFFIXES) or "tfevents" in path


def _file_entry(path: str, meta: dict) -> dict:
    """Tree entry of a file; LFS-like files get the git oid of their pointer file and an `lfs` block."""
    entry = {"type": "file", "oid": meta["oid"], "size": meta["size"], "path": path}
    if _is_lfs(path, meta["size"]):
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{meta['sha256']}\nsize {meta['size']}\n"
        entry["oid"] = _git_sha1(pointer.encode())
        entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": len(pointer)}
    return entry


def _dir_entry(path: str, files: dict) -> dict:
    content = json.dumps(sorted((p, m["oid"]) for p, m in files.items() if p.startswith(path + "/")))
    return {"type": "directory", "oid": hashlib.sha1(content.encode()).hexdigest(), "size": 0, "path": path}


def _tree(files: dict, base: str, recursive: bool) -> list[dict] | None:
    """Entries under folder `base` ("" for the root), or `None` if there is no such folder."""
    prefix = base.strip("/") + "/" if base.strip("/") else ""
    entries: dict[str, dict] = {}
    for path, meta in files.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        for i in range(1, len(parts) if recursive else min(len(parts), 2)):
            folder = prefix + "/".join(parts[:i])
            entries.setdefault(folder, _dir_entry(folder, files))
        if recursive or len(parts) == 1:
            entries[path] = _file_entry(path, meta)
    return [entries[k] for k in sorted(entries)] if entries or not prefix else None


def _clean_path(path: Any) -> str:
    if not isinstance(path, str) or not path.strip("/"):
        raise _HubError(400, f"Invalid path in commit: {path!r}")
    parts = path.strip("/").split("/")
    if any(p in ("", ".", "..", ".git") for p in parts):
        raise _HubError(400, f"Invalid path in commit: {path!r}")
    return "/".join(parts)


class _Store:
    """Repositories on disk. Every read-modify-write happens under `lock`."""

    def __init__(self, root: Path):
        self.root, self.lock = root, threading.RLock()

    def repo_dir(self, repo_type: str, repo_id: str) -> Path | None:
        parts = repo_id.split("/")
        if repo_type not in _URL_PREFIX or len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts):
            return None
        return self.root / f"{repo_type}s" / parts[0] / parts[1]

    def load(self, repo_type: str, repo_id: str, authorized: bool = True) -> tuple[Path, dict]:
        folder = self.repo_dir(repo_type, repo_id)
        if folder is not None and (folder / "repo.json").is_file():
            state = json.loads((folder / "repo.json").read_text())
            if authorized or not state["private"]:
                return folder, state
        raise _HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")

    def save(self, folder: Path, state: dict) -> None:
        tmp = folder / f"repo.json.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, folder / "repo.json")

    def create(self, repo_type: str, repo_id: str, private: bool) -> None:
        folder = self.repo_dir(repo_type, repo_id)
        if folder is None:
            raise _HubError(400, f"Invalid repo id {repo_id!r}: expected 'namespace/name' with [A-Za-z0-9._-]")
        (folder / "blobs").mkdir(parents=True)
        state = {"private": private, "createdAt": _now(), "refs": {}, "commits": {}}
        self.add_commit(state, "main", {}, "initial commit", "", None)
        self.save(folder, state)

    @staticmethod
    def resolve(state: dict, revision: str) -> str:
        if revision in state["refs"]:
            return state["refs"][revision]
        if revision in state["commits"]:
            return revision
        raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    @staticmethod
    def add_commit(state: dict, ref: str, files: dict, title: str, message: str, parent: str | None) -> str:
        commit = {"parents": [parent] if parent else [], "title": title, "message": message, "date": _now()}
        digest = json.dumps([ref, commit, sorted((p, m["oid"]) for p, m in files.items())]).encode() + os.urandom(8)
        sha = hashlib.sha1(digest).hexdigest()
        state["commits"][sha] = {**commit, "files": files}
        state["refs"][ref] = sha
        return sha

    def put_blob(self, folder: Path, data: bytes) -> dict:
        sha256 = hashlib.sha256(data).hexdigest()
        blob = folder / "blobs" / sha256
        if not blob.exists():
            tmp = blob.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, blob)
        return {"size": len(data), "sha256": sha256, "oid": _git_sha1(data)}

    def apply(self, folder: Path, files: dict, key: str, value: dict) -> None:
        """Apply one NDJSON commit operation to the `files` manifest."""
        path = _clean_path(value.get("path"))
        if key == "file":
            content = value.get("content", "")
            raw = base64.b64decode(content) if value.get("encoding", "base64") == "base64" else content.encode()
            files[path] = self.put_blob(folder, raw)
        elif key == "lfsFile":
            blob = folder / "blobs" / str(value.get("oid"))
            if not re.fullmatch(r"[0-9a-f]{64}", str(value.get("oid"))) or not blob.is_file():
                raise _HubError(400, "LFS/Xet uploads are not supported by this local Hub: commit files inline.")
            files[path] = self.put_blob(folder, blob.read_bytes())  # server-side copy of known content
        elif key in ("deletedFile", "deletedFolder"):
            doomed = [p for p in files if (p == path if key == "deletedFile" else p.startswith(path + "/"))]
            if not doomed:
                raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise _HubError(400, f"Unknown commit operation {key!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are closed after a minute
    server: _HubHTTPServer
    repo_type: str
    repo_id: str

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        try:
            self.body = self._read_body()
            url = urlsplit(self.path)
            self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self.auth = bool(self.headers.get("Authorization"))
            self._dispatch([unquote(s) for s in url.path.split("/")[1:]])
        except _HubError as err:
            headers = {**err.headers, "X-Error-Message": err.message.encode("ascii", "replace").decode()}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send_json({"error": err.message, **err.extra}, err.status, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # a bug in this server: answer 500 rather than hang the client
            logger.exception("LocalHubServer: error while handling %s %s", self.command, self.path)
            self._send_json({"error": f"{type(err).__name__}: {err}"}, 500)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    @property
    def store(self) -> _Store:
        return self.server.store

    @property
    def endpoint(self) -> str:
        return "http://{}:{}".format(*self.server.server_address[:2])

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the body was not read: the connection can't be reused
            raise _HubError(411, "LocalHubServer needs a Content-Length (chunked request bodies are not supported)")
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_json(self, payload: Any, status: int = 200, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {}), "Content-Length": str(len(body))}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json_body(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError as err:
            raise _HubError(400, f"Invalid JSON body: {err}") from err
        return data if isinstance(data, dict) else {}

    def _load(self, revision: str | None = None) -> tuple[Path, dict, str]:
        """Load the current repo (and resolve `revision` to a commit sha, `""` if not given)."""
        with self.store.lock:
            folder, state = self.store.load(self.repo_type, self.repo_id, self.auth)
            return folder, state, "" if revision is None else self.store.resolve(state, revision)

    def _dispatch(self, segs: list[str]) -> None:
        method = self.command
        if segs[:1] == ["api"]:
            route = (method, *segs[1:3])
            if route == ("GET", "whoami-v2"):
                if not self.auth:
                    raise _HubError(401, "Invalid credentials in Authorization header")
                access = {"displayName": "local-test", "role": "write"}
                user = {"type": "user", "id": USER, "name": USER, "fullname": "Local Test User", "orgs": []}
                return self._send_json({**user, "auth": {"type": "access_token", "accessToken": access}})
            if route == ("POST", "validate-yaml"):
                return self._send_json({})
            if route == ("GET", "agent-harnesses"):  # registry huggingface_hub fetches to detect AI agents
                return self._send_json({"standardEnvVars": [], "harnesses": {}})
            if route in (("POST", "repos", "create"), ("DELETE", "repos", "delete")):
                return self._create_or_delete(self._json_body())
            if len(segs) >= 4 and segs[1] in _TYPES:
                self.repo_type, self.repo_id = _TYPES[segs[1]], f"{segs[2]}/{segs[3]}"
                action, args = (segs[4], segs[5:]) if len(segs) > 4 else ("", [])
                handler = getattr(self, f"_api_{method}_{action.replace('-', '_')}".lower(), None)
                if handler is not None and (args or action in ("", "refs")):
                    return handler(args)
        elif method in ("GET", "HEAD"):
            repo_type = _TYPES.get(segs[0]) if segs[0] in ("datasets", "spaces") else None
            rest = segs[1:] if repo_type else segs
            if len(rest) >= 5 and rest[2] == "resolve":
                self.repo_type, self.repo_id = repo_type or "model", f"{rest[0]}/{rest[1]}"
                return self._resolve(rest[3:])
        logger.warning("LocalHubServer: no route for %s %s", method, self.path)
        raise _HubError(404, f"LocalHubServer does not implement {method} {urlsplit(self.path).path}")

    # -- repos ----------------------------------------------------------------------------------------------------
    def _create_or_delete(self, data: dict) -> None:
        repo_type, name = data.get("type") or "model", data.get("name")
        if not isinstance(name, str):
            raise _HubError(400, "Missing repo 'name'")
        repo_id = f"{data.get('organization') or USER}/{name}"
        url = f"{self.endpoint}/{_URL_PREFIX.get(repo_type, '')}{repo_id}"
        with self.store.lock:
            folder = self.store.repo_dir(repo_type, repo_id)
            exists = folder is not None and (folder / "repo.json").is_file()
            if self.command == "DELETE":
                if not exists:
                    raise _HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
                shutil.rmtree(folder)  # type: ignore[arg-type]
                return self._send_json({})
            if exists:
                raise _HubError(409, f"You already created this {repo_type} repo", url=url)
            private = data["visibility"] == "private" if data.get("visibility") else bool(data.get("private"))
            self.store.create(repo_type, repo_id, private)
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _api_get_(self, args: list[str]) -> None:
        _, state, sha = self._load("/".join(args[1:]) if args else "main")
        commit, siblings = state["commits"][sha], []
        for path, meta in sorted(commit["files"].items()):
            entry = _file_entry(path, meta)
            siblings.append({"rfilename": path, "size": meta["size"], "blobId": entry["oid"]})
            if "lfs" in entry:
                siblings[-1]["lfs"] = {"sha256": meta["sha256"], "size": meta["size"]}
                siblings[-1]["lfs"]["pointerSize"] = entry["lfs"]["pointerSize"]
        info = {"_id": hashlib.sha1(f"{self.repo_type}/{self.repo_id}".encode()).hexdigest()[:24], "id": self.repo_id}
        info.update(author=self.repo_id.split("/")[0], sha=sha, private=state["private"], gated=False, disabled=False)
        info.update(lastModified=commit["date"], createdAt=state["createdAt"], downloads=0, likes=0, tags=[])
        self._send_json({**info, "siblings": siblings, "usedStorage": sum(s["size"] for s in siblings)})

    def _api_get_revision(self, args: list[str]) -> None:
        self._api_get_(["revision", *args])

    def _api_get_refs(self, args: list[str]) -> None:
        refs = self._load()[1]["refs"]
        heads = {n: s for n, s in refs.items() if not n.startswith("refs/")}
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in heads.items()]
        prs = [{"name": n, "ref": n, "targetCommit": s} for n, s in refs.items() if n.startswith("refs/pr/")]
        self._send_json({"branches": branches, "tags": [], "converts": [], "pullRequests": prs})

    def _api_get_commits(self, args: list[str]) -> None:
        _, state, sha = self._load("/".join(args))
        history = []
        while sha:
            commit = state["commits"][sha]
            fields = {k: commit[k] for k in ("title", "message", "date")}
            history.append({"id": sha, "authors": [{"user": USER}], **fields})
            sha = commit["parents"][0] if commit["parents"] else ""
        self._send_json(history)

    def _api_post_branch(self, args: list[str]) -> None:
        with self.store.lock:
            folder, state, sha = self._load(self._json_body().get("startingPoint") or "main")
            if "/".join(args) in state["refs"]:
                raise _HubError(409, f"Branch {'/'.join(args)} already exists")
            state["refs"]["/".join(args)] = sha
            self.store.save(folder, state)
        self._send_json({})

    def _api_delete_branch(self, args: list[str]) -> None:
        with self.store.lock:
            folder, state, _ = self._load("/".join(args))
            state["refs"].pop("/".join(args), None)
            self.store.save(folder, state)
        self._send_json({})

    # -- files ----------------------------------------------------------------------------------------------------
    def _api_get_tree(self, args: list[str]) -> None:
        _, state, sha = self._load(args[0])
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        entries = _tree(state["commits"][sha]["files"], "/".join(args[1:]), recursive)
        if entries is None:
            raise _HubError(404, f"Folder not found: {'/'.join(args[1:])}", "EntryNotFound")
        self._send_json(entries)

    def _api_post_paths_info(self, args: list[str]) -> None:
        if "json" in self.headers.get("Content-Type", ""):
            paths = self._json_body().get("paths", [])
        else:  # huggingface_hub sends a form: paths=a&paths=b&expand=false
            paths = parse_qs(self.body.decode()).get("paths", [])
        _, state, sha = self._load(args[0])
        files, out = state["commits"][sha]["files"], []
        for path in (p.strip("/") for p in paths):
            if path in files:
                out.append(_file_entry(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                out.append(_dir_entry(path, files))
        self._send_json(out)

    def _api_post_preupload(self, args: list[str]) -> None:
        _, state, sha = self._load(args[0])
        files, answer = state["commits"][sha]["files"], []
        for item in self._json_body().get("files", []):
            answer.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False})
            if item["path"] in files:  # git oid of the current content: lets the client skip unchanged files
                answer[-1]["oid"] = files[item["path"]]["oid"]
        self._send_json({"files": answer, "commitOid": sha})

    def _api_post_commit(self, args: list[str]) -> None:
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except ValueError as err:
            raise _HubError(400, f"Invalid NDJSON commit payload: {err}") from err
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "Commit payload must start with a 'header' line")
        header, revision, pr_url = lines[0].get("value") or {}, "/".join(args), None
        with self.store.lock:
            folder, state, parent = self._load(revision)
            if self.query.get("create_pr") in ("1", "true"):
                number = 1 + sum(ref.startswith("refs/pr/") for ref in state["refs"])
                revision = f"refs/pr/{number}"
                pr_url = f"{self.endpoint}/{_URL_PREFIX[self.repo_type]}{self.repo_id}/discussions/{number}"
            elif revision not in state["refs"]:
                raise _HubError(400, f"Can only commit to a branch, not to {revision!r}")
            if header.get("parentCommit") and header["parentCommit"] != parent:
                raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(state["commits"][parent]["files"])
            for line in lines[1:]:
                self.store.apply(folder, files, line.get("key"), line.get("value") or {})
            title, message = header.get("summary") or "Commit", header.get("description") or ""
            sha = self.store.add_commit(state, revision, files, title, message, parent)
            self.store.save(folder, state)
        url = f"{self.endpoint}/{_URL_PREFIX[self.repo_type]}{self.repo_id}/commit/{sha}"
        self._send_json({"success": True, "commitOid": sha, "commitUrl": url, "pullRequestUrl": pr_url})

    def _resolve(self, rest: list[str]) -> None:
        revision, parts = rest[0], rest[1:]
        if revision == "refs" and len(parts) > 2:  # unencoded "refs/pr/1"
            revision, parts = "/".join(["refs", *parts[:2]]), parts[2:]
        path = "/".join(parts)
        folder, state, sha = self._load(revision)
        meta = state["commits"][sha]["files"].get(path)
        if meta is None:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        size, lfs = meta["size"], _is_lfs(path, meta["size"])
        etag = f'"{meta["sha256"] if lfs else meta["oid"]}"'
        headers = {"ETag": etag, "X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        headers["Content-Type"] = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if lfs:  # the Hub redirects LFS files to a CDN and describes them with these headers
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": str(size)})
        start, end, status = 0, size - 1, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match[1] or match[2]):
            start = int(match[1]) if match[1] else max(size - int(match[2]), 0)
            end = min(int(match[2]), size - 1) if match[1] and match[2] else size - 1
            if start > end:
                raise _HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{size}"
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(end - start + 1)}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(folder / "blobs" / meta["sha256"], "rb") as blob:
            blob.seek(start)
            remaining = end - start + 1
            while remaining > 0 and (chunk := blob.read(min(remaining, 1 << 20))):
                self.wfile.write(chunk)
                remaining -= len(chunk)


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    store: _Store


class LocalHubServer:
    """
    A Hugging Face Hub-compatible HTTP server on `host:port`, storing repositories under `root`.

    Serves model, dataset and Space repos: repo creation/deletion, commits (inline files, deletions, PRs), repo info,
    tree and paths-info listings, refs, commit history, branches, and `resolve` downloads (HEAD/GET, Range). Any token
    is accepted; `whoami` answers user `"user"`, which owns repos created without a namespace. Unknown endpoints answer
    404 and are logged as warnings on the `hfvision.testing.hub_server` logger.

    Args:
        root (`str` or `Path`):
            Folder where repositories are stored (created if missing). Reusing a folder keeps its repos.
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Interface to bind. Only loopback by default.
        port (`int`, *optional*, defaults to `0`):
            Port to bind; `0` picks a free one.
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.root, self.host, self.port = Path(root), host, port
        self._httpd: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalHubServer:
        """Bind the socket and serve in a daemon thread. Returns `self`; no-op if already running."""
        if self._httpd is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._httpd = _HubHTTPServer((self.host, self.port), _Handler)
            self._httpd.store = _Store(self.root)
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="LocalHubServer", daemon=True)
            self._thread.start()
            logger.info("LocalHubServer serving %s at %s", self.root, self.endpoint)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Stored repositories are kept on disk."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd, self._thread = None, None

    @property
    def endpoint(self) -> str:
        """Base URL to use as `HF_ENDPOINT`, e.g. `"http://127.0.0.1:54321"`."""
        if self._httpd is None:
            raise RuntimeError("LocalHubServer is not running: call start() first.")
        return "http://{}:{}".format(*self._httpd.server_address[:2])

    url = endpoint

    def __enter__(self) -> LocalHubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
