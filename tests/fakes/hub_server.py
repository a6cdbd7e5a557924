"""A local stand-in for the Hugging Face Hub API, enough for the real `huggingface_hub` client to create a dataset
repo, list its files and commit to it (adding and deleting files): it records every call and keeps the committed files in memory.

It answers "regular" to preupload, so files travel inline in the commit (no LFS or Xet storage to fake).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


@dataclass
class FakeHub:
    token: str = "hf_test_token_123"
    user: str = "alice"
    orgs: tuple[str, ...] = ("acme",)
    calls: list[tuple[str, str]] = field(default_factory=list)
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    validated: list[dict] = field(default_factory=list)

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._route(self, "GET")

            def do_POST(self):
                hub._route(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self.server.shutdown()

    def _route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = urlparse(h.path).path
        self.calls.append((method, path))
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if h.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, {"error": "Invalid credentials"})
        if path == "/api/whoami-v2":
            return self._send(h, 200, {"type": "user", "name": self.user, "orgs": [{"name": o} for o in self.orgs],
                                       "auth": {"accessToken": {"role": "write"}}})
        if path == "/api/validate-yaml":
            return self._validate_yaml(h, json.loads(body)["content"])
        if path == "/api/repos/create":
            spec = json.loads(body)
            repo = f"{spec.get('organization') or self.user}/{spec['name']}"
            if repo in self.repos:
                return self._send(h, 409, {"error": "You already created this dataset repo", "url": repo})
            self.repos[repo] = {}
            return self._send(h, 200, {"url": f"{self.url}/datasets/{repo}", "name": repo})
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(tree|preupload|commit)/main(/.*)?", path)
        if not m or m.group(1) not in self.repos:
            return self._send(h, 404, {"error": "Repository not found"})
        repo, action = m.group(1), m.group(2)
        if action == "tree":
            return self._send(h, 200, [{"type": "file", "path": p, "size": len(b), "oid": _blob_sha1(b)}
                                       for p, b in sorted(self.repos[repo].items())])
        if action == "preupload":
            files = json.loads(body)["files"]
            return self._send(h, 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in files]})
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.repos[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                if item["value"]["path"] not in self.repos[repo]:
                    return self._send(h, 404, {"error": f"{item['value']['path']} does not exist"})
                del self.repos[repo][item["value"]["path"]]
        oid = hashlib.sha1(body).hexdigest()
        return self._send(h, 200, {"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid,
                                   "pullRequestUrl": None})

    def _validate_yaml(self, h: BaseHTTPRequestHandler, content: str) -> None:
        """The Hub checks a README's front matter before committing it; here: it parses, and configs are sane."""
        import yaml

        try:
            meta = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else {}
        except yaml.YAMLError as e:
            return self._send(h, 400, {"errors": [{"message": f"invalid YAML: {e}"}]})
        bad = [c for c in meta.get("configs", []) if "config_name" not in c or "data_files" not in c]
        if bad:
            return self._send(h, 400, {"errors": [{"message": "configs need config_name and data_files"}]})
        self.validated.append(meta)
        return self._send(h, 200, {"errors": [], "warnings": []})

    def _send(self, h: BaseHTTPRequestHandler, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def _blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
