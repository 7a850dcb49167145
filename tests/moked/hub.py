"""A loopback server speaking the Hugging Face Hub's HTTP API, as huggingface_hub uses it:

- `GET /api/models/{repo}[/revision/{rev}]?blobs=true`: the model's info (commit sha,
  siblings with size, git blob id and, for LFS files, the object's sha256 and size);
- `HEAD|GET /{repo}/resolve/{rev}/{filename}`: `X-Repo-Commit`, `ETag` (the git blob id of a
  small file), for LFS files `X-Linked-Etag` (the sha256) and `X-Linked-Size`,
  `Content-Length`, `Accept-Ranges`; a `Range: bytes=N-` GET answers 206 with the rest.

Faults for the tests: `drop_once` (the first GET of a file stops halfway and the connection
closes), `fail_after_drop` (the retry after that drop gets a 503, ending the pull),
`corrupt` (the bytes served are not the bytes the metadata describes).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LFS_FROM_BYTES = 1_000_000
"""Files this large are LFS objects (the Hub tracks model.bin and big tokenizers so)."""


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    commit: str
    languages: list[str]

    def is_lfs(self, name: str) -> bool:
        return len(self.files[name]) >= LFS_FROM_BYTES

    def sibling(self, name: str) -> dict[str, Any]:
        data = self.files[name]
        entry: dict[str, Any] = {"rfilename": name, "size": len(data)}
        if self.is_lfs(name):
            sha = hashlib.sha256(data).hexdigest()
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n"
            ).encode()
            entry |= {
                "blobId": git_blob_id(pointer),
                "lfs": {"size": len(data), "sha256": sha, "pointerSize": len(pointer)},
            }
        else:
            entry["blobId"] = git_blob_id(data)
        return entry


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class HubServer:
    repos: dict[str, Repo] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)
    fail_after_drop: bool = False
    corrupt: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _failing: set[str] = field(default_factory=set)

    def add(self, repo_id: str, directory: Path, languages: list[str]) -> Repo:
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
        files["README.md"] = f"---\nlanguage: {json.dumps(languages)}\n---\n# {repo_id}\n".encode()
        files[".gitattributes"] = b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
        commit = hashlib.sha1(repo_id.encode(), usedforsecurity=False).hexdigest()
        repo = Repo(repo_id, files, commit, languages)
        self.repos[repo_id] = repo
        return repo

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def gets(self, filename: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.path.endswith("/" + filename)]

    # --- answers --------------------------------------------------------------------------

    def _repo(self, repo_id: str, revision: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None or revision not in ("main", repo.commit):
            return None
        return repo

    def info(self, repo_id: str, revision: str) -> tuple[int, dict[str, str], bytes]:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return 404, {"X-Error-Code": "RepoNotFound"}, b'{"error": "Repository not found"}'
        body = {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": repo.commit,
            "private": False,
            "tags": ["ctranslate2", "audio", "automatic-speech-recognition"],
            "cardData": {"language": repo.languages},
            "siblings": [repo.sibling(name) for name in sorted(repo.files)],
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def file_headers(self, repo: Repo, name: str) -> dict[str, str]:
        data = repo.files[name]
        headers = {
            "X-Repo-Commit": repo.commit,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if repo.is_lfs(name):
            sha = hashlib.sha256(data).hexdigest()
            headers |= {
                "ETag": f'"{sha}"',
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
            }
        else:
            headers["ETag"] = f'"{git_blob_id(data)}"'
        return headers

    # --- the server -----------------------------------------------------------------------

    def start(self) -> HubServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _serve(self) -> None:
                path = self.path.split("?", 1)[0]
                hub.seen.append(Seen(self.command, path, self.headers.get("Range")))
                info = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
                if info and self.command == "GET":
                    self._send(*hub.info(info[1], info[2] or "main"))
                    return
                resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                repo = hub._repo(resolve[1], resolve[2]) if resolve else None
                if resolve is None or repo is None or resolve[3] not in repo.files:
                    self._send(404, {"X-Error-Code": "EntryNotFound"}, b"not found")
                    return
                self._file(repo, resolve[3])

            def _file(self, repo: Repo, name: str) -> None:
                headers = hub.file_headers(repo, name)
                data = repo.files[name]
                if self.command == "HEAD":
                    self.send_response(200)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return
                if name in hub._failing:
                    hub._failing.discard(name)
                    self._send(503, {"Content-Type": "text/plain"}, b"try later")
                    return
                if name in hub.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if wanted:
                    start = int(wanted[1])
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                self.send_response(206 if wanted else 200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in hub.drop_once:
                    hub.drop_once.discard(name)
                    if hub.fail_after_drop:
                        hub._failing.add(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._serve()

            def do_HEAD(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
