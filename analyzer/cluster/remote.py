"""An output directory that is an fsspec URL (``s3://bucket/path``, ``gs://``, ``abfs://``...).

Object stores have no rename, so the task protocol changes shape, not meaning: a task works in
a private local directory on its worker, uploads it to ``URL/.parts/<key>/<attempt>/`` and
returns its meta naming the attempt; the client downloads exactly the attempts whose results
it received (a retried task's other attempts are never read), reduces locally into a private
staging directory, uploads the final tables to ``URL/`` and removes ``URL/.parts/``.
Credentials and endpoints come from fsspec's usual places (``AWS_*`` variables, ``~/.aws``,
``AWS_ENDPOINT_URL`` for an S3-compatible store); the filesystem package (``s3fs``, ``gcsfs``,
``adlfs``) must be installed on the client and the workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from analyzer.errors import ConfigError, OutputError


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path inside it."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise ConfigError(f"{url}: an output URL needs fsspec (the cluster extra)") from None
    del fsspec
    try:
        fs, path = url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{url}: cannot use this URL: {exc}") from None
    return fs, str(path)


def upload(local: Path, url: str) -> None:
    """Every file under ``local`` to ``url`` (the same relative paths)."""
    fs, root = filesystem(url)
    try:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.put_file(str(path), f"{root}/{path.relative_to(local).as_posix()}")
    except OSError as exc:
        raise OutputError(f"{url}: cannot write: {exc}") from None


def download(url: str, local: Path) -> None:
    fs, root = filesystem(url)
    local.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        for remote in fs.find(root):
            rel = remote[len(root.rstrip("/")) + 1 :]
            target = local / rel
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fs.get_file(remote, str(target))
            os.chmod(target, 0o600)
    except OSError as exc:
        raise OutputError(f"{url}: cannot read: {exc}") from None


def remove(url: str) -> None:
    fs, root = filesystem(url)
    try:
        if fs.exists(root):
            fs.rm(root, recursive=True)
    except OSError:
        pass


def touch(url: str) -> None:
    fs, root = filesystem(url)
    fs.pipe_file(root, b"")


def count(url: str) -> int:
    fs, root = filesystem(url)
    try:
        return len(fs.ls(root, detail=False))
    except FileNotFoundError:
        return 0
