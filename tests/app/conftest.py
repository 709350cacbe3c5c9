"""Warehouses for the app tests: a complete synthetic one, and one with nothing computed yet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from ldw.app.launch import APP_MAIN
from ldw.testing import SyntheticInfo, SyntheticSpec, build_synthetic_warehouse
from ldw.warehouse import CheckpointRecord, RunRecord, Warehouse

MAIN = APP_MAIN


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticInfo:
    """3 runs x 12 checkpoints x 600 tokens with every derived table the app reads."""
    return build_synthetic_warehouse(tmp_path_factory.mktemp("app") / "warehouse", SyntheticSpec())


@pytest.fixture(scope="session")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with one ingested run (checkpoints pending), no evaluation set, sweep or analysis."""
    root = tmp_path_factory.mktemp("app-bare") / "warehouse"
    wh = Warehouse.create(root)
    wh.upsert_run(RunRecord("solo", "solo", 0, "/runs/solo", "step_folders", "gpt_neox", {}, None, "fp", None, {}))
    wh.upsert_checkpoints("solo", [CheckpointRecord(s, None, f"/runs/solo/step{s}", f"h{s}", None) for s in (0, 1, 2)])
    return root


def app_at(root: Path, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    """The app script on ``root`` with URL query parameters, run once."""
    monkeypatch.setenv("LDW_WAREHOUSE", str(root))
    at = AppTest.from_file(str(MAIN), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


@pytest.fixture(scope="session")
def with_acquired(synthetic: SyntheticInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the synthetic warehouse whose token_metrics column ``acquired`` (`ldw metrics` sets it false where a
    run never learned a token) says: run seed2 never acquired the tokens whose token_idx is a multiple of 7, and
    every other (run, token) was acquired."""
    root = tmp_path_factory.mktemp("app-acquired") / "warehouse"
    shutil.copytree(synthetic.root, root)
    wh = Warehouse.open(root)
    for part in sorted((root / "parquet").glob("derived/token_metrics/v-*/*.parquet")):
        table = pq.read_table(part)
        acquired = ~(
            pc.equal(table["run_id"], "seed2").to_numpy(zero_copy_only=False) & (table["token_idx"].to_numpy() % 7 == 0)
        )
        table = table.set_column(table.schema.get_field_index("acquired"), "acquired", pa.array(acquired))
        pq.write_table(table, part)
    wh.refresh_views()
    return root
