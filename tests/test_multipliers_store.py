"""The user store under stress: concurrent registrations, damaged and copied tables, models that end
the build process, build time limits, and the format versions of .amlut tables and AM layer configs
(issue 19: nothing lost, nothing silent).  Every test uses its own APPROXTRAIN_HOME."""

import hashlib
import multiprocessing
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from approxtrain import multipliers
from approxtrain.cli import main
from approxtrain.multipliers import (
    AlreadyRegisteredError,
    DamagedTableError,
    ModelError,
    UnknownMultiplierError,
    builder,
    registry,
    table_file,
)
from store_helpers import registry_files

ROOT = Path(__file__).resolve().parents[1]


def exact(a, b):
    return a * b


def exact_entries(m):
    """The table of the exact product, computed here: 1.ia x 1.ib, carry and top 15 fraction bits."""
    i = np.arange(1 << m)
    r = np.multiply.outer(1 + i / 2**m, 1 + i / 2**m).ravel()  # exact in float64 for M <= 11
    carry = (r >= 2).astype(np.uint32)
    frac = r / (1 + carry) - 1
    return ((carry << 15) | np.floor(frac * 2**15).astype(np.uint32)).astype(np.uint16)


# --- concurrent registrations -----------------------------------------------------------------


def _source(i):
    return f"/* writer {i} */\nfloat same(float a, float b) {{ return a * b; }}\n"


def _install_after_barrier(barrier, i, overwrite, results):
    """One writer: builds its registration, waits for the others, then installs it (all at once)."""
    header = table_file.TableHeader(
        "same", 4, "truncate", "same", f"writer {i}", hashlib.sha256(_source(i).encode()).digest()
    )
    entries = exact_entries(4)
    barrier.wait()
    try:
        registry._install("same", header, entries, (".c", _source(i).encode()), overwrite=overwrite)
        results.put((i, "ok"))
    except AlreadyRegisteredError as e:
        results.put((i, str(e)))


def _race(home, overwrite, writers=4):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_install_after_barrier, args=(barrier, i, overwrite, results)) for i in range(writers)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return outcome


def assert_one_consistent_registration(home):
    """The store holds one table and the source it was built from (the header's source SHA-256)."""
    d = home / "multipliers"
    assert registry_files(home) == ["same.amlut", "same.c"]
    header, entries = table_file.read_table(d / "same.amlut")
    source = (d / "same.c").read_bytes()
    assert header.source_sha256 == hashlib.sha256(source).digest()
    writer = int(re.match(r"writer (\d+)", header.description).group(1))
    assert source.decode() == _source(writer)
    np.testing.assert_array_equal(entries, exact_entries(4))
    return writer


def test_concurrent_new_registrations_one_wins_the_rest_are_told(home):
    outcome = _race(home, overwrite=False)
    winners = [i for i, r in outcome.items() if r == "ok"]
    assert len(winners) == 1
    path = home / "multipliers" / "same.amlut"
    for i, message in outcome.items():
        if i not in winners:
            assert message == (
                f"multiplier 'same' is already registered ({path}); unregister it first or pass overwrite=True"
            )
    assert assert_one_consistent_registration(home) == winners[0]


def test_concurrent_forced_registrations_leave_one_table_with_its_own_source(home):
    outcome = _race(home, overwrite=True)
    assert set(outcome.values()) == {"ok"}
    assert_one_consistent_registration(home)


def test_two_cli_adds_of_one_name_at_once(home, tmp_path):
    sources = []
    for i in range(2):
        sources.append(tmp_path / f"model{i}.c")
        sources[-1].write_text(_source(i))
    env = dict(os.environ, APPROXTRAIN_HOME=str(home))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "approxtrain",
                "multipliers",
                "add",
                "same",
                str(c),
                "-m",
                "4",
                "--description",
                f"writer {i}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, c in enumerate(sources)
    ]
    runs = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    path = home / "multipliers" / "same.amlut"
    assert sorted(rc for rc, _, _ in runs) == [0, 2]
    winner = next(i for i, (rc, _, _) in enumerate(runs) if rc == 0)
    loser = runs[1 - winner]
    assert runs[winner][1] == f"registered same: M=4, rounding=truncate, 256 entries -> {path}\n"
    assert loser[1] == ""
    assert loser[2] == (
        f"approxtrain multipliers: error: multiplier 'same' is already registered ({path}); "
        "remove it first ('approxtrain multipliers remove same') or add --force to replace it\n"
    )
    assert assert_one_consistent_registration(home) == winner


def test_cli_add_of_a_taken_name_names_force(home, tmp_path, capsys):
    c = tmp_path / "good.c"
    c.write_text(_source(0).replace("same", "good"))
    assert main(["multipliers", "add", "good", str(c), "-m", "3"]) == 0
    capsys.readouterr()
    assert main(["multipliers", "add", "good", str(c), "-m", "3"]) == 2
    path = home / "multipliers" / "good.amlut"
    assert capsys.readouterr().err == (
        f"approxtrain multipliers: error: multiplier 'good' is already registered ({path}); remove it first "
        "('approxtrain multipliers remove good') or add --force to replace it\n"
    )
    assert main(["multipliers", "add", "good", str(c), "-m", "4", "--force"]) == 0
    assert multipliers.get("good").mantissa_bits == 4


def test_publishing_a_new_name_never_replaces_a_file(tmp_path):
    path = tmp_path / "t.amlut"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        table_file.publish_new_bytes(path, b"second")
    assert path.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["t.amlut"]  # no temporary file left behind
    table_file.publish_new_bytes(tmp_path / "u.amlut", b"new")
    assert sorted(os.listdir(tmp_path)) == ["t.amlut", "u.amlut"]
    assert (tmp_path / "u.amlut").read_bytes() == b"new"


# --- damaged tables: the damage is the message --------------------------------------------------


def _truncate(data):
    return data[:-10]


def _flip_entry(data):
    data[-1] ^= 1
    return data


def _flip_magic(data):
    data[0] ^= 1
    return data


def _newer_version(data):
    data[6:8] = (2).to_bytes(2, "little")
    return data


DAMAGES = {
    "truncated": (_truncate, "truncated table file: mantissa_bits=4 needs 256 entries (512 bytes), found 502 bytes"),
    "bit flip": (_flip_entry, "checksum mismatch: the table entries are corrupted; rebuild or re-register it"),
    "bad magic": (_flip_magic, "not an approxtrain table (bad magic b'@MLUT\\x00', expected b'AMLUT\\x00')"),
    "newer version": (
        _newer_version,
        "table format version 2 is not supported: the file was written by a newer "
        "approxtrain (this one reads version 1); upgrade approxtrain, or rebuild "
        "the table with this one",
    ),
}


def damage(path, how):
    path.write_bytes(bytes(how(bytearray(path.read_bytes()))))


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_a_damaged_user_table_says_what_is_wrong(home, case):
    how, reason = DAMAGES[case]
    multipliers.register("good", exact, mantissa_bits=4)
    path = home / "multipliers" / "good.amlut"
    np.testing.assert_array_equal(multipliers.get("good").lut, exact_entries(4))
    damage(path, how)
    with pytest.raises(DamagedTableError) as e:
        multipliers.get("good")
    assert str(e.value) == f"{path}: {reason}"
    assert (e.value.path, e.value.reason) == (path, reason)
    assert not isinstance(e.value, UnknownMultiplierError)

    from approxtrain import ops

    x = np.ones((2, 2), np.float32)
    with pytest.raises(DamagedTableError) as e:
        ops.matmul(x, x, "good")
    assert str(e.value) == f"{path}: {reason}"


def test_list_shows_a_damaged_table_and_every_other(home, capsys):
    multipliers.register("good", exact, mantissa_bits=4, description="exact, 4 bits")
    multipliers.register("zz_good", exact, mantissa_bits=3, description="exact, 3 bits")
    path = home / "multipliers" / "good.amlut"
    damage(path, _flip_entry)
    assert main(["multipliers", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        rf"^good\s+\?\s+\?\s+DAMAGED\s+{re.escape(str(path))}: checksum mismatch: the table entries "
        r"are corrupted; rebuild or re-register it$",
        out,
        re.M,
    )
    assert re.search(r"^zz_good\s+3\s+truncate\s+user\s+exact, 3 bits$", out, re.M)
    assert re.search(r"^mbm7\s+7\s+truncate\s+shipped\s+minimally biased", out, re.M)
    damage(path, _flip_magic)  # a header damage, too, is a row
    assert main(["multipliers", "list"]) == 0
    assert re.search(r"^good\s+\?\s+\?\s+DAMAGED\s+.*not an approxtrain table", capsys.readouterr().out, re.M)


def test_a_copied_table_is_not_a_second_multiplier(home, capsys):
    multipliers.register("good", exact, mantissa_bits=4)
    d = home / "multipliers"
    shutil.copy(d / "good.amlut", d / "other.amlut")
    reason = (
        "the file holds the table of multiplier 'good', not 'other' (a copied or renamed table file?): "
        "rename it back to good.amlut, or register the model again as 'other'"
    )
    with pytest.raises(DamagedTableError) as e:
        multipliers.get("other")
    assert str(e.value) == f"{d / 'other.amlut'}: {reason}"
    assert multipliers.get("good").name == "good"
    assert main(["multipliers", "list"]) == 0
    assert re.search(
        rf"^other\s+\?\s+\?\s+DAMAGED\s+{re.escape(str(d / 'other.amlut'))}: the file holds the table "
        "of multiplier 'good', not 'other'",
        capsys.readouterr().out,
        re.M,
    )


def test_an_unknown_name_is_its_own_error(home):
    with pytest.raises(UnknownMultiplierError, match=r"^unknown multiplier 'nope'; available: bf16, "):
        multipliers.get("nope")
    assert issubclass(UnknownMultiplierError, ValueError)  # what callers of get() and resolve() catch


@pytest.fixture
def packaged_copy(tmp_path, monkeypatch):
    """A copy of the packaged tables the registry reads, to damage."""
    tables = tmp_path / "tables"
    shutil.copytree(registry.PACKAGE_TABLES, tables)
    monkeypatch.setattr(registry, "PACKAGE_TABLES", tables)
    monkeypatch.setattr(registry, "_resolved", {})
    monkeypatch.setattr(registry, "_rejected_packaged", set())
    return tables


@pytest.mark.parametrize("case", ["truncated", "bit flip", "bad magic"])
def test_a_damaged_packaged_table_is_rebuilt_in_a_source_checkout(home, packaged_copy, case):
    original = table_file.read_table(packaged_copy / "mbm7.amlut")[1]
    damage(packaged_copy / "mbm7.amlut", DAMAGES[case][0])
    m = multipliers.get("mbm7")
    np.testing.assert_array_equal(m.lut, original)
    np.testing.assert_array_equal(table_file.read_table(home / "cache" / "tables" / "mbm7.amlut")[1], original)


def test_a_damaged_packaged_table_and_a_damaged_cache_entry_are_rebuilt_at_once(home, packaged_copy):
    original = table_file.read_table(packaged_copy / "mbm7.amlut")[1]
    cached = home / "cache" / "tables" / "mbm7.amlut"
    cached.parent.mkdir(parents=True)
    shutil.copy(packaged_copy / "mbm7.amlut", cached)
    damage(packaged_copy / "mbm7.amlut", _flip_entry)
    damage(cached, _truncate)
    np.testing.assert_array_equal(multipliers.get("mbm7").lut, original)
    np.testing.assert_array_equal(table_file.read_table(cached)[1], original)


def test_a_packaged_table_copied_over_another_is_rebuilt(home, packaged_copy):
    original = table_file.read_table(packaged_copy / "mbm7.amlut")[1]
    shutil.copy(packaged_copy / "mbm5.amlut", packaged_copy / "mbm7.amlut")  # same source file, mbm.c
    m = multipliers.get("mbm7")
    assert (m.name, m.mantissa_bits) == ("mbm7", 7)
    np.testing.assert_array_equal(m.lut, original)


def test_a_damaged_packaged_table_without_sources_says_so(home, packaged_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "SOURCE_DIR", tmp_path / "no_sources")  # an installed package
    path = packaged_copy / "mbm7.amlut"
    damage(path, _flip_entry)
    with pytest.raises(DamagedTableError) as e:
        multipliers.get("mbm7")
    assert str(e.value) == f"{path}: {DAMAGES['bit flip'][1]}"


# --- models that end the build, time limits --------------------------------------------------------


@pytest.mark.parametrize("status", [0, 3])
def test_a_model_that_exits_gets_its_own_message(home, tmp_path, status):
    c = tmp_path / "quit.c"
    c.write_text(f"#include <stdlib.h>\nfloat quit(float a, float b) {{ exit({status}); return a * b; }}\n")
    with pytest.raises(ModelError) as e:
        multipliers.register("quit", c, mantissa_bits=3)
    assert str(e.value) == (
        f"the model quit ({c}) ended the build process (exit status {status}) while its table "
        "was built: a multiplier function must return, not exit; nothing was registered"
    )
    assert registry_files(home) == []


def test_the_default_time_limit_grows_with_the_table(home, tmp_path, monkeypatch):
    assert builder.default_build_timeout(7) == 60 + 120 * 16384 / 1e6
    assert builder.default_build_timeout(11) == 60 + 120 * 4194304 / 1e6
    monkeypatch.setattr(builder, "BUILD_TIMEOUT_BASE_S", 2)
    c = tmp_path / "spin.c"
    c.write_text("float spin(float a, float b) { for (;;) {} return a * b; }\n")
    with pytest.raises(ModelError) as e:
        multipliers.register("spin", c, mantissa_bits=2)
    assert str(e.value) == (
        f"building the table of spin ({c}) did not finish within 2.00192 s: does the model "
        "loop forever for some pair? Nothing was registered (a slow model needs a longer time "
        "limit: timeout=, --timeout on the command line)"
    )
    assert registry_files(home) == []


# --- format versions --------------------------------------------------------------------------------


def version1_bytes(name, m, entries):
    """An .amlut file of format version 1, laid out here field by field (docs/design.md), as files
    written by earlier approxtrain releases are."""
    body = entries.astype("<u2").tobytes()
    texts = b"".join(struct.pack("<H", len(t)) + t for t in (name.encode(), b"sym", b"from an earlier release"))
    return b"AMLUT\0" + struct.pack("<HBB", 1, m, 0) + texts + bytes(32) + hashlib.sha256(body).digest() + body


def test_a_version_1_table_keeps_loading(home):
    d = home / "multipliers"
    d.mkdir(parents=True)
    (d / "old.amlut").write_bytes(version1_bytes("old", 3, exact_entries(3)))
    m = multipliers.get("old")
    assert (m.name, m.mantissa_bits, m.operand_rounding, m.description) == (
        "old",
        3,
        "truncate",
        "from an earlier release",
    )
    np.testing.assert_array_equal(m.lut, exact_entries(3))
    assert table_file.READABLE_VERSIONS == (1,) and table_file.FORMAT_VERSION == 1


def test_an_older_unknown_table_version_says_what_to_do(tmp_path):
    path = tmp_path / "old.amlut"
    data = bytearray(version1_bytes("old", 3, exact_entries(3)))
    data[6:8] = (0).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedTableError) as e:
        table_file.read_table(path)
    assert str(e.value) == (
        f"{path}: table format version 0 is not supported (this approxtrain reads version 1); "
        "the file is damaged or not a table: rebuild the table"
    )


def _keras_file_with_version(saved, out, version):
    """A copy of a saved .keras file whose AM layer's config has format_version `version` (None: no key,
    as in files saved before the key existed)."""
    import json
    import zipfile

    with zipfile.ZipFile(saved) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    layer = config["config"]["layers"][-1]["config"]
    assert layer["format_version"] == 1
    if version is None:
        del layer["format_version"]
    else:
        layer["format_version"] = version
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(out, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return out


def test_keras_files_of_am_layers_carry_a_config_version(home, tmp_path):
    import keras

    from approxtrain.layers import AMDense

    model = keras.Sequential([keras.Input((3,)), AMDense(2, multiplier="mbm7", name="am")])
    saved = tmp_path / "model.keras"
    model.save(saved)
    x = np.float32([[1.5, -2.25, 3.0]])
    # a file saved before format_version existed loads as version 1, computing the same
    older = keras.saving.load_model(_keras_file_with_version(saved, tmp_path / "older.keras", None))
    np.testing.assert_array_equal(older(x).numpy(), model(x).numpy())
    assert older.layers[-1].get_config()["format_version"] == 1
    with pytest.raises(ValueError) as e:
        keras.saving.load_model(_keras_file_with_version(saved, tmp_path / "newer.keras", 2))
    assert str(e.value) == (
        "AMDense 'am': layer config format_version 2 was written by a newer approxtrain (this one "
        "reads format_version 1); upgrade approxtrain to load it"
    )
    with pytest.raises(ValueError) as e:
        AMDense.from_config(model.layers[-1].get_config() | {"format_version": "x"})
    assert str(e.value) == (
        "AMDense 'am': layer config format_version 'x' is not a known version (this approxtrain "
        "reads format_version 1); the saved model is damaged"
    )
