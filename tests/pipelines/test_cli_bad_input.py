"""Bad input on the command line: one line on stderr, the documented exit code, and the warehouse unchanged.

The property test drives every command's numeric, choice and device options
with out-of-range and malformed values (hypothesis) and asserts exit code 2,
a single ``error:`` line, nothing on stdout, and the same bytes in every file
of the warehouse. It runs ``ldw.cli.main.run`` in this process, so an example
costs milliseconds; ``LDW_FUZZ_EXAMPLES=N`` runs N examples instead of the
default few dozen. A few cases also go through the installed ``ldw`` entry point.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldw.cli.main import run
from ldw.setting_checks import MAX_COUNT
from ldw.testing import build_curves_warehouse
from ldw.train.config import MAX_SEED, MAX_VOCAB
from ldw.warehouse.lock import HOLDERS_DIR, LOCK_FILE

EXAMPLES = int(os.environ.get("LDW_FUZZ_EXAMPLES", "60"))
MALFORMED = ["", "abc", "1.5.2", "--", "0x1f", "1e3x", "nan", "ten"]
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def ldw(*args: str) -> tuple[int, str, str]:
    """Run ``ldw ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def checksum(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (catalog and Parquet files alike).

    The writer lock's files are left out: a command that takes the lock before it refuses a setting it
    can only check then (a prefix token against the tokenizer) leaves the empty lock file, which is no content.
    """
    digest = hashlib.sha256()
    lock_files = {folder / LOCK_FILE, folder / HOLDERS_DIR}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not lock_files & {p, p.parent}):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def assert_one_line_error(code: int, out: str, err: str, expected_code: int) -> None:
    assert code == expected_code, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


# --- strategies of invalid values --------------------------------------------------------------------


def bad_whole(low: int, high: int) -> st.SearchStrategy[str]:
    """Whole numbers outside [low, high] and text that is no whole number."""
    numbers = st.integers(max_value=low - 1) | st.integers(min_value=high + 1)
    return numbers.map(str) | st.sampled_from(MALFORMED) | st.floats(allow_nan=False).map(lambda x: f"{x}.5")


def bad_real(low: float, high: float, low_open: bool = False, high_open: bool = False) -> st.SearchStrategy[str]:
    """Finite numbers outside the range, nan and infinities, and text that is no number."""
    outside = st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda x: (x <= low if low_open else x < low) or (x >= high if high_open else x > high)
    )
    special = st.sampled_from(["nan", "inf", "-inf"])
    return outside.map(repr) | special | st.sampled_from([m for m in MALFORMED if m not in ("nan",)])


def bad_choice(choices: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.text(max_size=12).filter(lambda s: s not in choices)


BAD_DEVICE = st.text(max_size=10).filter(lambda s: not DEVICE.match(s))
BAD_SHARD = st.text(max_size=8).filter(
    lambda s: not (re.fullmatch(r"\d+/\d+", s) and int(s.split("/")[0]) < int(s.split("/")[1]))
)
UNIT_OPEN = (0.0, 1.0)

# command (with a {wh} / {run} / {out} placeholder) -> option -> strategy of values it must refuse
OPTIONS: dict[tuple[str, ...], dict[str, st.SearchStrategy[str]]] = {
    ("train", "--out", "{out}"): {
        "--seed": bad_whole(0, MAX_SEED),
        "--steps": bad_whole(1, MAX_COUNT),
        "--save-every": bad_whole(1, MAX_COUNT),
        "--batch-size": bad_whole(1, MAX_COUNT),
        "--seq-len": bad_whole(2, MAX_COUNT),
        "--warmup": bad_whole(0, MAX_COUNT),
        "--vocab-size": bad_whole(257, MAX_VOCAB),
        "--step-bound-iters": bad_whole(1, MAX_COUNT),
        "--lr": bad_real(0.0, math.inf, low_open=True),
        "--weight-decay": bad_real(0.0, math.inf),
        "--grad-clip": bad_real(0.0, math.inf),
        "--step-bound-tau": bad_real(0.0, math.inf),
        "--z-loss": bad_real(0.0, math.inf),
        "--min-lr-ratio": bad_real(0.0, 1.0),
        "--decay-fraction": bad_real(0.0, 1.0, low_open=True),
        "--lr-gamma": bad_real(0.0, 1.0, low_open=True),
        "--size": bad_choice(("tiny", "small", "160m")),
        "--arch": bad_choice(("gpt_neox", "llama")),
        "--device": bad_choice(("auto", "cpu", "cuda")),
        "--schedule": bad_choice(("constant", "cosine", "wsd", "multistep")),
        "--decay-shape": bad_choice(("linear", "sqrt")),
        "--lr-milestones": st.sampled_from(["a,b", "0.5,x", "1.5", "0.9,0.5", "0", "-0.1", "nan", "inf"]),
        "--est-stages": st.sampled_from(["x", "0.5:0.5", "0.5:0.5:0.5:a", "2:1:1:1", "0.5:0:1:1", "nan:1:1:1"]),
    },
    ("ingest", "{run}", "-w", "{wh}"): {
        "--tokens-per-step": bad_whole(1, MAX_COUNT),
        "--every": bad_whole(1, MAX_COUNT),
    },
    ("evalset", "-w", "{wh}"): {
        "--seq-len": bad_whole(2, MAX_COUNT),
        "--sequences": bad_whole(1, MAX_COUNT),
        "--positions": bad_whole(1, MAX_COUNT),
        "--seed": bad_whole(0, MAX_SEED),
        "--prefix-token-id": bad_whole(0, 319),  # the tiny runs' tokenizer has 320 tokens
        "--split": bad_choice(("all", "train", "heldout")),
    },
    ("sweep", "-w", "{wh}"): {
        "--batch-size": bad_whole(1, MAX_COUNT),
        "--device": BAD_DEVICE,
        "--executor": bad_choice(("local", "ray")),
        "--shard": BAD_SHARD,
        "--precision": bad_choice(("fp32", "tf32", "bf16", "fp16")),
        "--fused-head": bad_choice(("none", "liger", "cce")),
        "--prefetch": bad_whole(0, MAX_COUNT),
        "--fetch-attempts": bad_whole(1, MAX_COUNT),
    },
    ("metrics", "-w", "{wh}"): {
        "--window": bad_real(*UNIT_OPEN, low_open=True),
        "--last-k": bad_whole(0, MAX_COUNT),  # 0: no cap
        "--chunk-tokens": bad_whole(1, MAX_COUNT),
    },
    ("ngrams", "-w", "{wh}"): {
        "--split": bad_choice(("all", "train", "heldout")),
        "--heldout-fraction": bad_real(*UNIT_OPEN, low_open=True, high_open=True),
        "--max-n": bad_whole(1, 10),
    },
    ("spikes", "-w", "{wh}"): {
        "--k": bad_real(0.0, math.inf, low_open=True),
        "--window": bad_whole(2, MAX_COUNT),
        "--min-points": bad_whole(1, MAX_COUNT),
        "--merge-gap": bad_whole(0, MAX_COUNT),
        "--top-n": bad_whole(1, MAX_COUNT),
    },
    ("fit-schedule", "--run", "seed0", "-w", "{wh}"): {
        "--decay": bad_real(*UNIT_OPEN, high_open=True),
        "--fit-from": bad_real(*UNIT_OPEN, high_open=True),
        "--predict": st.sampled_from(["nosuch", "cosine:foo=1", "wsd:decay_fraction=abc", "cosine:x", "run"]),
    },
    ("probe-weights", "-w", "{wh}"): {"--sequences": bad_whole(1, MAX_COUNT), "--device": BAD_DEVICE},
    ("app", "{wh}"): {"--port": bad_whole(1, 65535)},
}
CASES = [(command, option) for command, options in OPTIONS.items() for option in options]


@st.composite
def bad_invocations(draw: st.DrawFn) -> tuple[tuple[str, ...], str, str]:
    """A command, one of its options, and a value it must refuse."""
    command, option = draw(st.sampled_from(CASES))
    return command, option, draw(OPTIONS[command][option])


@pytest.fixture(scope="module")
def target(_ingested: Path, tiny_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A copy of the ingested warehouse (with its evaluation set), a run folder, a train --out that must not appear."""
    folder = tmp_path_factory.mktemp("bad-input")
    shutil.copytree(_ingested, folder / "wh")
    return {"wh": folder / "wh", "run": tiny_runs[0], "out": folder / "never-written"}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invocation=bad_invocations())
def test_every_bad_option_value_is_one_line_exit_2_and_changes_nothing(
    invocation: tuple[tuple[str, ...], str, str], target: dict[str, Path]
) -> None:
    command, option, value = invocation
    before = checksum(target["wh"])
    args = [part.format(**target) for part in command]
    code, out, err = ldw(*args, f"{option}={value}")
    assert_one_line_error(code, out, err, 2)
    assert checksum(target["wh"]) == before
    assert not target["out"].exists()


@pytest.mark.parametrize(
    "args",
    [
        ["evalset", "--seq-len", "0"],
        ["sweep", "--batch-size", "-1"],
        ["sweep", "--device", "tpu"],
        ["probe-weights", "--sequences", "-3"],
        ["metrics", "--window", "0"],
        ["sweep", "--no-such-option"],
    ],
)
def test_the_ldw_entry_point_exits_2_with_one_line(args: list[str], target: dict[str, Path]) -> None:
    before = checksum(target["wh"])
    done = subprocess.run(
        [sys.executable, "-m", "ldw", *args, "-w", str(target["wh"])], capture_output=True, text=True, timeout=300
    )
    assert_one_line_error(done.returncode, done.stdout, done.stderr, 2)
    assert checksum(target["wh"]) == before


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal without CUDA")
def test_a_device_this_machine_lacks_is_a_setting_error(target: dict[str, Path]) -> None:
    before = checksum(target["wh"])
    code, out, err = ldw("sweep", "-w", target["wh"], "--device", "cuda")
    assert_one_line_error(code, out, err, 2)
    assert "CUDA is not available" in err
    assert checksum(target["wh"]) == before


# --- failures while working: exit 1, one line naming the file -----------------------------------------


@pytest.fixture()
def swept(tmp_path: Path) -> Path:
    """A small warehouse with surprisal files of one run (no model involved)."""
    build_curves_warehouse(tmp_path / "wh", {"r": np.array([0, 1, 2, 4, 8, 16, 32])})
    return tmp_path / "wh"


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_metrics_names_a_missing_or_truncated_surprisal_file(swept: Path, damage: str) -> None:
    victim = sorted((swept / "parquet" / "surprisal").glob("*/r/*.parquet"))[3]  # surprisal/EVAL_ID/RUN/
    if damage == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:200])
    code, out, err = ldw("metrics", "-w", swept, "-q")
    assert_one_line_error(code, out, err, 1)
    assert str(victim) in err and ("missing" if damage == "missing" else "damaged") in err


@pytest.mark.parametrize("damage", ["garbage", "truncated", "overwritten"])
def test_a_corrupt_catalog_is_one_line(swept: Path, damage: str) -> None:
    catalog = swept / "catalog.duckdb"
    data = catalog.read_bytes()
    if damage == "garbage":
        catalog.write_bytes(b"not a database" * 100)
    elif damage == "truncated":
        catalog.write_bytes(data[: len(data) // 3])
    else:
        catalog.write_bytes(data[: len(data) // 4] + b"\xff" * (len(data) // 2) + data[3 * len(data) // 4 :])
    for command in ("status", "metrics", "spikes"):
        code, out, err = ldw(command, "-w", swept)
        assert code == 1 and len(err.splitlines()) == 1 and err.startswith("error: "), (command, err)
        assert "Traceback" not in err and "a bug" not in err


def test_a_missing_tokenizer_folder_is_named_and_a_new_warehouse_left_no_trace(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    code, out, err = ldw("evalset", "-w", typo, "--tokenizer", tmp_path / "nonexistent")
    assert_one_line_error(code, out, err, 1)
    assert f"{tmp_path / 'nonexistent'}: tokenizer folder not found" in err and "Repo id" not in err
    assert not typo.exists()


def test_a_failed_ingest_into_a_new_warehouse_leaves_no_folder(tmp_path: Path, tiny_runs: list[Path]) -> None:
    typo = tmp_path / "typo"
    code, out, err = ldw("ingest", tiny_runs[0], "-w", typo, "--tokenizer", tmp_path, "-q")
    assert code == 1 and "no tokenizer files" in err
    assert not typo.exists()
    code, *_ = ldw("init", "-w", typo, "--storage", "nosuchprotocol://bucket")
    assert code == 1 and not typo.exists()


def test_a_failed_command_keeps_an_existing_warehouse(swept: Path, tmp_path: Path) -> None:
    before = checksum(swept)
    code, _, err = ldw("evalset", "-w", swept, "--tokenizer", tmp_path / "nonexistent")
    assert code == 1 and swept.is_dir() and checksum(swept) == before
