"""Hugging Face Hub upload: checks before anything leaves the machine, a staging folder laid out as the card's
`configs` name it, and commits of bounded size that a rerun skips once they are on the Hub (resume)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..core.errors import FactoryError


def token() -> str:
    """HF_TOKEN or the saved login; never printed, logged or written."""
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise FactoryError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was uploaded)")
    return found


def check_repo_id(repo: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo.count("/") != 1:
        raise FactoryError(f"--repo {repo!r}: expected ORG/NAME (e.g. my-org/r1-math-traces)")
    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        raise FactoryError(f"--repo {repo!r}: not a valid repo id ({e})") from None


# The Hub client's transport raises its own library's errors (requests, httpx or httpx2, by huggingface_hub
# version), none of which we import: a network failure is known by its class's name.
_NETWORK = {"TransportError", "RequestException", "RequestError", "ConnectionError", "OSError", "TimeoutError"}


def unreachable(e: BaseException) -> bool:
    """The Hub did not answer (no route, refused, timed out, offline mode), as opposed to answering no."""
    return any(c.__name__ in _NETWORK for c in type(e).__mro__)


def check_owner(api, repo: str) -> str:
    """The repo's namespace must be the token's user or one of its organisations."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        who = api.whoami()
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", "?")
        raise FactoryError(f"the Hub refused the token (HTTP {status}): log in again or set HF_TOKEN") from None
    except Exception as e:
        if not unreachable(e):
            raise
        raise FactoryError(f"{api.endpoint}: cannot reach the Hub ({type(e).__name__}); nothing was uploaded "
                           "(--dry-run stages the upload offline)") from None
    names = [who["name"], *(o["name"] for o in who.get("orgs", []))]
    namespace = repo.split("/")[0]
    if namespace not in names:
        raise FactoryError(f"--repo {repo}: '{namespace}' is neither your account ({who['name']}) nor one of your "
                           f"organisations ({', '.join(names[1:]) or 'none'}); nothing was uploaded")
    return who["name"]


def stage_shards(src: Path, dst: Path, max_bytes: int) -> list[Path]:
    """Copies (hard-links where possible) a shard directory into dst as train-XXXXX-of-YYYYY.parquet, splitting any
    shard over max_bytes at row-group boundaries (the Hub's viewer and git-LFS both prefer files under 500 MB)."""
    from ..storage.shards import read_manifest

    dst.mkdir(parents=True, exist_ok=True)
    pieces: list[Path] = []
    for entry in read_manifest(src)["files"]:
        path = src / entry["file"]
        if path.stat().st_size <= max_bytes:
            pieces.append(_link(path, dst / f"piece-{len(pieces):05d}.parquet"))
        else:
            pieces += _split(path, dst, max_bytes, len(pieces))
    out = []
    for i, piece in enumerate(pieces):
        final = dst / f"train-{i:05d}-of-{len(pieces):05d}.parquet"
        piece.rename(final)
        out.append(final)
    return out


def _link(src: Path, dst: Path) -> Path:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _split(path: Path, dst: Path, max_bytes: int, start: int) -> list[Path]:
    pf = pq.ParquetFile(path)
    groups: list[list[int]] = [[]]
    size = 0
    for g in range(pf.num_row_groups):
        g_bytes = pf.metadata.row_group(g).total_byte_size
        if groups[-1] and size + g_bytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(g)
        size += g_bytes
    out = []
    for k, group in enumerate(groups):
        piece = dst / f"piece-{start + k:05d}.parquet"
        pq.write_table(pf.read_row_groups(group), piece, compression="zstd")
        out.append(piece)
    return out


def _digest(h, path: Path) -> str:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(path: Path) -> str:
    return _digest(hashlib.sha1(f"blob {path.stat().st_size}\0".encode()), path)


def sha256(path: Path) -> str:
    return _digest(hashlib.sha256(), path)


def _already_there(local: Path, remote) -> bool:
    if remote is None or remote.size != local.stat().st_size:
        return False
    lfs = getattr(remote, "lfs", None)
    return lfs.sha256 == sha256(local) if lfs else remote.blob_id == git_blob_sha1(local)


STAGING_MARK = ".factory-push-staging"  # in every staging folder factory made: the only kind it ever removes
MANAGED = ("data/", "assets/")  # the Hub folders a push owns: afterwards they hold exactly the run's files


def remote_files(api, repo: str) -> dict[str, Any]:
    """The repo's files by path ({} for a repo not created yet)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        tree = api.list_repo_tree(repo, repo_type="dataset", recursive=True)
        return {f.path: f for f in tree if getattr(f, "blob_id", None) is not None}
    except RepositoryNotFoundError:
        return {}


def stale(remote: dict[str, Any], staging: Path) -> list[str]:
    """Files in the managed folders that this push does not hold (shards of an earlier filter, say): a push
    deletes them, or the Hub dataset would serve their rows twice. Files outside those folders are the user's."""
    staged = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()}
    return sorted(path for path in remote if path.startswith(MANAGED) and path not in staged)


def upload(api, repo: str, staging: Path, private: bool, commit_bytes: int) -> dict[str, Any]:
    """Creates the repo if missing, then commits the staging folder in batches, data first; the last commit
    carries the card and deletes the stale files, so the card's configs and the data files change together.
    Files already on the Hub are skipped (a rerun resumes)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    remote = remote_files(api, repo)
    files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != STAGING_MARK)
    files.sort(key=lambda p: p.name == "README.md" or "assets" in p.parts)
    todo = [p for p in files if not _already_there(p, remote.get(p.relative_to(staging).as_posix()))]
    batches: list[list[Path]] = [[]]
    size = 0
    for p in todo:
        if batches[-1] and (size + p.stat().st_size > commit_bytes or p.name == "README.md"):
            batches.append([])
            size = 0
        batches[-1].append(p)
        size += p.stat().st_size
    batches = [b for b in batches if b] or [[]]
    deleted = stale(remote, staging)
    commits = 0
    for i, batch in enumerate(batches):
        ops: list[Any] = [CommitOperationAdd(p.relative_to(staging).as_posix(), str(p)) for p in batch]
        if i == len(batches) - 1:
            ops += [CommitOperationDelete(path) for path in deleted]
        if ops:
            api.create_commit(repo, ops, repo_type="dataset",
                              commit_message=f"factory push: {len(batch)} files, {len(ops) - len(batch)} removed")
            commits += 1
    return {"url": str(url), "files": len(files), "uploaded": len(todo), "skipped": len(files) - len(todo),
            "deleted": deleted, "commits": commits}
