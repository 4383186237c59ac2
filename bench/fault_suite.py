"""The fault suite of issue 18: runs the test of every failure class and prints a table of class -> tests -> outcome.

    python bench/fault_suite.py [--json faults.json]

GStreamer tests run in a pytest process of their own (as in CI). Exit code 0 when no test failed.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# class -> pytest node ids (a node id may name a whole file or a test and its parameters)
CLASSES = collections.OrderedDict([
    ("1 disk full (recording, logs, summary)", ["tests/output/test_disk_full.py"]),
    ("2 outputs colliding with inputs", ["tests/test_fault_inputs.py::test_outputs_never_overwrite_inputs_or_each_other"]),
    ("3 SIGINT/SIGTERM/SIGHUP stop the app cleanly", ["tests/test_pipeline.py::test_signal_stops_cleanly"]),
    ("4 run.py bench on SIGTERM/SIGHUP", ["tests/bench/test_bench_signals.py"]),
    ("5 damaged video", ["tests/sources/test_source_faults.py::test_damage_in_the_middle_is_skipped_and_counted_not_taken_for_the_end",
                         "tests/sources/test_source_faults.py::test_damage_to_the_end_stops_naming_the_frame_and_the_loss",
                         "tests/sources/test_source_faults.py::test_summary_of_a_damaged_video_run_counts_the_lost_frames"]),
    ("6 damaged image folder", ["tests/sources/test_source_faults.py::test_unreadable_image_in_a_folder_is_skipped_counted_and_the_rest_read",
                                "tests/sources/test_source_faults.py::test_a_single_unreadable_image_is_still_an_error"]),
    ("7 errors name the real cause", ["tests/test_fault_inputs.py::test_tiny_image_record_error_names_the_encoder_minimum_and_the_summary_says_error"]),
    ("8 finite --gst pipeline ends, live ones reconnect", [
        "tests/sources/test_gstreamer.py::test_end_of_a_finite_pipeline_is_the_end_not_a_disconnect",
        "tests/sources/test_gstreamer.py::test_a_disconnect_reconnects_then_stops_cleanly"]),
    ("9 damaged or foreign ONNX cache", ["tests/inference/test_cache_safety.py::test_damaged_or_foreign_onnx_cache_is_exported_again_with_a_warning"]),
    ("10 private fallback folder, planted files", [
        "tests/inference/test_cache_safety.py::test_unwritable_cache_falls_back_to_a_private_folder",
        "tests/inference/test_cache_safety.py::test_planted_fallback_folder_is_refused",
        "tests/inference/test_cache_safety.py::test_engine_cache_refuses_engines_writable_by_everyone"]),
    ("11 torch2trt cache without unpickling", ["tests/inference/test_cache_safety.py::test_torch2trt_state_round_trips_as_plain_data_and_pickles_are_refused"]),
    ("12 weight shards outside the model folder", ["tests/inference/test_tfjs_manifest.py"]),
    ("13 one-line errors (configs, weights, FIFO, sizes)", [
        "tests/test_fault_inputs.py::test_bad_input_is_one_line_and_exit_2",
        "tests/test_fault_inputs.py::test_last_line_of_defence_turns_oserror_into_one_line",
        "tests/sources/test_source_faults.py::test_a_fifo_is_refused_instead_of_blocking"]),
    ("14 values out of range, NaN scores", [
        "tests/test_fault_inputs.py::test_bad_input_is_one_line_and_exit_2",
        "tests/test_fault_inputs.py::test_nan_scores_are_written_as_valid_json_null_with_a_warning"]),
    # the issue "Nothing destroyed, nothing leaked, nothing hangs"
    ("15 several sources' outputs against every input and output", [
        "tests/test_fault_paths.py::test_several_sources_outputs_never_overwrite_inputs_or_each_other",
        "tests/test_fault_paths.py::test_distinct_outputs_of_several_sources_pass"]),
    ("16 a run folder held by one run", ["tests/test_fault_paths.py::test_a_run_folder_is_held_by_one_run_and_free_again_after_sigkill"]),
    ("17 special files (FIFOs, sockets, devices)", [
        "tests/test_fault_files.py::test_a_fifo_in_an_image_folder_is_skipped_with_a_warning_and_the_run_ends",
        "tests/test_fault_files.py::test_a_fifo_in_a_folder_does_not_hold_up_the_other_sources",
        "tests/test_fault_files.py::test_a_special_file_as_source_or_config_is_one_line_naming_it"]),
    ("18 config bombs", [
        "tests/test_fault_files.py::test_config_bombs_end_in_one_short_line_under_an_address_space_limit",
        "tests/test_fault_files.py::test_an_alias_is_refused_even_where_it_would_be_harmless",
        "tests/test_fault_files.py::test_values_echoed_in_config_errors_are_cut_short"]),
    ("19 unbounded sizes", [
        "tests/test_fault_bounds.py::test_max_batch_beyond_the_cap_is_one_line_naming_the_key_and_the_cap",
        "tests/test_fault_bounds.py::test_more_sources_than_the_cap_is_one_line_naming_the_key_and_the_cap",
        "tests/test_fault_bounds.py::test_eager_warm_up_runs_the_padded_sizes_only",
        "tests/test_fault_bounds.py::test_one_frame_at_a_time_warms_up_nothing"]),
    ("20 sources: entries range-checked", [
        "tests/test_fault_bounds.py::test_every_bounded_source_key_has_an_out_of_range_case",
        "tests/test_fault_bounds.py::test_each_sources_entry_key_out_of_range_is_one_line_naming_sources_i_key",
        "tests/test_fault_bounds.py::test_the_source_section_keeps_its_name_and_is_inherited_checked"]),
    ("21 image bombs, cut-short images, GIFs", [
        "tests/test_fault_files.py::test_an_image_over_the_megapixel_cap_is_skipped_from_its_header_with_a_warning",
        "tests/test_fault_files.py::test_source_max_image_mp_sets_the_cap_and_a_lone_image_over_it_is_one_line",
        "tests/test_fault_files.py::test_a_cut_short_image_in_a_folder_is_counted_as_damaged_not_saved",
        "tests/test_fault_files.py::test_a_lone_cut_short_jpeg_is_one_line",
        "tests/test_fault_files.py::test_gifs_in_a_folder_are_named_in_one_warning",
        "tests/test_fault_files.py::test_a_folder_of_gifs_only_says_so",
        "tests/test_fault_files.py::test_header_sizes_match_what_opencv_decodes",
        "tests/test_fault_files.py::test_a_jpeg_with_a_thumbnail_and_trailing_bytes_is_complete"]),
    ("22 RTSP credentials and the web token masked", [
        "tests/test_fault_secrets.py::test_mask_secrets_hides_passwords_and_tokens_only",
        "tests/test_fault_secrets.py::test_an_unreachable_rtsp_source_shows_its_password_nowhere",
        "tests/test_fault_secrets.py::test_a_token_from_the_environment_shows_nowhere",
        "tests/test_fault_secrets.py::test_the_token_from_a_file_or_the_environment_and_help_that_points_away_from_ps",
        "tests/test_fault_secrets.py::test_a_working_rtsp_run_masks_the_password_on_the_page_and_in_every_file"]),
    ("23 the RTSP advice is true", [
        "tests/test_fault_secrets.py::test_the_rtsp_advice_followed_literally_sends_tcp_and_keeps_the_option_from_the_server"]),
    ("24 source names need a letter or digit", [
        "tests/test_fault_paths.py::test_a_source_name_needs_a_letter_or_digit",
        "tests/test_fault_paths.py::test_names_with_a_letter_or_digit_and_dots_still_pass"]),
    ("25 odd frame sizes recorded whole", [
        "tests/test_fault_bounds.py::test_odd_sized_input_is_recorded_whole_padded_to_even"]),
    ("26 a dead bench's leftovers", ["tests/test_fault_killed.py::test_what_a_dead_bench_left_is_removed_when_the_next_one_starts"]),
    ("27 summary rebuilt after kill -9", [
        "tests/test_fault_killed.py::test_a_killed_runs_summary_is_rebuilt_from_its_logs",
        "tests/test_fault_killed.py::test_summary_of_a_folder_without_logs_is_one_line"]),
])


def run_pytest(node_ids, xml_path: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", xml_path]
                   + sorted(set(node_ids)), cwd=ROOT, env=env)


def outcomes(xml_path: str):
    """'file::name[params]' -> passed / failed / skipped."""
    result = {}
    if not os.path.exists(xml_path):
        return result
    for case in ElementTree.parse(xml_path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed"
            elif child.tag == "skipped":
                status = "skipped"
        result["%s::%s" % (module, case.get("name"))] = status
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="also write the table here")
    args = p.parse_args()
    nodes = [n for ids in CLASSES.values() for n in ids]
    gst = [n for n in nodes if "test_gstreamer" in n]
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, group in (("main", [n for n in nodes if n not in gst]), ("gst", gst)):
            path = os.path.join(tmp, name + ".xml")
            run_pytest(group, path)
            found.update(outcomes(path))
    table = []
    for cls, ids in CLASSES.items():
        cases = {k: v for k, v in found.items() if any(k == i or k.startswith(i + "[") or
                                                         (i.endswith(".py") and k.startswith(i + "::")) for i in ids)}
        counts = collections.Counter(cases.values())
        outcome = ("FAILED" if counts["failed"] else "not run" if not cases else
                   "ok" if not counts["skipped"] else "ok (%d skipped)" % counts["skipped"])
        table.append({"class": cls, "tests": len(cases), "passed": counts["passed"], "outcome": outcome})
    width = max(len(r["class"]) for r in table)
    print("\n%-*s  %5s  %s" % (width, "class", "tests", "outcome"))
    for row in table:
        print("%-*s  %5d  %s" % (width, row["class"], row["tests"], row["outcome"]))
    print("15 HTTP request timeouts and bounded clients: covered with the HTTP server rewrite (issue 16)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=2)
    return 1 if any(r["outcome"] in ("FAILED", "not run") for r in table) else 0


if __name__ == "__main__":
    raise SystemExit(main())
