"""Write the CI pipeline files generated from the stack configs: one pipeline model, a file set per CI system that
``dockyard:ci.systems`` (Pulumi.yaml) names — ``.github/workflows/*.yml``, ``.gitlab-ci.yml``,
``.circleci/config.yml``, ``Jenkinsfile``.

    python -m scripts.generate_workflows            # (re)write the files, remove generated ones no longer produced
    python -m scripts.generate_workflows --check    # exit 1 listing files that differ from the generated ones
    python -m scripts.generate_workflows --stacks local,local-staging,local-prod --systems gitlab --out DIR
                                                    # any set of stacks into DIR (e.g. the local chain, to run here)

The documents come from :mod:`dockyard.pipeline`; the stack configs are the committed ``Pulumi.<stack>.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dockyard.pipeline.derive import read_stack_environments
from dockyard.pipeline.files import generated_files, pipeline_files
from dockyard.pipeline.render import REGENERATE_COMMAND
from dockyard.pipeline.settings import CiSystem, read_ci_config

PROJECT_DIR = Path(__file__).resolve().parent.parent


def expected_files(project_dir: Path) -> dict[str, str]:
    """What the generator writes for ``project_dir``: every chosen CI system's files by repository path."""
    return pipeline_files(read_stack_environments(project_dir), read_ci_config(project_dir), None, project_dir)


def _stale(project_dir: Path, expected: dict[str, str]) -> list[str]:
    """Generated files (recognised by their header) that the current configs no longer produce."""
    return [path for path in generated_files(project_dir) if path not in expected]


def differing_files(project_dir: Path) -> list[str]:
    """Repository paths whose committed content is not what the generator writes (missing, changed or stale)."""
    expected = expected_files(project_dir)
    differing = [
        path
        for path, content in expected.items()
        if not (project_dir / path).is_file() or (project_dir / path).read_text(encoding="utf-8") != content
    ]
    return differing + _stale(project_dir, expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any do")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="directory of Pulumi.yaml")
    parser.add_argument(
        "--stacks",
        type=lambda value: [name for name in value.split(",") if name],
        help="comma-separated stacks the pipeline runs for, whatever their github.enabled (default: the enabled ones)",
    )
    parser.add_argument(
        "--systems",
        type=lambda value: [CiSystem(name) for name in value.split(",") if name],
        help="comma-separated CI systems to render (default: dockyard-ci:systems in Pulumi.yaml)",
    )
    parser.add_argument("--out", type=Path, help="write into this directory instead of the project (with --stacks)")
    args = parser.parse_args(argv)
    project_dir: Path = args.project_dir

    if args.stacks is not None or args.systems is not None or args.out is not None:
        if args.check:
            parser.error("--check compares the committed files: it takes none of --stacks, --systems, --out")
        ci = read_ci_config(project_dir)
        if args.systems is not None:
            ci = ci.model_copy(update={"systems": args.systems})
        out: Path = args.out or project_dir
        for path, content in pipeline_files(read_stack_environments(project_dir), ci, args.stacks, project_dir).items():
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            print(f"wrote {target}")
        return 0

    if args.check:
        differing = differing_files(project_dir)
        for path in differing:
            print(f"{path}: differs from the generated pipeline file; run {REGENERATE_COMMAND}")
        return 1 if differing else 0

    expected = expected_files(project_dir)
    for path, content in expected.items():
        target = project_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text(encoding="utf-8") != content:
            target.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    for path in _stale(project_dir, expected):
        (project_dir / path).unlink()
        print(f"removed {path} (no longer generated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
