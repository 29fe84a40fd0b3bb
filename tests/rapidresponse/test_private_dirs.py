"""The folders that hold keys and texts are the owner's alone, however they were made."""

from __future__ import annotations

import stat
from pathlib import Path

from dispatch.services import Services
from rapidresponse.config import Settings, load_or_create_dev_secrets
from rapidresponse.private_dirs import private_directory, tighten


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_folder_made_earlier_with_a_loose_mode_is_tightened(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    instance.chmod(0o775)  # as a umask of 002, or a hand, leaves it
    load_or_create_dev_secrets(instance)
    assert mode_of(instance) == 0o700
    assert mode_of(instance / "secrets.json") == 0o600


def test_a_new_folder_is_private_and_an_absent_one_is_left_absent(tmp_path: Path) -> None:
    assert mode_of(private_directory(tmp_path / "a" / "b")) == 0o700
    tighten(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_every_start_tightens_the_instance_keys_and_spool_folders(settings: Settings) -> None:
    folders = (settings.instance_path, settings.shred_keys_path, settings.spool_path)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    built = Services.build(settings)
    try:
        assert [mode_of(folder) for folder in folders] == [0o700] * 3
    finally:
        built.close()
