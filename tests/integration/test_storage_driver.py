"""The podman storage ``scripts/local-base-images.sh setup`` chooses: overlay where this machine mounts overlayfs
(checked here by a mount of the test's own), vfs otherwise or when asked, each in a graph root of its own; a second
run changes nothing, a conf the machine's owner wrote is left alone, and a bad driver name is one error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BASE_IMAGES = Path(__file__).resolve().parents[2] / "scripts" / "local-base-images.sh"


def setup(conf: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DOCKYARD_STORAGE_DRIVER"}
    environment.update(DOCKYARD_STORAGE_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(conf), **env)
    return subprocess.run(
        [str(BASE_IMAGES), "setup"], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def overlay_mounts_here(tmp_path: Path) -> bool:
    parts = {name: tmp_path / "probe" / name for name in ("lower", "upper", "work", "merged")}
    for part in parts.values():
        part.mkdir(parents=True)
    options = f"lowerdir={parts['lower']},upperdir={parts['upper']},workdir={parts['work']}"
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(parts["merged"])], check=False)
    if mounted.returncode == 0:
        subprocess.run(["umount", str(parts["merged"])], check=True)
    return mounted.returncode == 0


@pytest.fixture(autouse=True)
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root: the storage conf and the probe mount are root's")  # this tier never skips


def test_the_driver_follows_what_mounts_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    first = setup(conf)
    assert first.returncode == 0, first.stderr
    expected = "overlay" if overlay_mounts_here(tmp_path) else "vfs"
    text = conf.read_text()
    assert f'driver = "{expected}"' in text
    assert f'graphroot = "/var/lib/containers/storage{"-overlay" if expected == "overlay" else ""}"' in text
    assert f"podman storage: {expected}" in first.stderr
    written = conf.stat().st_mtime_ns
    again = setup(conf)
    assert again.returncode == 0, again.stderr
    assert conf.stat().st_mtime_ns == written
    assert "writing" not in again.stderr


def test_vfs_when_asked(tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    forced = setup(conf, DOCKYARD_STORAGE_DRIVER="vfs")
    assert forced.returncode == 0, forced.stderr
    assert 'driver = "vfs"' in conf.read_text()
    assert 'graphroot = "/var/lib/containers/storage"' in conf.read_text()
    assert "podman storage: vfs" in forced.stderr


def test_a_conf_the_owner_wrote_is_used_as_it_is(tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    owned = (
        '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n'
    )
    conf.write_text(owned)
    done = setup(conf)
    assert done.returncode == 0, done.stderr
    assert conf.read_text() == owned


def test_an_unknown_driver_is_one_error_and_nothing_is_written(tmp_path: Path) -> None:
    conf = tmp_path / "storage.conf"
    done = setup(conf, DOCKYARD_STORAGE_DRIVER="zfs")
    assert done.returncode != 0
    assert "DOCKYARD_STORAGE_DRIVER='zfs'; allowed: overlay, vfs" in done.stderr
    assert not conf.exists()
