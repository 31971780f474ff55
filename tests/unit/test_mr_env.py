"""Environments per merge request without the engine: the names, the TTL, the expiry decision, the config derived
from a template, the refusals, and create → re-create → destroy → sweep against a scripted engine."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dockyard.cli import app
from dockyard.model.config import ConfigError, MergeRequestConfig, parse_environment, plaintext_keys, written_keys
from dockyard.model.merge_requests import (
    derived_document,
    expired,
    parse_mr,
    parse_stack_name,
    parse_ttl,
    stack_name,
)
from dockyard.model.stack import StackView
from dockyard.releases.engine import Engine, OnOutput
from dockyard.releases.errors import DockyardError, RefusedError
from dockyard.releases.mr_env import MergeRequestEnvironments
from dockyard.releases.project import Project
from tests.stacks import PROJECT
from tests.unit.fake_stack import FakeStack, command_error

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
LOCAL_IMAGE = "127.0.0.1:5443/dockyard/app@sha256:" + "c" * 64
NEXT_IMAGE = "127.0.0.1:5443/dockyard/app@sha256:" + "d" * 64
DEV_IMAGE = "ghcr.io/acme/dockyard-app@sha256:" + "e" * 64


# --- pure -----------------------------------------------------------------------------------------------------


def test_the_stack_name_carries_the_template_and_the_number() -> None:
    assert stack_name("dev", 42) == "dev-mr-42"
    assert parse_stack_name("local-staging-mr-7") == ("local-staging", 7)
    for other in ("local-staging", "dev-mr-0", "dev-mr-x", "-mr-3"):
        assert parse_stack_name(other) is None


@pytest.mark.parametrize(
    ("text", "ttl"), [("72h", timedelta(hours=72)), ("90m", timedelta(minutes=90)), ("30d", timedelta(days=30))]
)
def test_a_ttl_is_a_positive_duration_of_at_most_30_days(text: str, ttl: timedelta) -> None:
    assert parse_ttl(text) == ttl


@pytest.mark.parametrize("text", ["0h", "72", "3x", "31d", "5w", "-1h"])
def test_a_bad_ttl_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ValueError, match="--ttl"):
        parse_ttl(text)


@pytest.mark.parametrize("text", ["0", "abc", "-3", "4.2", ""])
def test_a_merge_request_is_a_positive_number(text: str) -> None:
    with pytest.raises(ValueError, match="--mr"):
        parse_mr(text)
    assert parse_mr("42") == 42


def test_an_environment_expires_once_its_time_has_come() -> None:
    record = MergeRequestConfig(id=1, template="dev", expires=NOW)
    assert not expired(record, NOW - timedelta(seconds=1))
    assert expired(record, NOW)
    assert expired(record, NOW + timedelta(days=1))


def _document(stack: str) -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT / f"Pulumi.{stack}.yaml").read_text()))


def test_the_derived_config_has_its_own_namespace_host_and_digest_and_nothing_of_github_or_promotion() -> None:
    view = StackView.read(PROJECT, "dev")
    document = derived_document("dev", view.document, view.env, mr=42, image=DEV_IMAGE, expires=NOW)
    env = parse_environment("dev-mr-42", plaintext_keys(document))
    assert env.tier == view.env.tier
    assert env.kubernetes.namespace == "dockyard-app-dev-mr-42"
    assert env.image.ref == DEV_IMAGE
    assert env.image.build is None
    assert env.kubernetes.ingress is not None
    assert env.kubernetes.ingress.host == "mr-42-dev.dockyard.example.com"
    assert not env.github.enabled
    assert env.promotion.upstream is None
    assert env.merge_request == MergeRequestConfig(id=42, template="dev", expires=NOW)
    assert env.registry == view.env.registry
    assert env.kubernetes.resources == view.env.kubernetes.resources
    # Other namespaces' keys stay (github:owner), and the template's file is untouched.
    assert document["config"]["github:owner"] == "acme"
    assert "dockyard:mergeRequest" not in view.document["config"]


def test_the_derived_config_keeps_the_secrets_as_ciphertext_with_the_templates_salt() -> None:
    view = StackView.read(PROJECT, "local")
    document = derived_document("local", view.document, view.env, mr=7, image=LOCAL_IMAGE, expires=NOW)
    assert document["encryptionsalt"] == view.document["encryptionsalt"]
    assert document["config"]["dockyard:appSecrets"] == view.document["config"]["dockyard:appSecrets"]
    env = parse_environment("local-mr-7", plaintext_keys(document))
    # The trust policy holds for the merge request's digest too.
    assert env.signing == view.env.signing


def test_a_canary_or_blue_green_template_gives_a_rolling_environment() -> None:
    view = StackView.read(PROJECT, "local-staging")
    document = derived_document("local-staging", view.document, view.env, mr=3, image=LOCAL_IMAGE, expires=NOW)
    assert written_keys(document)["kubernetes"]["strategy"] == {"type": "rolling"}


@pytest.mark.parametrize("stack", ["local-staging", "local-prod", "prod"])
def test_the_config_refuses_a_merge_request_environment_above_qa(stack: str) -> None:
    keys = {
        **plaintext_keys(_document(stack)),
        "mergeRequest": {"id": 1, "template": stack, "expires": "2026-12-08T00:00:00Z"},
    }
    with pytest.raises(ConfigError, match="mergeRequest: set in tier"):
        parse_environment(f"{stack}-mr-1", keys)


def test_the_config_refuses_github_in_a_merge_request_environment() -> None:
    keys = {
        **plaintext_keys(_document("dev")),
        "mergeRequest": {"id": 1, "template": "dev", "expires": "2026-12-08T00:00:00Z"},
    }
    with pytest.raises(ConfigError, match=r"github\.enabled: true in a merge request.s environment; allowed: false"):
        parse_environment("dev-mr-1", keys)


def test_the_config_refuses_an_expiry_without_a_zone() -> None:
    keys = {
        **plaintext_keys(_document("local")),
        "mergeRequest": {"id": 1, "template": "local", "expires": "2026-12-08T00:00:00"},
    }
    with pytest.raises(ConfigError, match=r"mergeRequest\.expires: a time without a zone"):
        parse_environment("local-mr-1", keys)


# --- moves against a scripted engine --------------------------------------------------------------------------


@dataclass
class EnvStack(FakeStack):
    """A stack of the scripted engine: its update records the config it ran with, as the backend's history does."""

    engine: FakeEngine | None = None
    name: str = ""

    def destroy(self, *, message: str | None = None, on_output: OnOutput | None = None) -> None:
        assert self.engine is not None
        # The engine reads the secrets provider from the stack file: it must be there, with the template's salt.
        salt = yaml.safe_load(self.config_file.read_text()).get("encryptionsalt")
        self.engine.log.append(("destroy", self.name, str(salt)))

    def remove(self) -> None:
        assert self.engine is not None
        del self.engine.stacks[self.name]
        self.config_file.unlink()  # as pulumi stack rm does
        self.engine.log.append(("rm", self.name, ""))


@dataclass
class FakeEngine:
    directory: Path
    #: Stack name → the config of its newest update (what ``stack history`` records).
    stacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[tuple[str, str, str]] = field(default_factory=list)
    failing: bool = False
    made: list[EnvStack] = field(default_factory=list)

    def stack(self, name: str, *, create: bool) -> EnvStack:
        path = self.directory / f"Pulumi.{name}.yaml"
        self.made.append(EnvStack(path, on_up=lambda: self._up(name, create), engine=self, name=name))
        return self.made[-1]

    def _up(self, name: str, create: bool) -> None:
        assert create or name in self.stacks, f"{name} does not exist"
        if self.failing:
            raise command_error("the cluster refused the Namespace")
        self.stacks[name] = yaml.safe_load((self.directory / f"Pulumi.{name}.yaml").read_text())["config"]
        self.log.append(("up", name, ""))

    def stack_names(self) -> list[str]:
        return sorted(self.stacks)

    def read(self, stack: str, *args: str) -> Any:
        assert args[:2] == ("stack", "history"), args
        recorded = {
            key: {"value": json.dumps(value) if not isinstance(value, str) else value, "secret": False}
            for key, value in self.stacks[stack].items()
            if not isinstance(value, dict) or "secure" not in value
        }
        return [{"kind": "update", "result": "succeeded", "startTime": "2026-12-05T10:00:00Z", "config": recorded}]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "Pulumi.yaml",
        "Pulumi.local.yaml",
        "Pulumi.dev.yaml",
        "Pulumi.prod.yaml",
        "Pulumi.local-staging.yaml",
    ):
        shutil.copy(PROJECT / name, tmp_path / name)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKYARD_ACTOR", "ci-run-1")
    return tmp_path


def environments(directory: Path, engine: FakeEngine, now: datetime = NOW) -> MergeRequestEnvironments:
    return MergeRequestEnvironments(Project(directory, print_line=lambda _: None), engine, lambda: now)


def test_create_derives_the_stack_and_deploys_the_digest_until_its_expiry(project: Path) -> None:
    engine = FakeEngine(project)
    outcome = environments(project, engine).create("local", "7", LOCAL_IMAGE, "72h")
    assert outcome.applied
    assert outcome.stack == "local-mr-7"
    assert outcome.previous is None
    env = StackView.read(project, "local-mr-7").env
    assert env.image.ref == LOCAL_IMAGE
    assert env.merge_request == MergeRequestConfig(id=7, template="local", expires=NOW + timedelta(hours=72))
    assert env.kubernetes.namespace == "dockyard-app-local-mr-7"
    assert engine.log == [("up", "local-mr-7", "")]
    (message,) = [message for stack in engine.made for message in stack.messages]
    assert message.startswith("dockyard mr-env ")
    assert "mr=7" in message
    assert "actor=ci-run-1" in message


def test_a_rerun_for_the_same_merge_request_updates_the_digest_and_extends_the_expiry(project: Path) -> None:
    engine = FakeEngine(project)
    environments(project, engine).create("local", "7", LOCAL_IMAGE, "72h")
    later = NOW + timedelta(hours=30)
    outcome = environments(project, engine, later).create("local", "7", NEXT_IMAGE, "24h")
    assert outcome.previous == LOCAL_IMAGE
    assert outcome.image == NEXT_IMAGE
    env = StackView.read(project, "local-mr-7").env
    assert env.image.ref == NEXT_IMAGE
    assert env.merge_request is not None
    assert env.merge_request.expires == later + timedelta(hours=24)
    assert [op for op, _, _ in engine.log] == ["up", "up"]


def test_bad_input_is_refused_with_every_reason_before_anything_is_touched(project: Path) -> None:
    engine = FakeEngine(project)
    with pytest.raises(RefusedError) as refused:
        environments(project, engine).create("nope", "0", "127.0.0.1:5443/dockyard/app:latest", "100d")
    problems = "\n".join(refused.value.problems)
    for reason in ("--mr '0'", "--ttl '100d'", "not digest-pinned", "--from nope: ", "no such stack"):
        assert reason in problems
    assert not engine.log
    assert not list(project.glob("Pulumi.*-mr-*.yaml"))


@pytest.mark.parametrize(
    ("template", "image", "reason"),
    [
        ("prod", DEV_IMAGE, "tier prod; allowed: a dev or qa stack"),
        ("local-staging", LOCAL_IMAGE, "tier staging"),
        ("local", DEV_IMAGE, "allowed: local's repository 127.0.0.1:5443/dockyard/app"),
    ],
)
def test_a_template_above_qa_or_an_image_from_another_repository_is_refused(
    project: Path, template: str, image: str, reason: str
) -> None:
    engine = FakeEngine(project)
    with pytest.raises(RefusedError, match=reason):
        environments(project, engine).create(template, "7", image, "72h")
    assert not engine.log
    assert not list(project.glob("Pulumi.*-mr-*.yaml"))


def test_an_environment_is_no_template(project: Path) -> None:
    engine = FakeEngine(project)
    environments(project, engine).create("local", "7", LOCAL_IMAGE, "72h")
    with pytest.raises(RefusedError, match="the environment of merge request 7"):
        environments(project, engine).create("local-mr-7", "8", LOCAL_IMAGE, "72h")


def test_a_failed_first_update_leaves_no_stack_file(project: Path) -> None:
    engine = FakeEngine(project, failing=True)
    with pytest.raises(DockyardError, match="the cluster refused the Namespace"):
        environments(project, engine).create("local", "7", LOCAL_IMAGE, "72h")
    assert not (project / "Pulumi.local-mr-7.yaml").exists()


def test_destroy_takes_down_the_stack_and_its_file_and_a_second_destroy_has_nothing_to_do(project: Path) -> None:
    engine = FakeEngine(project)
    environments(project, engine).create("local", "7", LOCAL_IMAGE, "72h")
    destroyed = environments(project, engine).destroy("7")
    assert [(d.stack, d.deployed) for d in destroyed] == [("local-mr-7", True)]
    assert [op for op, _, _ in engine.log] == ["up", "destroy", "rm"]
    assert not (project / "Pulumi.local-mr-7.yaml").exists()
    assert not engine.stacks
    assert environments(project, engine).destroy("7") == []


def test_destroy_without_the_file_makes_it_again_from_the_template_for_the_engine(project: Path) -> None:
    """A CI job on a fresh checkout: the stack is in the backend, its file is not."""
    engine = FakeEngine(project)
    environments(project, engine).create("local", "7", LOCAL_IMAGE, "72h")
    (project / "Pulumi.local-mr-7.yaml").unlink()
    (destroyed,) = environments(project, engine).destroy("7", "local")
    assert destroyed.deployed
    salt = yaml.safe_load((project / "Pulumi.local.yaml").read_text())["encryptionsalt"]
    assert ("destroy", "local-mr-7", salt) in engine.log
    assert not (project / "Pulumi.local-mr-7.yaml").exists()


def test_sweep_destroys_the_expired_environments_only_and_a_dry_run_none(project: Path) -> None:
    engine = FakeEngine(project)
    environments(project, engine).create("local", "7", LOCAL_IMAGE, "2h")
    environments(project, engine).create("local", "8", LOCAL_IMAGE, "72h")
    # Made by another job: only the backend knows it, its expiry from its newest update's config.
    environments(project, engine).create("dev", "9", DEV_IMAGE, "1h")
    (project / "Pulumi.dev-mr-9.yaml").unlink()
    at = NOW + timedelta(hours=3)

    dry = environments(project, engine).sweep(at, dry_run=True)
    assert [(item.stack, item.expired, item.destroyed) for item in dry] == [
        ("dev-mr-9", True, None),
        ("local-mr-7", True, None),
        ("local-mr-8", False, None),
    ]
    assert sorted(engine.stacks) == ["dev-mr-9", "local-mr-7", "local-mr-8"]

    swept = environments(project, engine).sweep(at)
    assert [item.stack for item in swept if item.destroyed] == ["dev-mr-9", "local-mr-7"]
    assert sorted(engine.stacks) == ["local-mr-8"]
    assert sorted(p.name for p in project.glob("Pulumi.*-mr-*.yaml")) == ["Pulumi.local-mr-8.yaml"]


def test_the_cli_says_when_there_is_nothing_to_destroy(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Engine, "stack_names", lambda self: [])
    result = CliRunner().invoke(app, ["env", "destroy", "--mr", "12", "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert "merge request 12 has no environment: nothing to destroy" in result.output


def test_the_cli_refuses_bad_input_with_exit_1(project: Path) -> None:
    result = CliRunner().invoke(
        app, ["env", "create", "--from", "prod", "--mr", "3", "--image", DEV_IMAGE, "--project", str(project)]
    )
    assert result.exit_code == 1
    assert "tier prod" in result.output


@pytest.mark.parametrize(
    ("now", "said"),
    [("2026-12-05T11:59:59Z", "kept local-mr-7 (expires 2026-12-05T12:00:00+00:00)"), ("2026-12-06", "would destroy")],
)
def test_the_cli_sweep_judges_expiry_at_now_and_a_dry_run_destroys_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, now: str, said: str
) -> None:
    view = StackView.read(project, "local")
    document = derived_document(
        "local", view.document, view.env, mr=7, image=LOCAL_IMAGE, expires=NOW + timedelta(hours=2)
    )
    (project / "Pulumi.local-mr-7.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setattr(Engine, "stack_names", lambda self: ["local-mr-7"])
    result = CliRunner().invoke(app, ["env", "sweep", "--now", now, "--dry-run", "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert said in result.output
    assert (project / "Pulumi.local-mr-7.yaml").exists()
