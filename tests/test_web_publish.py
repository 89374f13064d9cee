"""Publishing the web banner somewhere that lasts: an S3 bucket (moto's server on 127.0.0.1) or a git branch."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.channels import live_channel
from broadcast.channels.publish import Branch, Bucket, Folder, parse_target
from broadcast.channels.web import WebChannel
from broadcast.cli import main
from broadcast.config import channel_settings
from broadcast.errors import ConfigError
from broadcast.message import Message, Rendering
from tests.conftest import CONTACTS, STORM

LANGUAGES = ["en", "sw", "sl", "ar"]


def message(lang: str = "en", *, notice_id: str = "storm", html: str | None = None) -> Message:
    rendering = Rendering("web", lang, subject=f"Storm {lang}", html=html or f"<p>storm {lang}</p>")
    return Message(notice_id, "web", "v1", f"web:{lang}", lang, rendering, contact_key=f"web:{lang}")


def cli_send(web_dir: str) -> Any:
    args = ["send", str(STORM), "--contacts", str(CONTACTS), "--channel", "web", "--web-dir", web_dir, "--yes", "--json"]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def adapter(location: str, env: dict[str, str] | None = None) -> WebChannel:
    settings = channel_settings([WebChannel], env=env or {}, web_dir=location)["web"]
    channel = live_channel("web", settings)
    assert isinstance(channel, WebChannel)
    return channel


# -- the forms --web-dir takes ---------------------------------------------------------------------------------


def test_web_dir_forms(tmp_path: Path) -> None:
    assert parse_target("site/banner") == Folder(Path("site/banner"))
    assert parse_target(tmp_path) == Folder(tmp_path)
    assert parse_target("s3://alerts/site/banner", s3_endpoint="http://127.0.0.1:9000") == Bucket(
        "alerts", "site/banner", "http://127.0.0.1:9000"
    )
    assert parse_target("s3://alerts") == Bucket("alerts", "", None)
    assert parse_target("git+https://github.com/org/site.git#gh-pages:alerts") == Branch(
        "https://github.com/org/site.git", "gh-pages", "alerts"
    )
    assert parse_target("git+file:///srv/site.git#gh-pages") == Branch("file:///srv/site.git", "gh-pages", "")
    # what a click.Path option makes of a URL: the double slash is gone
    assert parse_target(Path("s3://alerts/banner")) == Bucket("alerts", "banner", None)
    assert parse_target(Path("git+file:///srv/site.git#gh-pages")) == Branch("file:///srv/site.git", "gh-pages", "")


@pytest.mark.parametrize(
    ("web_dir", "problem"),
    [
        ("s3://", "names no bucket"),
        ("s3:///banner", "names no bucket"),
        ("ftp://example.org/banner", "uses ftp://, which broadcast cannot publish to"),
        ("git+https://github.com/org/site.git", "names no branch"),
        ("git+https://github.com/org/site.git#gh pages", "is not a git branch name"),
        ("git+https:///site.git#gh-pages", "names no host"),
        ("git+file:///srv/site.git#gh-pages:../../etc", "leaves the repository"),
    ],
)
def test_a_web_dir_broadcast_cannot_publish_to_is_listed_before_anything_is_sent(web_dir: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        channel_settings([WebChannel], env={}, web_dir=web_dir)
    assert problem in caught.value.message and "web: --web-dir" in caught.value.message


@pytest.mark.parametrize("web_dir", ["ftp://example.org/banner", "s3://", "git+file:///srv/site.git"])
def test_cli_refuses_a_web_dir_it_cannot_publish_to_and_writes_nothing(web_dir: str, tmp_path: Path) -> None:
    result = cli_send(web_dir)
    assert result.exit_code == 2, result.output
    assert "web: --web-dir" in result.output and "Nothing was sent" in result.output
    assert not list(tmp_path.glob("**/banner*")) and not list(tmp_path.glob("*:"))


def test_a_bad_s3_endpoint_is_listed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        channel_settings([WebChannel], env={"BROADCAST_WEB_S3_ENDPOINT": "127.0.0.1:9000"}, web_dir="s3://alerts")
    assert "BROADCAST_WEB_S3_ENDPOINT='127.0.0.1:9000' is not a full URL" in caught.value.message


def test_the_s3_endpoint_comes_from_broadcast_or_the_standard_aws_variable() -> None:
    ours = {"BROADCAST_WEB_S3_ENDPOINT": "http://127.0.0.1:9000", "AWS_ENDPOINT_URL": "http://127.0.0.1:9999"}
    assert channel_settings([WebChannel], env=ours, web_dir="s3://alerts")["web"].s3_endpoint == "http://127.0.0.1:9000"
    aws = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9999"}
    assert channel_settings([WebChannel], env=aws, web_dir="s3://alerts")["web"].s3_endpoint == "http://127.0.0.1:9999"
    # a folder has no endpoint, and a bad one set for other tools is not its problem
    folder = channel_settings([WebChannel], env={"BROADCAST_WEB_S3_ENDPOINT": "nonsense"}, web_dir="site")["web"]
    assert folder.s3_endpoint is None


def test_a_git_password_is_never_shown(tmp_path: Path) -> None:
    web_dir = "git+https://bot:s3cr3t-t0ken@127.0.0.1:9/site.git"
    with pytest.raises(ConfigError) as caught:
        channel_settings([WebChannel], env={}, web_dir=web_dir)
    assert "s3cr3t" not in caught.value.message and "<hidden>@127.0.0.1" in caught.value.message
    # nothing listens on port 9 of this machine: the failed receipt names the place, not the password
    [receipt] = adapter(web_dir + "#gh-pages").send([message()])
    assert receipt.status == "failed" and "s3cr3t" not in receipt.reason
    assert receipt.reason.startswith("could not read the branch 'gh-pages' of git+https://<hidden>@127.0.0.1:9/site.git")


# -- S3 ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A client of the local S3 server, with credentials the standard AWS way (the environment)."""
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true", "BROADCAST_WEB_S3_ENDPOINT": moto_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    name = f"alerts-{tmp_path.name.lower().replace('_', '-')}"[:60].rstrip("-")
    client.create_bucket(Bucket=name)
    client.bucket = name
    return client


def objects(s3: Any, prefix: str = "") -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=s3.bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_cli_publishes_the_banner_to_a_bucket(s3: Any) -> None:
    result = cli_send(f"s3://{s3.bucket}/site/alerts")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["channels"]["web"]
    assert summary["sent"] == 4 and summary["failed"] == 0
    stored = objects(s3)
    assert sorted(stored) == sorted([f"site/alerts/banner.{lang}.html" for lang in LANGUAGES] + ["site/alerts/banner.json"])
    assert stored["site/alerts/banner.ar.html"].decode().startswith('<div class="broadcast-banner')
    index = json.loads(stored["site/alerts/banner.json"])
    assert list(index["languages"]) == LANGUAGES and index["status"] == "active"
    head = s3.head_object(Bucket=s3.bucket, Key="site/alerts/banner.en.html")
    assert head["ContentType"] == "text/html; charset=utf-8" and head["CacheControl"] == "max-age=60"


def test_withdraw_removes_the_banner_from_the_bucket(s3: Any) -> None:
    channel = adapter(f"s3://{s3.bucket}/banner", dict(os.environ))
    receipts = channel.send([message("en"), message("sw")])
    assert [r.provider_id for r in receipts] == [f"s3://{s3.bucket}/banner/banner.en.html", f"s3://{s3.bucket}/banner/banner.sw.html"]
    receipts = channel.withdraw([message("en"), message("sw")], "cancelled")
    assert [r.status for r in receipts] == ["sent", "sent"]
    stored = objects(s3)
    assert sorted(stored) == ["banner/banner.json"]
    index = json.loads(stored["banner/banner.json"])
    assert index["status"] == "cancelled" and index["languages"]["en"]["status"] == "cancelled"


def test_a_missing_bucket_fails_every_banner_and_the_run(s3: Any) -> None:
    result = cli_send("s3://no-such-bucket-here/banner")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)["channels"]["web"]
    assert summary["sent"] == 0 and summary["failed"] == 4
    [receipt] = adapter("s3://no-such-bucket-here", dict(os.environ)).send([message()])
    assert receipt.status == "failed" and receipt.reason == (
        "could not write s3://no-such-bucket-here/banner.en.html: the bucket 'no-such-bucket-here' does not exist at "
        f"{s3.meta.endpoint_url}; create it, or fix the bucket in --web-dir / BROADCAST_WEB_DIR"
    )
    assert "testing-secret" not in result.output


def test_no_credentials_is_a_failed_receipt_saying_which_to_set(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    [receipt] = adapter(f"s3://{s3.bucket}", dict(os.environ)).send([message()])
    assert receipt.status == "failed" and "no AWS credentials were found; set AWS_ACCESS_KEY_ID" in receipt.reason
    assert objects(s3) == {}


# -- a git branch -----------------------------------------------------------------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    repo = tmp_path / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    return repo


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True).stdout


def test_cli_commits_the_banner_to_a_branch_once_per_send(bare: Path) -> None:
    web_dir = f"git+file://{bare}#gh-pages:alerts"
    result = cli_send(web_dir)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["channels"]["web"]["sent"] == 4
    files = git(bare, "ls-tree", "-r", "--name-only", "gh-pages").split()
    assert files == sorted(f"alerts/{name}" for name in [*(f"banner.{lang}.html" for lang in LANGUAGES), "banner.json"])
    assert git(bare, "show", "gh-pages:alerts/banner.sl.html").startswith('<div class="broadcast-banner')
    # one commit per send call: send.py hands a public channel each language in a call of its own
    commits = sorted(git(bare, "log", "--format=%s", "gh-pages").splitlines())
    assert commits == sorted(f"storm-outage-2026-04: banner ({lang})" for lang in LANGUAGES)
    # the ledger has it: a second run sends nothing and commits nothing
    result = cli_send(web_dir)
    assert json.loads(result.stdout)["channels"]["web"]["sent"] == 0
    assert len(git(bare, "rev-list", "gh-pages").split()) == 4


def test_each_send_and_withdrawal_is_one_commit_on_top_of_the_site(bare: Path, tmp_path: Path) -> None:
    # a gh-pages branch that already holds the site: broadcast adds to it and keeps the rest
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "gh-pages", str(work)], check=True)
    (work / "index.html").write_text("<h1>Pwani Power</h1>\n", encoding="utf-8")
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=site", "-c", "user.email=site@example.org", "commit", "-qm", "site"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "gh-pages"], check=True)
    channel = adapter(f"git+file://{bare}#gh-pages")
    receipts = channel.send([message("en"), message("sw")])
    assert [r.status for r in receipts] == ["sent", "sent"]
    assert receipts[0].provider_id == f"git+file://{bare}#gh-pages:banner.en.html"
    channel.send([message("en", html="<p>storm en, later</p>")])
    channel.withdraw([message("en"), message("sw")], "expired")
    log = git(bare, "log", "--format=%s", "gh-pages").splitlines()
    assert log == ["storm: banner expired (en, sw)", "storm: banner (en)", "storm: banner (en, sw)", "site"]
    assert git(bare, "ls-tree", "--name-only", "gh-pages").split() == ["banner.json", "index.html"]
    index = json.loads(git(bare, "show", "gh-pages:banner.json"))
    assert index["status"] == "expired" and {e["status"] for e in index["languages"].values()} == {"expired"}
    assert git(bare, "show", "gh-pages~1:banner.en.html") == "<p>storm en, later</p>\n"


def test_a_branch_someone_else_moved_is_never_overwritten(bare: Path, tmp_path: Path) -> None:
    channel = adapter(f"git+file://{bare}#gh-pages")
    channel.send([message("en")])
    # a site deploy lands between two sends of the same run
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", "-b", "gh-pages", str(bare), str(work)], check=True)
    (work / "index.html").write_text("<h1>site</h1>\n", encoding="utf-8")
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=site", "-c", "user.email=site@example.org", "commit", "-qm", "deploy"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "gh-pages"], check=True)
    [receipt] = channel.send([message("sw")])
    assert receipt.status == "failed" and receipt.reason == (
        f"the branch 'gh-pages' of git+file://{bare}#gh-pages changed while broadcast was publishing; nothing was "
        "published; send again"
    )
    assert git(bare, "log", "--format=%s", "gh-pages").splitlines() == ["deploy", "storm: banner (en)"]
    # sent again, it builds on the deploy and keeps it
    [receipt] = channel.send([message("sw")])
    assert receipt.status == "sent"
    assert git(bare, "log", "--format=%s", "gh-pages").splitlines() == ["storm: banner (sw)", "deploy", "storm: banner (en)"]
    files = git(bare, "ls-tree", "--name-only", "gh-pages").split()
    assert files == ["banner.en.html", "banner.json", "banner.sw.html", "index.html"]
    assert list(json.loads(git(bare, "show", "gh-pages:banner.json"))["languages"]) == ["en", "sw"]


def test_a_rejected_push_fails_every_banner_and_the_run(bare: Path) -> None:
    web_dir = f"git+file://{bare}#gh-pages"
    adapter(web_dir).send([message("en")])
    head = git(bare, "rev-parse", "gh-pages").strip()
    # another push holds the branch: git's lock file makes the repository refuse to move it
    lock = bare / "refs" / "heads" / "gh-pages.lock"
    lock.write_text(head + "\n", encoding="utf-8")
    [receipt] = adapter(web_dir).send([message("en", html="<p>new</p>")])
    assert receipt.status == "failed" and receipt.provider_id is None
    assert receipt.reason == (f"the push to git+file://{bare}#gh-pages was rejected (another push is updating the "
                              "branch 'gh-pages'); nothing was published; send again in a minute")
    result = cli_send(web_dir)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)["channels"]["web"]
    assert summary["sent"] == 0 and summary["failed"] == 4
    assert git(bare, "rev-parse", "gh-pages").strip() == head


def test_a_repository_that_is_not_there_is_a_failed_receipt(tmp_path: Path) -> None:
    [receipt] = adapter(f"git+file://{tmp_path / 'missing.git'}#gh-pages").send([message()])
    assert receipt.status == "failed"
    assert receipt.reason.startswith(f"could not read the branch 'gh-pages' of git+file://{tmp_path / 'missing.git'}#gh-pages: ")
    assert receipt.reason.endswith(
        "check the repository URL and its credentials (BROADCAST_WEB_GIT_TOKEN, or user:password in the URL)"
    )


@contextmanager
def served(bare: Path, *, refuse: str = "", token: str = "") -> Iterator[str]:
    """The bare repository over smart HTTP on 127.0.0.1: an update hook refusing pushes with ``refuse``, and
    HTTP basic auth wanting ``token`` as the password, when given."""
    import base64
    from wsgiref.simple_server import make_server

    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_wsgi_chain

    if refuse:
        hook = bare / "hooks" / "update"
        hook.write_text(f"#!/bin/sh\necho '{refuse}' >&2\nexit 1\n", encoding="utf-8")
        hook.chmod(0o755)
    repo = Repo(str(bare))
    git_app = make_wsgi_chain(DictBackend({"/": repo}))
    wanted = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if token and environ.get("HTTP_AUTHORIZATION") != wanted:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Length", "0")])
            return [b""]
        return git_app(environ, start_response)

    server = make_server("127.0.0.1", 0, app, handler_class=WSGIRequestHandlerLogger, server_class=WSGIServerLogger)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        repo.close()


@pytest.fixture
def protected(bare: Path) -> Iterator[str]:
    with served(bare, refuse="gh-pages is protected") as url:
        yield f"git+{url.replace('http://', 'http://bot:s3cr3t-t0ken@')}#gh-pages"


def test_a_git_token_from_the_environment_is_the_password(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "ghs_0123456789abcdefTOKEN"
    with served(bare, token=token) as url:
        # without the token the server asks for one: a failed receipt that says where
        [receipt] = adapter(f"git+{url}#gh-pages:alerts").send([message()])
        assert receipt.status == "failed"
        assert receipt.reason.startswith(f"could not read the branch 'gh-pages' of git+{url}#gh-pages:alerts: ")
        monkeypatch.setenv("BROADCAST_WEB_DIR", f"git+{url}#gh-pages:alerts")
        monkeypatch.setenv("BROADCAST_WEB_GIT_TOKEN", token)
        result = CliRunner().invoke(main, ["send", str(STORM), "--contacts", str(CONTACTS), "--channel", "web", "--yes"])
        assert result.exit_code == 0, result.output
        assert "web     planned 4, sent 4" in result.output and token not in result.output
    assert git(bare, "show", "gh-pages:alerts/banner.json").startswith("{")


def test_a_push_the_server_refuses_fails_with_its_words_and_no_password(protected: str, bare: Path) -> None:
    [receipt] = adapter(protected).send([message()])
    shown = protected.replace("bot:s3cr3t-t0ken", "<hidden>")
    assert receipt.status == "failed" and receipt.reason == (
        f"the push to {shown} was rejected (update hook exited with status 1: gh-pages is protected); nothing was "
        "published; check that these credentials may push to the branch and that it is not protected"
    )
    assert git(bare, "for-each-ref") == ""
