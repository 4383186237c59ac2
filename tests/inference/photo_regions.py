"""Regions measured by hand on scikit-image's person photos (x1, y1, x2, y2 in pixels, over a 50-pixel grid), and
the one guard they need: scikit-image 0.18 replaced `camera()` with another cameraman photo (the old one's
licence was unclear), so on an older scikit-image (the JetPack 4.6 stack's 0.17) the cameraman's regions skip."""

import re

import pytest

# the face, ear to ear, hair to chin
FACES = {"astronaut": (165, 55, 285, 180), "camera": (150, 65, 265, 200)}
# inside the person, and background around it (Selfie's mask)
PERSON = {"astronaut": {"face": (185, 70, 265, 165), "torso": (80, 300, 270, 500), "hair": (170, 25, 280, 60)},
          "camera": {"face": (200, 100, 250, 180), "coat": (40, 220, 140, 450)}}
BACKGROUND = {"astronaut": {"wall": (305, 20, 350, 130), "rocket": (385, 20, 445, 240), "flag": (0, 0, 80, 200)},
              "camera": {"sky": (300, 20, 500, 120), "grass": (330, 300, 500, 500), "sky left": (0, 20, 100, 100)}}


def measured(photo: str) -> None:
    """Skip where this scikit-image's photo is not the one the regions were measured on."""
    if photo != "camera":
        return
    import skimage

    if tuple(int(p) for p in re.findall(r"\d+", skimage.__version__)[:2]) < (0, 18):
        pytest.skip("scikit-image %s ships the old cameraman photo; its regions were measured on 0.18+'s"
                    % skimage.__version__)
