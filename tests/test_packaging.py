"""A normal (non-editable) install ships the design spaces; they are read through importlib.resources.

Regression tests for issue 10: a wheel had no YAML (the spaces lay outside the package and were looked
up two folders above the module), so `list_spaces()` returned [] and the README's main job failed.
`.ci/run` also installs the wheel into a clean venv and runs the main job outside the checkout.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import anynet_search
from anynet_search.spaces import bundled_dir

ROOT = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".ci-venv", ".bench-venv", "runs", "build", "dist",
                                     "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis")


def test_top_level_api_lists_and_loads_spaces():
    names = anynet_search.list_spaces()
    assert {"anynet_xa", "anynet_xe_tiny", "regnet_y_cifar"} <= set(names)
    space = anynet_search.load_space("anynet_xb_tiny")  # extends anynet_xa_tiny, which extends anynet_xa
    assert isinstance(space, anynet_search.DesignSpace) and space.resolution == 16
    assert {"list_spaces", "load_space", "DesignSpace"} <= set(anynet_search.__all__)


def test_spaces_live_in_the_package_and_search_spaces_is_that_folder():
    package_dir = Path(anynet_search.__file__).parent / "search_spaces"
    assert Path(str(bundled_dir())).resolve() == package_dir.resolve()
    top = ROOT / "search_spaces"  # the user-visible place in a checkout
    assert top.resolve() == package_dir.resolve()
    assert sorted(p.stem for p in top.glob("*.yaml")) == anynet_search.list_spaces()


def test_wheel_ships_every_space_and_works_from_the_zip(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=COPY_IGNORE)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("anynet_search-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("anynet_search/search_spaces/")}
    assert {f"anynet_search/search_spaces/{n}.yaml" for n in anynet_search.list_spaces()} == shipped
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = "anynet_search/reporting/templates"
    assert {f"{templates}/report.html.j2", f"{templates}/report.css"} <= names

    # imported straight from the wheel (zipimport): no file system path for the spaces, only importlib.resources
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import anynet_search as a; "
            "assert a.__file__.startswith(sys.argv[1]), a.__file__; "
            "s = a.load_space('anynet_xe_tiny'); print(len(a.list_spaces()), s.name, f'{s.log10_size:.2f}')")
    out = subprocess.run([sys.executable, "-c", code, str(wheel)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == [str(len(anynet_search.list_spaces())), "anynet_xe_tiny",
                   f"{anynet_search.load_space('anynet_xe_tiny').log10_size:.2f}"]

    # the report's template and CSS load from the zip too (importlib.resources, no file system path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import anynet_search.reporting.report as r; "
            "assert r.__file__.startswith(sys.argv[1]), r.__file__; t = r._template(); "
            "print('table.verdicts' in str(t.globals['css']))")
    out = subprocess.run([sys.executable, "-c", code, str(wheel)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["True"]
