"""`approxtrain bench --section int_core`: the integer GEMM against NumPy, with core_cpu's
--shapes and --repeats reaching it."""

import json

from approxtrain import cli


def test_int_core_section_rows(tmp_path, capsys):
    out = tmp_path / "rows.json"
    argv = ["bench", "--section", "int_core", "--shapes", "40x24x16,3x200x8", "--repeats", "1", "--json", str(out)]
    assert cli.main(argv) == 0
    rows = json.loads(out.read_text())
    assert [r["shape"] for r in rows] == ["40x24x16", "3x200x8"]
    assert all(r["section"] == "int_core" and r["int_ms"] > 0 and r["numpy_ms"] > 0 for r in rows)
    assert rows[0]["path"] == "direct"  # the cost rule's choice for a small GEMM
    assert "[int_core] int_matmul MxNxK" in capsys.readouterr().out
