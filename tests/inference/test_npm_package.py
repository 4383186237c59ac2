"""The human-models npm package's extraction and checks, on small tarballs made here (no npm registry)."""

import io
import os
import re
import stat
import tarfile

import pytest

from jetcam_app.errors import WeightsError
from jetcam_app.inference.adapters.npm_package import NPM_PACKAGE, extract_members, fetch_members


def make_tarball(path, files, folders=()):
    with tarfile.open(str(path), "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
    return str(path)


def test_members_are_extracted_under_their_names_and_no_part_file_is_left(tmp_path):
    tarball = make_tarball(tmp_path / "p.tgz", {"package/LICENSE": b"licence", "package/models/a.bin": b"\x00\x01"})
    out = tmp_path / "out"
    out.mkdir()
    extract_members(tarball, [("package/LICENSE", "LICENSE.human-models"), ("package/models/a.bin", "a.bin")], str(out))
    assert sorted(os.listdir(str(out))) == ["LICENSE.human-models", "a.bin"]
    assert (out / "a.bin").read_bytes() == b"\x00\x01" and (out / "LICENSE.human-models").read_bytes() == b"licence"


def test_a_missing_member_names_the_package_and_leaves_the_earlier_files_whole(tmp_path):
    tarball = make_tarball(tmp_path / "p.tgz", {"package/models/a.bin": b"bin"})
    with pytest.raises(WeightsError, match="%s has no package/models/a.json; the pinned package changed" % NPM_PACKAGE):
        extract_members(tarball, [("package/models/a.bin", "a.bin"), ("package/models/a.json", "a.json")],
                        str(tmp_path))
    assert (tmp_path / "a.bin").read_bytes() == b"bin" and not (tmp_path / "a.json").exists()


def test_a_folder_member_is_not_a_regular_file(tmp_path):
    tarball = make_tarball(tmp_path / "p.tgz", {}, folders=("package/models",))
    with pytest.raises(WeightsError, match="package/models is not a regular file"):
        extract_members(tarball, [("package/models", "models")], str(tmp_path))


def fake_npm(folder, script):
    """A PATH whose `npm` runs `script` (sh) in the folder it is called in; the system's tools after it."""
    folder.mkdir()
    npm = folder / "npm"
    npm.write_text("#!/bin/sh\n" + script + "\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    return os.pathsep.join((str(folder), "/bin", "/usr/bin"))


def test_a_tarball_with_other_hashes_is_refused_with_the_fix(tmp_path, monkeypatch):
    tarball = make_tarball(tmp_path / "other.tgz", {"package/LICENSE": b"not the pinned package"})
    monkeypatch.setenv("PATH", fake_npm(tmp_path / "bin", "cp '%s' ./human-models-3.0.4.tgz" % tarball))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(WeightsError, match=r"from npm has sha256 [0-9a-f]{64}, expected .*npm cache clean --force"):
        fetch_members(str(out), [("package/LICENSE", "LICENSE.human-models")], "MoveNet", "hint %s", "movenet")
    assert os.listdir(str(out)) == []  # nothing of it extracted


def test_a_failed_npm_pack_names_its_last_line_and_the_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_npm(tmp_path / "bin", "echo 'npm ERR! network unreachable' >&2; exit 1"))
    want = "`npm pack %s` failed (npm ERR! network unreachable); check the npm registry is reachable, or copy into %s"
    with pytest.raises(WeightsError, match=re.escape(want % (NPM_PACKAGE, tmp_path))):
        fetch_members(str(tmp_path), [], "MoveNet", "copy into %s", "movenet")
