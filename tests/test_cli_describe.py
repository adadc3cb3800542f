"""`anynet-search describe` prints the per-stage table and complexity; bad input -> one line, exit 2."""

import subprocess
import sys

from anynet_search import regnet_zoo, save_config
from anynet_search.cli import main


def test_describe_published_model(capsys):
    assert main(["describe", "RegNetX-400MF"]) == 0
    out = capsys.readouterr().out
    assert "flops: 397,678,568" in out and "params: 5,157,512" in out and "acts: 3,143,272" in out
    assert "out_res" in out and len(out.splitlines()) == 2 + 4 + 1


def test_describe_config_file_at_resolution(tmp_path, capsys):
    path = save_config(regnet_zoo()["RegNetY-200MF"].replace(num_classes=10), tmp_path / "m.json")
    assert main(["describe", str(path), "--resolution", "32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].split()[-1] == "1"  # 32 px -> stem 16 -> stages 8, 4, 2, 1


def test_describe_bad_name_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "anynet_search", "describe", "RegNetZ-9GF"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "RegNetZ-9GF" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("depths: [1]\n")
    proc = subprocess.run([sys.executable, "-m", "anynet_search", "describe", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr and proc.stderr.count("\n") == 1
