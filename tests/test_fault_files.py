"""Files that are not what their names say: FIFOs, sockets and devices where files are expected, YAML bombs as
--config, images that decode to gigabytes or are cut short, GIFs in a folder. Each run ends: skipped with a warning
and counted in summary.json, or one line naming the fix and exit code 2."""

import json
import os
import resource
import socket
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from jetcam_app.cli import main
from jetcam_app.sources.image_header import read_header

from conftest import ROOT

BASE = ["--model", "mobilenet_v2", "--random-weights", "--headless", "--threads", "1"]
HANG_GUARD_S = 300  # a run that blocks on a FIFO never ends: the guard fails the test instead of hanging the suite


def one_line_exit_2(code, err):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


def run_py(args, cwd, limit_bytes=None):
    """run.py in a child process (hang guard: HANG_GUARD_S); RLIMIT_AS at limit_bytes when given."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, os.path.join(ROOT, "run.py")] + args, cwd=str(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=HANG_GUARD_S, preexec_fn=limit if limit_bytes else None)


def image(path, width=64, height=48):
    frame = np.full((height, width, 3), (0, 128, 255), np.uint8)
    cv2.putText(frame, "7", (5, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    assert cv2.imwrite(str(path), frame)
    return str(path)


def png_of_size(path, width, height):
    """A real, decodable black PNG of width x height: a few hundred KB that decode to width * height * 3 bytes."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    deflate, row = zlib.compressobj(9), b"\x00" * (1 + 3 * width)
    pixels = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    with open(str(path), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return str(path)


def cut_short(path, fraction=0.6):
    data = open(str(path), "rb").read()
    open(str(path), "wb").write(data[:int(len(data) * fraction)])
    return str(path)


def summary(out):
    with open(str(out / "summary.json")) as f:
        return json.load(f)


# -- class 3: FIFOs, sockets, devices ------------------------------------------------------------------------

def test_a_fifo_in_an_image_folder_is_skipped_with_a_warning_and_the_run_ends(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    image(folder / "a.png")
    os.mkfifo(str(folder / "b.png"))  # cv2.imread would wait for a writer forever
    image(folder / "c.jpg")
    done = run_py(BASE + ["--source", str(folder), "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipped b.png: a FIFO, not a regular file" in done.stderr
    result = summary(tmp_path / "out")
    assert result["source_skipped_frames"] == 1 and result["frames"]["processed"] == 2


def test_a_fifo_in_a_folder_does_not_hold_up_the_other_sources(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    os.mkfifo(str(folder / "a.png"))
    image(folder / "b.png")
    done = run_py(BASE + ["--source", str(folder), "--source", "test://320x240@30?frames=3",
                          "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 0, done.stderr
    sections = summary(tmp_path / "out")["sources"]
    assert sections["imgs"]["source_skipped_frames"] == 1 and sections["imgs"]["frames"]["processed"] == 1
    assert sections["test"]["frames"]["processed"] == 3


def _fifo(p, name):
    os.mkfifo(str(p / name))
    return str(p / name)


def _socket(p, name):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(p / name))  # the socket file stays after close: a path no open() can read
    server.close()
    return str(p / name)


@pytest.mark.parametrize("make, name, flag, kind", [
    (_fifo, "photo.jpg", "--source", "a FIFO"),  # was "image not found ... check the path"
    (_socket, "photo.png", "--source", "a socket"),
    (_fifo, "clip.mp4", "--source", "a FIFO"),
    (_socket, "clip.mp4", "--source", "a socket"),
    (lambda p, name: "/dev/zero", None, "--source", "a character device"),
    (_fifo, "c.yaml", "--config", "a FIFO"),  # blocked in open(); Ctrl-C then printed a traceback
    (_socket, "c.yaml", "--config", "a socket"),
    (lambda p, name: "/dev/zero", None, "--config", "a character device"),
])
def test_a_special_file_as_source_or_config_is_one_line_naming_it(tmp_path, capsys, make, name, flag, kind):
    path = make(tmp_path, name)
    args = BASE + ["--out", str(tmp_path / "out"), flag, path]
    if flag == "--config":
        args += ["--source", "test://320x240@30?frames=1"]
    line = one_line_exit_2(*cli(args, capsys))
    assert "%s, not a regular file" % kind in line and path in line, line
    assert not os.path.exists(str(tmp_path / "out" / "summary.json"))


# -- class 4: config bombs -----------------------------------------------------------------------------------

def _laughs(levels):
    """Billion laughs in model.name: each level a list of nine aliases of the one above (half a KB at 9 levels)."""
    rows = ["    - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    rows += ["    - &l%d [%s]" % (i, ", ".join(["*l%d" % (i - 1)] * 9)) for i in range(1, levels)]
    return "model:\n  name:\n" + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def address_space_limit():
    """RLIMIT_AS for run.py: what the app takes to reach --config (it imports torch, 3+ GB of address space on some
    stacks, before reading it), plus 1 GB for the config; never less than 2 GB. A bomb expanded (or echoed in its
    error) needs gigabytes more."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc to measure the app's address space")
    probe = ("from jetcam_app.config import load_config; load_config(); "
             "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')][0])")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=HANG_GUARD_S, check=True)
    return max(2 << 30, int(done.stdout.split()[-1]) * 1024 + (1 << 30))


@pytest.mark.parametrize("text, message", [
    (_laughs(9), "line 4: aliases (*l0) are not allowed in a jetcam config"),  # was a MemoryError traceback
    (_laughs(7), "line 4: aliases (*l0) are not allowed in a jetcam config"),  # was exit 2, a 39 MB "one line"
    ("source: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),  # was a RecursionError traceback
    ("model: {name: " + "{a: " * 20000 + "1" + "}" * 20001 + "\n", "nested too deeply"),
])
def test_config_bombs_end_in_one_short_line_under_an_address_space_limit(tmp_path, address_space_limit, text,
                                                                         message):
    (tmp_path / "bomb.yaml").write_text(text)
    done = run_py(["--config", str(tmp_path / "bomb.yaml"), "--check"], tmp_path, address_space_limit)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and len(done.stderr) < 300, done.stderr[-2000:]
    assert message in done.stderr and "Error" not in done.stderr.replace("error:", ""), done.stderr


def test_an_alias_is_refused_even_where_it_would_be_harmless(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("source: &cam {uri: 'test://320x240@30?frames=1'}\nsources: [*cam, *cam]\n")
    line = one_line_exit_2(*cli(BASE + ["--config", str(tmp_path / "c.yaml")], capsys))
    assert "line 2: aliases (*cam) are not allowed in a jetcam config" in line, line


@pytest.mark.parametrize("yaml_text, start", [
    ("pipeline:\n  max_frames: " + "x" * 500000 + "\n", "error: pipeline.max_frames must be int, got 'xxx"),
    ("pipeline:\n  max_frames: [" + ", ".join(["[1, 2, 3, 4, 5, 6, 7, 8]"] * 20000) + "]\n",
     "error: pipeline.max_frames must be int, got [[1, 2"),
    ("overlay:\n  hud: " + "y" * 500000 + "\n", "error: overlay.hud must be true or false, got 'yyy"),
    ("pipeline:\n  " + "k" * 1000 + ": 1\n", "error: {path}: unknown key 'pipeline.kkk"),
    ("sources:\n  - {uri: 'test://', " + "k" * 1000 + ": 1}\n  - test://\n", "error: {path}: unknown key 'kkk"),
    ("k" * 1000 + ": {}\n", "error: {path}: unknown section 'kkk"),
    ("model: !" + "t" * 100000 + " x\n", "error: config file {path} is not valid YAML: could not determine"),
])
def test_values_echoed_in_config_errors_are_cut_short(tmp_path, capsys, yaml_text, start):
    (tmp_path / "c.yaml").write_text(yaml_text)
    line = one_line_exit_2(*cli(BASE + ["--config", str(tmp_path / "c.yaml")], capsys))
    start = start.format(path=tmp_path / "c.yaml")
    assert line.startswith(start) and "..." in line and len(line) < 300 + len(str(tmp_path)), line[:400]


# -- class 7: images that decode to gigabytes, cut short, GIFs -----------------------------------------------

def test_an_image_over_the_megapixel_cap_is_skipped_from_its_header_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    image(folder / "a.png")
    png_of_size(folder / "huge.png", 9000, 9000)  # 81 MP: 243 MB decoded, over the 50 MP default
    assert cv2.imread(str(folder / "huge.png")).shape == (9000, 9000, 3)  # a real image OpenCV would decode
    assert main(BASE + ["--source", str(folder), "--out", str(tmp_path / "out")]) == 0
    err = caplog.text  # the warnings
    assert "skipped huge.png: 9000x9000 pixels (81 MP), over source.max_image_mp = 50 MP" in err, err
    result = summary(tmp_path / "out")
    assert result["source_skipped_frames"] == 1 and result["frames"]["processed"] == 1


def test_source_max_image_mp_sets_the_cap_and_a_lone_image_over_it_is_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("source:\n  max_image_mp: 0.002\n")
    photo = image(tmp_path / "photo.png", 64, 48)  # 0.003 MP
    line = one_line_exit_2(*cli(BASE + ["--config", str(tmp_path / "c.yaml"), "--source", photo,
                                        "--out", str(tmp_path / "out")], capsys))
    assert line == ("error: %s is 64x48 pixels (0.00307 MP), over source.max_image_mp = 0.002 MP; raise that key to read "
                    "it" % photo), line


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_a_cut_short_image_in_a_folder_is_counted_as_damaged_not_saved(tmp_path, caplog, name):
    folder = tmp_path / "imgs"
    folder.mkdir()
    image(folder / "a.png")
    cut_short(image(folder / name, 320, 240))
    if name.endswith(".jpg"):
        assert cv2.imread(str(folder / name)) is not None  # libjpeg decodes it, greying the rest
    assert main(BASE + ["--source", str(folder), "--out", str(tmp_path / "out")]) == 0
    err = caplog.text  # the warnings
    assert "skipped %s: cut short (no %s end" % (name, "JPEG" if name.endswith(".jpg") else "PNG") in err, err
    result = summary(tmp_path / "out")
    assert result["source_skipped_frames"] == 1 and result["frames"]["processed"] == 1
    assert not os.path.exists(str(tmp_path / "out" / name))  # no annotated copy of a damaged image


def test_a_lone_cut_short_jpeg_is_one_line(tmp_path, capsys):
    photo = cut_short(image(tmp_path / "photo.jpg", 320, 240))
    line = one_line_exit_2(*cli(BASE + ["--source", photo, "--out", str(tmp_path / "out")], capsys))
    assert "photo.jpg is cut short (no JPEG end marker FF D9)" in line, line


def test_gifs_in_a_folder_are_named_in_one_warning(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    image(folder / "a.png")
    for name in ("x.gif", "y.GIF"):
        (folder / name).write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    assert main(BASE + ["--source", str(folder), "--out", str(tmp_path / "out")]) == 0
    err = caplog.text  # the warnings
    assert err.count(".gif file(s)") == 1 and "2 .gif file(s) there are not read" in err, err


def test_a_folder_of_gifs_only_says_so(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "x.gif").write_bytes(b"GIF89a")
    line = one_line_exit_2(*cli(BASE + ["--source", str(tmp_path / "imgs"), "--out", str(tmp_path / "out")], capsys))
    assert "holds no images" in line and "1 .gif file(s) there are not read" in line, line


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff"])
def test_header_sizes_match_what_opencv_decodes(tmp_path, ext):
    path = image(tmp_path / ("a" + ext), 123, 45)
    header = read_header(open(path, "rb").read())
    assert header is not None and header.size_wh == (123, 45) and header.missing_end is None
    assert cv2.imread(path).shape[:2] == (45, 123)


def test_a_jpeg_with_a_thumbnail_and_trailing_bytes_is_complete(tmp_path):
    """An EXIF thumbnail (its own FF D9, inside APP1) and bytes after the end marker (a phone's motion-photo video)
    do not make a complete JPEG look cut short, nor a cut-short one look complete."""
    thumbnail = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    photo = cv2.imencode(".jpg", np.full((40, 60, 3), 200, np.uint8))[1].tobytes()
    app1 = b"Exif\x00\x00" + thumbnail
    data = photo[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + photo[2:] + b"\x00" * 64 + b"ftypmp4"
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (40, 60)
    assert read_header(data).size_wh == (60, 40) and read_header(data).missing_end is None
    cut = data[:2 + 4 + len(app1) + 200]  # the thumbnail whole, the photo cut
    assert read_header(cut).missing_end == "JPEG end marker FF D9"
