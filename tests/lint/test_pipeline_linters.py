"""The generated GitLab CI and CircleCI files validate against SchemaStore's schemas (as ``check-jsonschema`` ships
them), and the generated Jenkinsfile is parsed by the real Groovy parser, whose syntax tree is then checked: the
stages in order, ``input`` before prod's agent, credentials only bound through ``credentials()``, and no Groovy
string that interpolates anything (every ``sh`` script single-quoted, so the shell expands the credential).

Every shell block of those three passes shellcheck, for this repository's registry and for each cloud registry.

Offline: check-jsonschema is a dev dependency; groovy and shellcheck come from ``scripts/install-linters.sh``
(Debian's packages). Locally a missing tool skips; with ``CI=true`` it fails, naming the install command (the
workflow linters' helper). Each validator also runs on a deliberately bad document, so one that silently checks
nothing fails here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dockyard.pipeline import circleci, github, gitlab, jenkins
from dockyard.pipeline.derive import derive_pipeline
from dockyard.pipeline.model import Stage
from tests.lint.test_workflow_linters import _run, _tool
from tests.unit.test_registry_kinds import CLOUDS, PYTHON, RUNNER, _stacks

ROOT = Path(__file__).resolve().parents[2]
GITLAB = ROOT / ".gitlab-ci.yml"
CIRCLECI = ROOT / ".circleci" / "config.yml"
JENKINSFILE = ROOT / "Jenkinsfile"

#: Prints the method calls of a Groovy file's syntax tree (name, first constant argument or named-argument kinds),
#: every ``NAME = credentials('id')`` binding, and every interpolating string (GString), one per line.
AST_SCRIPT = r"""
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.Phases

class Calls extends CodeVisitorSupport {
    void visitMethodCallExpression(MethodCallExpression call) {
        def arguments = call.arguments
        def first = arguments instanceof TupleExpression && arguments.expressions ? arguments.expressions[0] : null
        def text = first instanceof ConstantExpression ? first.value.toString().split('\n')[0] : ''
        if (first instanceof MapExpression) {
            text = first.mapEntryExpressions.collect {
                it.keyExpression.text + '=' + it.valueExpression.class.simpleName
            }.join(',')
        }
        println "call\t${call.methodAsString}\t${text}"
        super.visitMethodCallExpression(call)
    }
    void visitBinaryExpression(BinaryExpression expression) {
        def right = expression.rightExpression
        if (right instanceof MethodCallExpression && right.methodAsString == 'credentials') {
            println "bind\t${expression.leftExpression.text}\t${right.arguments.expressions[0].class.simpleName}"
        }
        super.visitBinaryExpression(expression)
    }
    void visitGStringExpression(GStringExpression expression) {
        println "gstring\t${expression.text.split('\n')[0]}"
        super.visitGStringExpression(expression)
    }
}

def unit = new CompilationUnit()
unit.addSource(new File(args[0]))
unit.compile(Phases.CONVERSION)
unit.AST.modules[0].statementBlock.visit(new Calls())
"""


# --- GitLab CI and CircleCI: SchemaStore schemas ----------------------------------------------------------------


@pytest.mark.parametrize(("schema", "path"), [("vendor.gitlab-ci", GITLAB), ("vendor.circle-ci", CIRCLECI)])
def test_the_document_matches_the_schemastore_schema(schema: str, path: Path) -> None:
    result = _run([_tool("check-jsonschema"), "--builtin-schema", schema, str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("schema", "invalid"),
    [
        # `when` takes a fixed set of words, and a script is a string or a list of them.
        ("vendor.gitlab-ci", "build:\n  script: [make]\n  when: sometimes\n"),
        # A job needs an executor; a step is a known step or a map.
        ("vendor.circle-ci", "version: 2.1\njobs:\n  build:\n    steps: 5\n"),
    ],
)
def test_the_schema_does_reject_an_invalid_document(schema: str, invalid: str, tmp_path: Path) -> None:
    path = tmp_path / "invalid.yml"
    path.write_text(invalid, encoding="utf-8")
    result = _run([_tool("check-jsonschema"), "--builtin-schema", schema, str(path)])
    assert result.returncode == 1, result.stdout + result.stderr


# --- Jenkinsfile: the Groovy parser -----------------------------------------------------------------------------


def _syntax_tree(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "ast.groovy"
    script.write_text(AST_SCRIPT, encoding="utf-8")
    return _run([_tool("groovy"), str(script), str(path)])


def _events(path: Path, tmp_path: Path) -> list[list[str]]:
    result = _syntax_tree(path, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def _problems(events: list[list[str]]) -> list[str]:
    """What the syntax tree says is wrong with a Jenkinsfile's structure and credential handling."""
    problems = [f"interpolating string: {event[1]}" for event in events if event[0] == "gstring"]
    calls = [event for event in events if event[0] == "call"]
    stages = [event[2] for event in calls if event[1] == "stage"]
    for event in calls:
        if event[1] == "sh" and "script=ConstantExpression" not in event[2]:
            problems.append(f"sh without a constant script: {event[2]}")
        if event[1] == "credentials" and not event[2]:
            problems.append("credentials() with a computed ID")
    bindings = [event for event in events if event[0] == "bind"]
    if len(bindings) != sum(1 for event in calls if event[1] == "credentials"):
        problems.append("credentials() outside an environment binding")
    problems += [f"{event[1]} bound from a computed ID" for event in bindings if event[2] != "ConstantExpression"]
    inputs = [i for i, event in enumerate(calls) if event[1] == "input"]
    for index in inputs:
        stage = next(calls[i][2] for i in range(index, -1, -1) if calls[i][1] == "stage")
        following = [event[1] for event in calls[index:]]
        if following.index("agent") > (following.index("stage") if "stage" in following else len(following)):
            problems.append(f"{stage}: input after the agent")
        if stage != "promote-prod":
            problems.append(f"{stage}: input on a stage that is not prod's")
    if not inputs:
        problems.append("no input: prod is not approved by a person")
    chain = [s for s in Stage if s != Stage.TEST]

    def stage_of(name: str) -> Stage | None:
        return next((s for s in chain if name == s.value or name.startswith(f"{s.value}-")), None)

    delivery = [stage for stage in stages if stage_of(stage) is not None]
    order = [stage_of(stage) for stage in delivery]
    if order != sorted(order, key=lambda s: chain.index(s) if s else -1):
        problems.append(f"stages out of order: {delivery}")
    # The integration tests, where the building stack has them, come before the build (which needs them).
    if [stage for stage in delivery if stage != "integration"][:3] != ["build", "scan", "supply-chain"]:
        problems.append(f"the chain does not start build, scan, supply-chain: {delivery}")
    return problems


def test_the_jenkinsfile_parses_and_keeps_the_chain(tmp_path: Path) -> None:
    events = _events(JENKINSFILE, tmp_path)
    assert _problems(events) == []
    stages = [event[2] for event in events if event[:2] == ["call", "stage"]]
    chain = ["build", "scan", "supply-chain", "deploy-dev", "promote-qa", "promote-staging", "promote-prod"]
    # A change request's environment and the timer's sweep beside the chain (no close event in Jenkins).
    assert stages[-9:] == [*chain, "mr-env", "mr-env-sweep"]
    calls = [event[1] for event in events if event[0] == "call"]
    assert calls.count("input") == 1, "prod alone waits for a person (qa and staging run unattended)"
    assert "withCredentials" not in calls, "a GHCR pipeline needs no cloud OIDC token"
    bound = {event[1] for event in events if event[0] == "bind"}
    assert {"PULUMI_CONFIG_PASSPHRASE", "REGISTRY_PASSWORD", "KUBECONFIG", "COSIGN_KEY"} <= bound


def test_the_parser_rejects_bad_syntax(tmp_path: Path) -> None:
    broken = tmp_path / "Jenkinsfile"
    broken.write_text(JENKINSFILE.read_text(encoding="utf-8").replace("stages {", "stages {{", 1), encoding="utf-8")
    assert _syntax_tree(broken, tmp_path).returncode != 0


def test_the_structure_check_catches_an_interpolated_credential_and_a_missing_approval(tmp_path: Path) -> None:
    text = JENKINSFILE.read_text(encoding="utf-8")
    leaky = tmp_path / "Jenkinsfile"
    leaky.write_text(
        text.replace("steps {", 'steps {\n sh "curl -u ci:$REGISTRY_PASSWORD https://registry.example.com"', 1)
        .replace("submitter", "//submitter")
        .replace("input {", "inputs {"),
        encoding="utf-8",
    )
    problems = _problems(_events(leaky, tmp_path))
    assert any(problem.startswith("interpolating string: curl -u ci:$REGISTRY_PASSWORD") for problem in problems)
    assert any(problem.startswith("sh without a constant script") for problem in problems)
    assert "no input: prod is not approved by a person" in problems


# --- the same validators on every cloud registry's files --------------------------------------------------------


@pytest.mark.parametrize("kind", list(CLOUDS))
def test_a_cloud_registrys_files_pass_every_validator(kind: str, tmp_path: Path) -> None:
    pipeline = derive_pipeline(_stacks(CLOUDS[kind]))
    files = {
        **github.render(pipeline),
        **gitlab.render(pipeline, RUNNER, PYTHON),
        **circleci.render(pipeline, RUNNER, PYTHON),
        **jenkins.render(pipeline, RUNNER, PYTHON),
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    workflows = sorted(str(path) for path in (tmp_path / ".github" / "workflows").glob("*.yml"))
    result = _run([_tool("actionlint"), "-no-color", *workflows])
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run([_tool("zizmor"), "--offline", "--persona=pedantic", "--no-progress", *workflows])
    assert "No findings to report" in result.stdout, result.stdout + result.stderr
    for schema, path in (("vendor.gitlab-ci", ".gitlab-ci.yml"), ("vendor.circle-ci", ".circleci/config.yml")):
        result = _run([_tool("check-jsonschema"), "--builtin-schema", schema, str(tmp_path / path)])
        assert result.returncode == 0, result.stdout + result.stderr
    events = _events(tmp_path / "Jenkinsfile", tmp_path)
    assert _problems(events) == []
    assert ["call", "withCredentials", ""] in events, "the cloud login takes the OIDC token credential"


# --- the shell the container-based systems run ------------------------------------------------------------------


def _shell(files: dict[str, str]) -> dict[str, str]:
    """Every shell script of the GitLab, CircleCI and Jenkins files, by a name saying where it is."""
    scripts: dict[str, str] = {}
    for name, job in yaml.safe_load(files[".gitlab-ci.yml"]).items():
        if isinstance(job, dict) and "script" in job:
            scripts[f"gitlab-{name}"] = "\n".join(job["script"])
    for name, job in yaml.safe_load(files[".circleci/config.yml"])["jobs"].items():
        for index, step in enumerate(job["steps"]):
            if isinstance(step, dict) and "run" in step:
                scripts[f"circleci-{name}-{index}"] = step["run"]["command"]
    for index, match in enumerate(re.finditer(r"script: '''(.*?)'''\)", files["Jenkinsfile"], re.DOTALL)):
        scripts[f"jenkins-{index}"] = re.sub(r"\\(.)", r"\1", match[1])
    return scripts


@pytest.mark.parametrize("kind", ["ghcr", *CLOUDS])
def test_every_shell_block_passes_shellcheck(kind: str, tmp_path: Path) -> None:
    if kind == "ghcr":
        files = {path: (ROOT / path).read_text(encoding="utf-8") for path in (".gitlab-ci.yml", ".circleci/config.yml")}
        files["Jenkinsfile"] = JENKINSFILE.read_text(encoding="utf-8")
    else:
        pipeline = derive_pipeline(_stacks(CLOUDS[kind]))
        files = {
            **gitlab.render(pipeline, RUNNER, PYTHON),
            **circleci.render(pipeline, RUNNER, PYTHON),
            **jenkins.render(pipeline, RUNNER, PYTHON),
        }
    scripts = _shell(files)
    assert {name.split("-")[0] for name in scripts} == {"gitlab", "circleci", "jenkins"}
    paths = []
    for name, script in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(script, encoding="utf-8")
        paths.append(str(path))
    result = _run([_tool("shellcheck"), "--shell=bash", "--severity=warning", *paths])
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_does_catch_a_masked_failure(tmp_path: Path) -> None:
    path = tmp_path / "bad.sh"
    path.write_text('export TOKEN="$(false)"\necho $TOKEN\n', encoding="utf-8")
    result = _run([_tool("shellcheck"), "--shell=bash", "--severity=warning", str(path)])
    assert result.returncode == 1
    assert "SC2155" in result.stdout, result.stdout
