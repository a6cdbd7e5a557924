"""A stand-in of OpenAI's Batch API on the fake server: files (upload, content), batches (create, retrieve, list,
cancel), output and error files in OpenAI's line format. Each batch answers its lines with the fake server's own
chat answers (so pass rates and replies work as for live requests).

Scripted per batch, in creation order (`plans`): "ok" (done at the first look), "hold" (in progress until
`release()`), "expire:K" (expired after answering its first K lines), "fail_lines:NEEDLE" (lines whose prompt has
NEEDLE go to the error file with a server_error), "failed" (the whole batch fails validation), "vanish" (created,
then unknown: 404 at every look). `forget()` drops every batch and file, as a restarted server or another account
would. Every route checks the key, as the provider does.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.openai_server import FakeOpenAI


@dataclass
class FakeBatchAPI(FakeOpenAI):
    plans: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    answered: int = 0  # chat lines answered by batches, over all of them
    held: bool = True

    def _routes(self, app: web.Application) -> None:
        app.middlewares.append(self._auth)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{id}", self._retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel)

    def release(self) -> None:
        self.held = False

    def forget(self) -> None:
        self.batches.clear()
        self.files.clear()

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if request.path.startswith(("/v1/files", "/v1/batches")) and not self._authorised(request):
            return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)
        return await handler(request)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        self.files[file_id] = upload.file.read()
        return web.json_response({"id": file_id, "object": "file", "bytes": len(self.files[file_id]),
                                  "created_at": int(time.time()), "filename": upload.filename,
                                  "purpose": form.get("purpose", "batch"), "status": "processed"})

    async def _content(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["id"])
        if data is None:
            return web.json_response({"error": {"message": "No such File object"}}, status=404)
        return web.Response(body=data, content_type="application/jsonl")

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["input_file_id"] not in self.files:
            return web.json_response({"error": {"message": "input file not found"}}, status=400)
        plan = self.plans[len(self.batches)] if len(self.batches) < len(self.plans) else "ok"
        batch = {"id": f"batch_{uuid.uuid4().hex[:12]}", "object": "batch", "endpoint": body["endpoint"],
                 "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                 "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                 "error_file_id": None, "errors": None, "metadata": body.get("metadata"),
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}, "_plan": plan}
        self.batches[batch["id"]] = batch
        return web.json_response(_public(batch))

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [_public(b) for b in self.batches.values()],
                                  "has_more": False})

    async def _retrieve(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch["_plan"] == "vanish":
            return web.json_response({"error": {"message": "No such batch"}}, status=404)
        if batch["status"] in ("validating", "in_progress"):
            if batch["_plan"] == "hold" and self.held:
                batch["status"] = "in_progress"
            else:
                self._run(batch)
        return web.json_response(_public(batch))

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self.batches[request.match_info["id"]]
        batch["status"] = "cancelled"
        return web.json_response(_public(batch))

    def _run(self, batch: dict) -> None:
        plan, _, arg = batch["_plan"].partition(":")
        if plan == "failed":
            batch.update(status="failed", errors={"object": "list", "data": [{"code": "invalid_request",
                                                                              "message": "bad input"}]})
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines() if x.strip()]
        out, err = [], []
        for i, line in enumerate(lines):
            if plan == "expire" and i >= int(arg):
                break
            content = line["body"]["messages"][-1]["content"]
            if plan == "fail_lines" and arg in content:
                err.append({"id": f"req_{i}", "custom_id": line["custom_id"], "response": None,
                            "error": {"code": "server_error", "message": "injected"}})
                continue
            self.answered += 1
            out.append({"id": f"req_{i}", "custom_id": line["custom_id"], "error": None,
                        "response": {"status_code": 200, "request_id": f"r{i}",
                                     "body": self._completion(line["body"], content, 1)}})
        batch["status"] = "expired" if plan == "expire" else "completed"
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                file_id = f"file-{uuid.uuid4().hex[:12]}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[key] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}
