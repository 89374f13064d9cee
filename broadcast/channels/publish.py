"""Where the web banner is published: a folder, an S3-compatible bucket, or a folder on a git branch (gh-pages)."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from broadcast.config import Secret, mask

#: a new banner must be readable by the web server, which is rarely the user who sends
NEW_FILE_MODE = 0o644
#: the user name sent with BROADCAST_WEB_GIT_TOKEN: GitHub takes any with a token, and documents this one
GIT_TOKEN_USER = "x-access-token"
#: where a git branch's credentials come from, for the hints
CREDENTIALS = "BROADCAST_WEB_GIT_TOKEN, or user:password in the URL"
#: who the banner's commits are by, on a git branch
GIT_AUTHOR = b"broadcast <broadcast@users.noreply.invalid>"

_HINTS = {
    errno.EACCES: "broadcast may not write there; fix the folder's permissions or choose another with --web-dir",
    errno.EPERM: "broadcast may not write there; fix the folder's permissions or choose another with --web-dir",
    errno.EROFS: "that disk is read-only; choose another folder with --web-dir",
    errno.ENOSPC: "the disk is full; free some space and send again",
    errno.EDQUOT: "the disk quota is used up; free some space and send again",
    errno.ENOTDIR: "part of that path is a file, not a folder; choose another folder with --web-dir",
    errno.EEXIST: "a file with that name is in the way; move it or choose another folder with --web-dir",
}


class PublishError(Exception):
    """A write, delete or push that did not happen; ``reason`` says why and what to do, for the receipt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = mask(reason)


# -- where: parsed from --web-dir / BROADCAST_WEB_DIR -------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """A folder on this machine (the web server's document root, or a runner folder a later step uploads)."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Bucket:
    """``s3://bucket/prefix`` on AWS or any S3-compatible service (endpoint: BROADCAST_WEB_S3_ENDPOINT)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class Branch:
    """``git+URL#branch[:folder]``: a folder on a branch of a git repository, one commit per send."""

    url: str
    branch: str
    folder: str = ""
    #: BROADCAST_WEB_GIT_TOKEN: the password for an https URL that carries none (user x-access-token, as GitHub
    #: Actions' GITHUB_TOKEN wants); compared by nothing, printed as <hidden>
    token: Secret | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return mask(f"git+{self.url}#{self.branch}{':' + self.folder if self.folder else ''}")


Target = Folder | Bucket | Branch

_GIT_SCHEMES = ("git+file", "git+https", "git+http", "git+ssh")
#: a URL as a Path keeps it: one slash after the scheme (two letters or more, so C:/ stays a Windows folder)
_COLLAPSED = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]+):(?:/(?!/)(?P<rest>.*))?$", re.I)


def parse_target(
    value: str | os.PathLike[str], *, s3_endpoint: str | None = None, git_token: Secret | None = None
) -> Target | str:
    """Where ``value`` (the --web-dir form) publishes to, or a sentence saying what is wrong with it."""
    text = os.fspath(value).strip()
    if isinstance(value, os.PathLike):
        # a click.Path option turns s3://b/x into s3:/b/x: a URL never names a folder on this machine, so undo it
        lost = _COLLAPSED.match(text)
        if not lost:
            return Folder(Path(value))
        text = f"{lost['scheme']}://{'/' if lost['scheme'].lower().endswith('file') else ''}{lost['rest'] or ''}"
    shown = mask(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme:
        return Folder(Path(text))
    if scheme == "s3":
        parts = urlsplit(text)
        if not parts.netloc:
            return f"--web-dir {shown!r} names no bucket; write s3://BUCKET or s3://BUCKET/FOLDER"
        if parts.query or parts.fragment:
            return f"--web-dir {shown!r} has a ? or # part, which S3 does not use; write s3://BUCKET/FOLDER"
        return Bucket(parts.netloc, parts.path.strip("/"), s3_endpoint)
    if scheme in _GIT_SCHEMES:
        url, _, fragment = text[len("git+"):].partition("#")
        branch, _, folder = fragment.partition(":")
        branch = unquote(branch).strip()
        if not branch:
            return (f"--web-dir {shown!r} names no branch; add it after #, e.g. {mask(text.split('#')[0])}#gh-pages "
                    "(and :FOLDER for a folder on it)")
        if any(c in branch for c in " ~^?*[\\") or branch.startswith(("-", "/")) or ".." in branch:
            return f"--web-dir {shown!r}: {branch!r} is not a git branch name"
        parts = urlsplit(url)
        if scheme != "git+file" and not parts.hostname:
            return f"--web-dir {shown!r} names no host; write git+https://HOST/OWNER/REPO.git#BRANCH"
        if scheme == "git+file" and not parts.path:
            return f"--web-dir {shown!r} names no repository; write git+file:///PATH/TO/REPO.git#BRANCH"
        folder = posixpath.normpath(folder.strip("/")) if folder.strip("/") else ""
        if folder.startswith(".."):
            return f"--web-dir {shown!r}: the folder {folder!r} leaves the repository"
        return Branch(url, branch, folder, git_token)
    return (f"--web-dir {shown!r} uses {scheme}://, which broadcast cannot publish to; give a folder, "
            "s3://BUCKET/FOLDER or git+https://HOST/REPO.git#BRANCH[:FOLDER]")


# -- how: one publication per send or withdrawal ------------------------------------------------------------


class Publication(ABC):
    """One send's or withdrawal's changes to a target: read, write and delete files by name, then ``finish``.

    A folder and a bucket change each file at once; a branch gathers the changes and ``finish`` commits and pushes
    them as one commit, so on a branch nothing is published until ``finish`` returns.
    """

    @abstractmethod
    def read(self, name: str) -> str | None:
        """The file's text, or None when there is none."""

    @abstractmethod
    def write(self, name: str, text: str) -> None:
        """Replace the file; raises PublishError."""

    @abstractmethod
    def delete(self, name: str) -> bool:
        """Remove the file (True) or find it already gone (False); raises PublishError."""

    @abstractmethod
    def where(self, name: str) -> str:
        """The file's address, for receipts."""

    def finish(self, summary: str) -> None:
        """Make the changes so far public; raises PublishError (none of them is then public, and they are dropped)."""

    def close(self) -> None:
        """Release connections; the publication is not used again."""


def open_publication(target: Target) -> Publication:
    if isinstance(target, Bucket):
        return BucketPublication(target)
    if isinstance(target, Branch):
        return BranchPublication(target)
    return FolderPublication(target)


class FolderPublication(Publication):
    def __init__(self, target: Folder) -> None:
        self.directory = Path(os.path.abspath(target.path))

    def read(self, name: str) -> str | None:
        try:
            return (self.directory / name).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None

    def write(self, name: str, text: str) -> None:
        path = self.directory / name
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
        except OSError as exc:
            raise PublishError(_failure(path, exc)) from None

    def delete(self, name: str) -> bool:
        path = self.directory / name
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            why = exc.strerror or str(exc)
            hint = _HINTS.get(exc.errno or 0, "remove it by hand, or check the folder given with --web-dir")
            raise PublishError(f"could not remove {path}: {why}; {hint}") from None
        _sync_directory(self.directory)
        return True

    def where(self, name: str) -> str:
        return str(self.directory / name)


class BucketPublication(Publication):
    """put/get/delete_object through boto3; credentials the standard AWS way (environment, profile, role)."""

    def __init__(self, target: Bucket) -> None:
        import boto3
        from botocore.config import Config

        from broadcast.config import provider_timeout

        self.target = target
        timeout = provider_timeout()
        config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 3, "mode": "standard"})
        # a session of its own: boto3's default one is shared between threads and keeps the credentials it first found
        self.client = boto3.session.Session().client("s3", endpoint_url=target.endpoint, config=config)

    def key(self, name: str) -> str:
        return f"{self.target.prefix}/{name}" if self.target.prefix else name

    def read(self, name: str) -> str | None:
        try:
            body = self.client.get_object(Bucket=self.target.bucket, Key=self.key(name))["Body"].read()
        except Exception as exc:
            if _s3_code(exc) in ("NoSuchKey", "404"):
                return None
            raise PublishError(self._failure("read", name, exc)) from None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def write(self, name: str, text: str) -> None:
        kind = "application/json" if name.endswith(".json") else "text/html"
        try:
            self.client.put_object(
                Bucket=self.target.bucket, Key=self.key(name), Body=text.encode("utf-8"),
                ContentType=f"{kind}; charset=utf-8",
                # a banner must change on the site within a minute, not when a CDN's day-long default runs out
                CacheControl="max-age=60",
            )
        except Exception as exc:
            raise PublishError(self._failure("write", name, exc)) from None

    def delete(self, name: str) -> bool:
        try:
            self.client.delete_object(Bucket=self.target.bucket, Key=self.key(name))
        except Exception as exc:
            raise PublishError(self._failure("remove", name, exc)) from None
        return True

    def where(self, name: str) -> str:
        return f"s3://{self.target.bucket}/{self.key(name)}"

    def close(self) -> None:
        self.client.close()

    def _failure(self, verb: str, name: str, exc: Exception) -> str:
        from botocore.exceptions import BotoCoreError, NoCredentialsError

        code = _s3_code(exc)
        where = self.where(name)
        if isinstance(exc, NoCredentialsError):
            return (f"could not {verb} {where}: no AWS credentials were found; set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for a live send")
        if code == "NoSuchBucket":
            return (f"could not {verb} {where}: the bucket {self.target.bucket!r} does not exist at "
                    f"{self.target.endpoint or 'AWS'}; create it, or fix the bucket in --web-dir / BROADCAST_WEB_DIR")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (f"could not {verb} {where}: the bucket refused these credentials ({code}); check the AWS "
                    "credentials and that they may write to the bucket")
        if isinstance(exc, BotoCoreError) or code:
            return f"could not {verb} {where}: {exc}; check --web-dir / BROADCAST_WEB_DIR and the S3 endpoint"
        raise exc


def _s3_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class BranchPublication(Publication):
    """A folder on a git branch through dulwich (pure Python: no git program needed on the runner).

    The branch is fetched at the first read or write; ``finish`` makes one commit of every change and pushes it
    only if the branch still points where it was fetched, so a push never overwrites someone else's commit.
    """

    def __init__(self, target: Branch) -> None:
        self.target = target
        self.ref = b"refs/heads/" + target.branch.encode()
        self._repo: Any = None
        self._head: bytes | None = None
        self._files: dict[str, bytes | None] = {}  # name → new content, None for deleted
        self._loaded: dict[str, bytes] = {}

    def _connect(self) -> tuple[Any, str]:
        from dulwich.client import get_transport_and_path

        token = self.target.token
        if token and urlsplit(self.target.url).scheme in ("http", "https") and "@" not in urlsplit(self.target.url).netloc:
            return get_transport_and_path(self.target.url, username=GIT_TOKEN_USER, password=token.reveal())
        return get_transport_and_path(self.target.url)

    def _fetch(self) -> None:
        if self._repo is not None:
            return
        from dulwich.repo import MemoryRepo

        repo = MemoryRepo()

        def wants(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
            return [refs[self.ref]] if self.ref in refs else []

        try:
            client, path = self._connect()
            result = client.fetch(path, repo, determine_wants=wants)
        except Exception as exc:
            raise PublishError(f"could not read the branch {self.target.branch!r} of {self.target}: "
                               f"{_git_why(exc)}; check the repository URL and its credentials ({CREDENTIALS})") from None
        self._repo = repo
        self._head = result.refs.get(self.ref)
        self._loaded = {}
        if self._head is not None:
            self._loaded = _read_tree(repo, repo[self._head].tree, self.target.folder)

    def read(self, name: str) -> str | None:
        self._fetch()
        data = self._files[name] if name in self._files else self._loaded.get(name)
        try:
            return data.decode("utf-8") if data is not None else None
        except UnicodeDecodeError:
            return None

    def write(self, name: str, text: str) -> None:
        self._fetch()
        self._files[name] = text.encode("utf-8")

    def delete(self, name: str) -> bool:
        self._fetch()
        present = (self._files[name] if name in self._files else self._loaded.get(name)) is not None
        self._files[name] = None
        return present

    def where(self, name: str) -> str:
        return f"{self.target}/{name}" if self.target.folder else f"{self.target}:{name}"

    def finish(self, summary: str) -> None:
        if not self._files:
            return
        try:
            self._push(summary)
        except PublishError:
            # the branch is fetched again for the next send: it may have moved, and these changes are dropped
            self._repo = None
            self._files.clear()
            raise

    def _push(self, summary: str) -> None:
        from dulwich.objects import Commit

        repo = self._repo
        parent_tree = repo[self._head].tree if self._head is not None else None
        tree = _change_tree(repo, parent_tree, self.target.folder.split("/") if self.target.folder else [], self._files)
        if parent_tree == tree:
            self._files.clear()
            return
        commit = Commit()
        commit.tree = tree
        commit.parents = [self._head] if self._head is not None else []
        commit.author = commit.committer = GIT_AUTHOR
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = summary.encode("utf-8") + b"\n"
        repo.object_store.add_object(commit)
        expected = self._head
        moved: list[bytes] = []

        def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
            if refs.get(self.ref) != expected:
                moved.append(refs.get(self.ref) or b"")
                return {}
            return {self.ref: commit.id}

        from dulwich.file import FileLocked

        try:
            client, path = self._connect()
            result = client.send_pack(path, update_refs, repo.object_store.generate_pack_data)
        except FileLocked:
            raise PublishError(f"the push to {self.target} was rejected (another push is updating the branch "
                               f"{self.target.branch!r}); nothing was published; send again in a minute") from None
        except Exception as exc:
            raise PublishError(f"the push to {self.target} failed: {_git_why(exc)}; nothing was published; "
                               f"check the repository URL and that its credentials ({CREDENTIALS}) may push to the "
                               "branch") from None
        if moved:
            raise PublishError(f"the branch {self.target.branch!r} of {self.target} changed while broadcast was "
                               "publishing; nothing was published; send again")
        rejected = {ref: why for ref, why in (getattr(result, "ref_status", None) or {}).items() if why}
        if rejected:
            why = "; ".join(str(w) for w in rejected.values())
            raise PublishError(f"the push to {self.target} was rejected ({why}); nothing was published; check "
                               "that these credentials may push to the branch and that it is not protected")
        self._head = commit.id
        for name, data in self._files.items():
            if data is None:
                self._loaded.pop(name, None)
            else:
                self._loaded[name] = data
        self._files.clear()


def _git_why(exc: Exception) -> str:
    return mask(str(exc) or type(exc).__name__)


def _read_tree(repo: Any, tree_id: bytes, folder: str) -> dict[str, bytes]:
    """The files directly in ``folder`` of a tree (banner files never nest)."""
    from dulwich.objects import Blob, Tree

    tree = repo[tree_id]
    for part in [p for p in folder.split("/") if p]:
        try:
            _, sha = tree[part.encode()]
        except KeyError:
            return {}
        tree = repo[sha]
        if not isinstance(tree, Tree):
            return {}
    out = {}
    for entry in tree.items():
        obj = repo[entry.sha]
        if isinstance(obj, Blob):
            out[entry.path.decode("utf-8", "replace")] = obj.data
    return out


def _change_tree(repo: Any, tree_id: bytes | None, folder: list[str], files: dict[str, bytes | None]) -> bytes:
    """A new tree: ``tree_id`` with ``files`` written or removed in ``folder``; unchanged parts are shared."""
    from dulwich.objects import Blob, Tree

    tree = Tree()
    if tree_id is not None:
        for entry in repo[tree_id].items():
            tree.add(entry.path, entry.mode, entry.sha)
    if folder:
        name = folder[0].encode()
        try:
            mode, sha = tree[name]
            child = sha if mode == 0o040000 else None
        except KeyError:
            child = None
        tree.add(name, 0o040000, _change_tree(repo, child, folder[1:], files))
    else:
        for file, data in files.items():
            if data is None:
                if file.encode() in tree:
                    del tree[file.encode()]
            else:
                blob = Blob.from_string(data)
                repo.object_store.add_object(blob)
                tree.add(file.encode(), 0o100644, blob.id)
    repo.object_store.add_object(tree)
    return tree.id


# -- folder writes ------------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new one, never half of either."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable; only POSIX lets a folder be opened and synced."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _failure(path: Path, exc: OSError) -> str:
    why = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0, "check the folder given with --web-dir (or BROADCAST_WEB_DIR)")
    return f"could not write {path}: {why}; {hint}"
