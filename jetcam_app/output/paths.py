"""Before any work: every output path must differ from every input and every other output, by any spelling."""

import os
from typing import List, Optional, Tuple

from ..config import Config
from ..errors import OutputError

OUT_DIR_FILES = ("timing.csv", "predictions.jsonl", "summary.json")


def _same(a: str, b: str) -> bool:
    """realpath catches symlinks, '..' and relative spellings; samefile also catches hard links and
    case-insensitive filesystems when both files exist."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: str, folder: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _inputs(config: Config, config_path: Optional[str]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(what, path) of the run's input files, and the folders whose files are read (an image folder)."""
    from ..sources.spec import parse_source

    files = []  # type: List[Tuple[str, str]]
    folders = []  # type: List[str]
    uri = config.source.uri
    if not config.source.gst and uri and uri != "sample":
        spec = parse_source(uri)
        if spec.kind in ("file", "image"):
            files.append(("the source", spec.location))
        elif spec.kind == "folder":
            folders.append(spec.location)
    elif not config.source.gst and uri == "sample":
        from ..assets import MEDIA_DIR, SAMPLE_VIDEO

        files.append(("the sample video", os.path.join(MEDIA_DIR, SAMPLE_VIDEO)))
    if config_path:
        files.append(("the config", config_path))
    if config.model.weights:
        files.append(("the weights", config.model.weights))
    return files, folders


def _outputs(config: Config) -> List[Tuple[str, str]]:
    from .input_recorder import sidecar_path

    out = config.output
    # without --out the run gets a new numbered folder under runs/, which nothing can already be
    outputs = [("--out's %s" % name, os.path.join(out.out_dir, name)) for name in OUT_DIR_FILES] if out.out_dir else []
    if out.record:
        outputs.append(("--record", out.record))
    if out.save_input:
        outputs += [("--save-input", out.save_input), ("--save-input's sidecar", sidecar_path(out.save_input))]
    return outputs


def check_output_paths(config: Config, config_path: Optional[str] = None) -> None:
    """OutputError (exit 2, nothing written) when an output would overwrite an input or another output."""
    files, folders = _inputs(config, config_path)
    outputs = _outputs(config)
    for n, (what, path) in enumerate(outputs):
        for input_what, input_path in files:
            if _same(path, input_path):
                raise OutputError("%s %s is %s; it would be overwritten: choose another output path"
                                  % (what, path, input_what))
        for folder in folders:
            if _inside(path, folder) and os.path.isfile(path):
                raise OutputError("%s %s is a file of the source folder %s; it would be overwritten: choose "
                                  "another output path" % (what, path, folder))
        for other_what, other in outputs[n + 1:]:
            if _same(path, other):
                raise OutputError("%s and %s are the same file (%s); give each output its own path"
                                  % (what, other_what, path))
