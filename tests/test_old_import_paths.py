"""The module paths from before the package was grouped into folders (issue 19) import for one more release:
each with a DeprecationWarning that names its new path, as the very module of the new path, with every public
name the old module had. The package itself never uses an old path."""

import importlib
import re
import subprocess
import sys
import warnings

import pytest

import anynet_search
from anynet_search.study import process_health, reaper, worker

# old module -> (its new path, the public names it had: its __all__, else its top-level definitions)
OLD_PATHS = {
    "blocks": ("models.blocks", "CifarStem Head ResBasicBlock ResStem Shortcut SimpleStem SqueezeExcite "
                                "VanillaBlock XBlock conv_bn"),
    "complexity": ("models.complexity", "Complexity complexity complexity_arrays largest_activation"),
    "config": ("models.config", "AnyNetConfig STAGE_FIELDS load_config save_config"),
    "counts": ("models.counts", "Counts conv_counts res_basic_block_counts vanilla_block_counts "
                                "x_block_counts"),
    "describe": ("models.describe", "describe_config resolve_config"),
    "model": ("models.model", "AnyNet build_model init_weights stage_blocks"),
    "registry": ("models.registry", "BLOCKS BLOCK_ARGS BlockType STEMS StemType block_type is_grouped "
                                    "register_block register_stem stem_type unregister"),
    "regnet": ("models.regnet", "QUANTUM RegNetFit adjust_compatibility check_regnet_params fit_regnet "
                                "regnet regnet_block_widths stages_from_block_widths"),
    "regnet_targets": ("models.regnet_targets", "RULES RegNetSolution StageLayout TARGETS block_widths "
                                                "compatible find_params layout_of stage_layout"),
    "rules": ("models.rules", "QUANTUM STAGE_COLUMNS STAGE_FAMILIES block_widths bottleneck_width "
                              "compatible conv_out quantized_widths se_width"),
    "zoo": ("models.zoo", "REGNET_PARAMS regnet_zoo"),
    "augment": ("training.augment", "augment_batch"),
    "data": ("training.data", "DEFAULT_SYNTHETIC_N DataSplits DatasetError IMAGE_EXTENSIONS TEST_FRACTION "
                              "dataset_names load_dataset synthetic_images"),
    "memory": ("training.memory", "EVAL_BUFFERS FP32_BYTES MemoryEstimate ModelTooLarge PARAM_COPIES "
                                  "SAVED_BYTES_PER_ACT check_fits check_space_fits config_memory "
                                  "estimate_memory free_memory human_bytes space_memory_range "
                                  "too_large_reason"),
    "train": ("training.train", "DIVERGENCE_CHECK_EVERY DivergedError OutOfMemoryError TrainConfig "
                                "TrainResult TrialFailure evaluate lr_at make_generator param_groups "
                                "plan_batches seed_everything train"),
    "analyze": ("reporting.analyze", "ReportFigure ReportSummary StudyReport analyze_runs"),
    "export": ("reporting.export", "FORMATS REGNET_FIT_THRESHOLD RegNetParams config_from_row configs_for "
                                   "export_run export_top fixed_fields pycls_config regnet_params"),
    "plots": ("reporting.plots", "DEFAULT_BINS block_widths_of common_range edf_weights history_of "
                                 "plot_block_widths plot_complexity_hist plot_edfs plot_error_vs_flops "
                                 "plot_error_vs_param plot_history plot_split_edf plot_validation_curves"),
    "report": ("reporting.report", "ERROR_NOTE render_report"),
    "results": ("reporting.results", "RunData STAGE_PREFIXES display_run histories_frame load_results "
                                     "load_run open_run resolve_run space_of trials_frame"),
    "status": ("reporting.status", "study_status"),
    # renamed in issue 30 (the `plan` command plans power; this module holds a study's settings and tickets)
    "study.plan": ("study.settings", "EDF_SAMPLERS INFEASIBLE_ATTR INFEASIBLE_VALUE SETTINGS_ATTR SETTINGS_FORMAT "
                                     "SettingsError StudySettings enqueue_ticket is_trained make_pruner "
                                     "make_sampler planned_params planned_sample planned_tickets stored_settings "
                                     "stream_seed ticket_attrs train_seed"),
}
# the public names of study/worker.py before its dead-worker half moved to study/reaper.py (and its process
# helpers to study/process_health.py)
WORKER_NAMES = ("DIED DeviceLost FAILURE_STREAK FULL_COLLECT_EVERY HEARTBEAT_SECONDS IDLE_REAP_SECONDS "
                "INFEASIBLE_STREAK INTERRUPTED MAX_DEATHS MAX_IDLE_POLL Objective REAP_SECONDS REQUEUED "
                "STALE_SECONDS StudyFailing Worker WorkerSummary counts_as_failure death_reason "
                "load_worker_study pid_alive poisons_device raised_at release_memory resolve_objective "
                "run_worker").split()
LEFT_WORKER = {**dict.fromkeys("DIED HEARTBEAT_SECONDS MAX_DEATHS STALE_SECONDS death_reason pid_alive".split(),
                               reaper),
               "FULL_COLLECT_EVERY": process_health}


def deprecation(old: str, new: str) -> str:
    """The warning's message, as a pattern."""
    return rf"^{re.escape(old)} is deprecated and will be removed in the next release; use {re.escape(new)}$"


@pytest.mark.parametrize("stem", sorted(OLD_PATHS))
def test_an_old_module_path_warns_and_is_the_new_module_with_every_old_name(stem, monkeypatch):
    old, (new_stem, names) = f"anynet_search.{stem}", OLD_PATHS[stem]
    new = f"anynet_search.{new_stem}"
    monkeypatch.delitem(sys.modules, old, raising=False)  # import it afresh: the warning comes with it
    with pytest.warns(DeprecationWarning, match=deprecation(old, new)) as caught:
        module = importlib.import_module(old)
    assert all(w.filename == __file__ for w in caught)  # blamed on the importing line, not the import system
    new_module = importlib.import_module(new)
    assert module is new_module and sys.modules[old] is new_module
    assert module.__name__ == module.__spec__.name == new  # the new module's identity is untouched
    for name in names.split():
        namespace: dict = {}
        exec(f"from {old} import {name}", namespace)  # the statement users wrote
        assert namespace[name] is getattr(new_module, name), name


def test_monkeypatching_the_old_path_patches_the_new_module(monkeypatch):
    with warnings.catch_warnings():  # warned when first imported (above, or in this test when run alone)
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("anynet_search.train")
    from anynet_search.training import train as new

    monkeypatch.setattr(old, "lr_at", lambda *a: 0.0)
    assert new.lr_at(0, 10, 0, 1.0) == 0.0


def test_importing_an_old_path_keeps_the_package_function_of_the_same_name(monkeypatch):
    for stem in ("complexity", "regnet"):
        monkeypatch.delitem(sys.modules, f"anynet_search.{stem}", raising=False)
        with pytest.warns(DeprecationWarning):
            importlib.import_module(f"anynet_search.{stem}")
        assert callable(getattr(anynet_search, stem))  # the function, not the module


@pytest.mark.parametrize("name", WORKER_NAMES)
def test_every_name_of_the_old_worker_module_still_imports_from_it(name):
    if name in LEFT_WORKER:
        home = LEFT_WORKER[name]
        with pytest.warns(DeprecationWarning, match=deprecation(f"{worker.__name__}.{name}",
                                                                f"{home.__name__}.{name}")):
            value = getattr(worker, name)
        assert value is getattr(home, name)
    else:
        assert getattr(worker, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        worker.nope  # noqa: B018


def test_a_script_is_warned_at_its_import_line_and_the_package_uses_no_old_path():
    code = "import anynet_search\nimport anynet_search.train\n"
    err = subprocess.run([sys.executable, "-W", "default::DeprecationWarning", "-c", code],
                         capture_output=True, text=True, check=True).stderr
    assert "<string>:2: DeprecationWarning: anynet_search.train is deprecated" in err
    assert err.count("DeprecationWarning") == 1
    # every module of the new layout imports without touching an old path
    code = ("import pkgutil, importlib, anynet_search\n"
            "for m in pkgutil.walk_packages(anynet_search.__path__, 'anynet_search.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        module = importlib.import_module(m.name)\n"
            "        for name in getattr(module, '__all__', ()): getattr(module, name)\n")  # lazy names too
    subprocess.run([sys.executable, "-W", "error:anynet_search.:DeprecationWarning", "-c", code], check=True)
