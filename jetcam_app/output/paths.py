"""Before any work: every output path must differ from every input and every other output, by any spelling."""

import os
from typing import List, Optional, Tuple

from ..config import Config, SourceConfig
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


def _sources(config: Config) -> Tuple[Tuple[SourceConfig, ...], bool]:
    """The sources as the pipeline runs them (config.sources, else config.source), and whether there are several."""
    sources = config.sources or (config.source,)
    return sources, len(sources) > 1


def _inputs(config: Config, config_path: Optional[str]) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
    """(what, path) of the run's input files, and (what, folder) of the folders whose files are read."""
    from ..sources.spec import parse_source

    files = []  # type: List[Tuple[str, str]]
    folders = []  # type: List[Tuple[str, str]]
    sources, several = _sources(config)
    for source in sources:
        what = "the source %s" % source.name if several else "the source"
        uri = source.uri
        if not source.gst and uri and uri != "sample":
            spec = parse_source(uri)
            if spec.kind in ("file", "image"):
                files.append((what, spec.location))
            elif spec.kind == "folder":
                folders.append((what, spec.location))
        elif not source.gst and uri == "sample":
            from ..assets import MEDIA_DIR, SAMPLE_VIDEO

            files.append(("the sample video", os.path.join(MEDIA_DIR, SAMPLE_VIDEO)))
    if config_path:
        files.append(("the config", config_path))
    if config.model.weights:
        files.append(("the weights", config.model.weights))
    return files, folders


def _outputs(config: Config) -> List[Tuple[str, str]]:
    """(what, path) of every file the run writes, derived for each source exactly as the pipeline derives them
    (wiring.per_source_path), so the two cannot drift apart."""
    from .input_recorder import sidecar_path
    from .run_folder import LOCK_FILE, RUNS_DIR
    from .wiring import per_source_path

    out = config.output
    sources, several = _sources(config)
    # a new numbered folder under runs/ holds nothing yet; --out and --exist-ok reuse one that may
    folder = out.out_dir or (os.path.join(RUNS_DIR, out.name) if out.exist_ok else None)
    where = "--out's" if out.out_dir else "the run folder's"
    names = OUT_DIR_FILES + (LOCK_FILE,) + (("annotated.mp4",) if out.save and not out.record and not several else ())
    outputs = [("%s %s" % (where, name), os.path.join(folder, name)) for name in names] if folder else []
    if out.record and several and not out.mosaic:
        outputs += [("source %s's --record file" % s.name, per_source_path(out.record, s.name)) for s in sources]
    elif out.record:
        outputs.append(("--record", out.record))
    if out.save_input:
        pairs = [("source %s's --save-input file" % s.name, per_source_path(out.save_input, s.name))
                 for s in sources] if several else [("--save-input", out.save_input)]
        for what, path in pairs:
            outputs += [(what, path), (what.replace(" file", " sidecar"), sidecar_path(path))]
    return outputs


def check_output_paths(config: Config, config_path: Optional[str] = None) -> None:
    """OutputError (exit 2, nothing written) when an output would overwrite an input or another output."""
    files, folders = _inputs(config, config_path)
    outputs = _outputs(config)
    for n, (what, path) in enumerate(outputs):
        for input_what, input_path in files:
            if _same(path, input_path):
                raise OutputError("%s %s is %s (%s); it would be overwritten: choose another output path"
                                  % (what, path, input_what, input_path))
        for folder_what, folder in folders:
            if _inside(path, folder) and os.path.isfile(path):
                raise OutputError("%s %s is a file of %s, the folder %s; it would be overwritten: choose another "
                                  "output path" % (what, path, folder_what, folder))
        for other_what, other in outputs[n + 1:]:
            if _same(path, other):
                raise OutputError("%s %s and %s %s are the same file; give each output its own path"
                                  % (what, path, other_what, other))
