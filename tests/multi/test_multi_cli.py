"""Several --source flags on the command line: the multi-source run end to end, and its user errors."""
import json
import os

from jetcam_app.cli import main


def test_several_sources_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--source", "test://320x240@30?frames=3", "--source", "test://320x240@30?frames=2",
                 "--model", "mobilenet_v2", "--random-weights", "--headless", "--threads", "1", "--out", str(out),
                 "--record", str(out / "rec.mp4")])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "all 2 sources real-time" in stdout and "  test0: 3 processed" in stdout and "  test1: 2 processed" in stdout
    summary = json.load(open(str(out / "summary.json")))
    assert {n: s["frames"]["processed"] for n, s in summary["sources"].items()} == {"test0": 3, "test1": 2}
    assert os.path.getsize(str(out / "rec_test0.mp4")) > 0 and os.path.getsize(str(out / "rec_test1.mp4")) > 0
    lines = [json.loads(line) for line in open(str(out / "predictions.jsonl"))]
    assert sorted((r["source"], r["frame"]) for r in lines) == [("test0", 0), ("test0", 1), ("test0", 2),
                                                                  ("test1", 0), ("test1", 1)]


def test_bad_sources_entry_is_one_line_exit_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("sources:\n  - {uri: 'test://', fsp: 5}\n  - test://\n")
    code = main(["--config", str(config), "--headless", "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code == 2 and "unknown key 'fsp' in sources[0]" in err and len(err.strip().splitlines()) == 1
