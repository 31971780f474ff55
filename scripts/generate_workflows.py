"""Write the GitHub Actions workflows generated from the stack configs to ``.github/workflows/``.

    python -m scripts.generate_workflows            # (re)write the files
    python -m scripts.generate_workflows --check    # exit 1 listing files that differ from the generated ones

The documents come from :mod:`components.workflows`; the stack configs are the committed ``Pulumi.<stack>.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.workflows import header, read_stack_environments, render_workflow_files

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _stale(project_dir: Path, expected: dict[str, str]) -> list[str]:
    """Generated files (recognised by their header) that the current configs no longer produce."""
    directory = project_dir / ".github" / "workflows"
    marker = header("x").splitlines()[0].split(":", 1)[1]
    return [
        str(path.relative_to(project_dir))
        for path in sorted(directory.glob("*.yml"))
        if str(path.relative_to(project_dir)) not in expected
        and marker in path.read_text(encoding="utf-8").split("\n", 1)[0]
    ]


def differing_files(project_dir: Path) -> list[str]:
    """Repository paths whose committed content is not what the generator writes (missing, changed or stale)."""
    expected = render_workflow_files(read_stack_environments(project_dir))
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
    args = parser.parse_args(argv)
    project_dir: Path = args.project_dir

    if args.check:
        differing = differing_files(project_dir)
        for path in differing:
            print(f"{path}: differs from the generated workflow; run python -m scripts.generate_workflows")
        return 1 if differing else 0

    expected = render_workflow_files(read_stack_environments(project_dir))
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
