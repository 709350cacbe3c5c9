"""``ldw ingest hf:ORG/NAME``: branches listed through the real huggingface_hub client, no weights downloaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ldw.errors import LdwError
from ldw.ingest.config import IngestConfig
from ldw.ingest.register import ingest_paths
from ldw.probe.tokenizing import load_tokenizer, tokenizer_fingerprint
from ldw.warehouse import Warehouse
from tests.hub.conftest import OLMO, OLMO_BRANCHES, OLMO_DUPLICATE, PYTHIA, PYTHIA_BRANCHES, PYTHIA_SEED1
from tests.hub.fakehub import FakeHub

PYTHIA_STEPS = [0, 1, 2, 4, 8, 1000, 2000]


def _ingest(wh: Path, *repos: str, **options) -> list:
    return ingest_paths(wh, [f"hf:{r}" for r in repos], IngestConfig(**options), progress=False)


def _resolved(hub: FakeHub) -> set[str]:
    """File names the client asked for (HEAD or GET) through /resolve/."""
    return {r.path.rsplit("/", 1)[1] for r in hub.log if "/resolve/" in r.path}


def test_pythia_branches_registered_without_downloading_weights(
    hub_client: Path, hub: FakeHub, hub_root: Path, tiny_runs: list[Path], tmp_path: Path
) -> None:
    (result,) = _ingest(tmp_path / "wh", PYTHIA, tokens_per_step=2048)
    assert (result.run_id, result.kind, result.source) == ("pythia-tiny", "hf_hub", f"hf:{PYTHIA}")
    assert (result.n_checkpoints, result.n_new, result.n_duplicates) == (7, 7, 0)
    assert any("main" in w for w in result.warnings)
    assert _resolved(hub) == {"config.json", "tokenizer.json", "tokenizer_config.json"}
    last = hub.commit_sha(PYTHIA, "step2000")
    assert all(f"/resolve/{last}/" in r.path for r in hub.log if "/resolve/" in r.path)

    wh = Warehouse.open(tmp_path / "wh")
    checkpoints = wh.checkpoints("pythia-tiny")
    assert checkpoints["step"].to_list() == PYTHIA_STEPS
    assert checkpoints["tokens_seen"].to_list() == [s * 2048 for s in PYTHIA_STEPS]
    assert checkpoints["path"].to_list() == [f"hf:{PYTHIA}@step{s}" for s in PYTHIA_STEPS]
    run = wh.runs().row(0, named=True)
    assert (run["source"], run["source_kind"], run["arch"]) == (f"hf:{PYTHIA}", "hf_hub", "gpt_neox")
    local_tokenizer = load_tokenizer(tiny_runs[0] / "tokenizer")
    assert run["tokenizer_fingerprint"] == tokenizer_fingerprint(local_tokenizer)
    revisions = json.loads(run["metadata"])["hub"]["revisions"]
    for step, branch in PYTHIA_BRANCHES.items():
        listed = revisions[branch]
        weights = (hub_root / PYTHIA / branch / "model.safetensors").read_bytes()
        assert listed["commit"] == hub.commit_sha(PYTHIA, branch)
        assert listed["files"] == {"config.json": None, "model.safetensors": hashlib.sha256(weights).hexdigest()}
        row = checkpoints.filter(step=int(branch[4:])).row(0, named=True)
        want = hashlib.sha256(f"model.safetensors:{hashlib.sha256(weights).hexdigest()}\n".encode()).hexdigest()
        assert row["content_hash"] == want, step


def test_olmo_names_give_tokens_seen_one_series_and_duplicates(hub_client: Path, tmp_path: Path) -> None:
    (result,) = _ingest(tmp_path / "wh", OLMO)
    checkpoints = Warehouse.open(tmp_path / "wh").checkpoints("olmo-tiny")
    assert checkpoints["step"].to_list() == [0, 1000, 2000, 3000]
    assert checkpoints["tokens_seen"].to_list() == [0, 4 * 10**9, 8 * 10**9, 12 * 10**9]
    assert checkpoints["duplicate_of"].to_list() == [None, None, None, 2000]
    assert result.n_duplicates == 1 and any(OLMO_DUPLICATE[0] in w and "step 2000" in w for w in result.warnings)
    assert any("stage2-ingredient1" in w for w in result.warnings)

    (other,) = _ingest(tmp_path / "wh2", OLMO, revisions=("stage2-ingredient1-*",), name="olmo-mid")
    assert other.run_id == "olmo-mid" and other.n_checkpoints == 1
    assert Warehouse.open(tmp_path / "wh2").checkpoints("olmo-mid")["path"].to_list() == [
        f"hf:{OLMO}@{OLMO_BRANCHES[24]}"
    ]


def test_every_then_all_adds_the_rest(hub_client: Path, tmp_path: Path) -> None:
    (first,) = _ingest(tmp_path / "wh", PYTHIA, every=3)
    assert first.n_checkpoints == 3
    (second,) = _ingest(tmp_path / "wh", PYTHIA)
    assert (second.n_checkpoints, second.n_new) == (7, 7)  # none swept yet: all pending
    wh = Warehouse.open(tmp_path / "wh")
    assert wh.checkpoints("pythia-tiny")["step"].to_list() == PYTHIA_STEPS
    assert len(json.loads(wh.runs()["metadata"][0])["hub"]["revisions"]) == 7


def test_one_run_per_repository_with_the_seed_from_the_name(hub_client: Path, tmp_path: Path) -> None:
    results = _ingest(tmp_path / "wh", PYTHIA, PYTHIA_SEED1, revisions=("step1000",))
    assert [r.run_id for r in results] == ["pythia-tiny", "pythia-tiny-seed1"]
    runs = Warehouse.open(tmp_path / "wh").runs()
    assert runs["seed"].to_list() == [None, 1]
    with pytest.raises(LdwError, match="--name given but 2 runs"):
        _ingest(tmp_path / "wh", PYTHIA, PYTHIA_SEED1, name="x")


def test_a_training_log_given_with_a_hub_repository_becomes_its_traces(hub_client: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("step,loss,lr\n1,5.0,0.001\n2,4.5,0.001\n3,nan,0.001\n", encoding="utf-8")
    (result,) = _ingest(tmp_path / "wh", PYTHIA, revisions=("step1000",), log=log)
    assert result.n_trace_rows == 5
    assert any(str(log) in w and "NaN/inf" in w for w in result.warnings)
    traces = Warehouse.open(tmp_path / "wh").traces("pythia-tiny")
    assert traces.filter(name="loss")["value"].to_list() == [5.0, 4.5]
    with pytest.raises(LdwError, match="--log given but 2 runs"):
        _ingest(tmp_path / "wh", PYTHIA, PYTHIA_SEED1, log=log)


def test_hub_options_without_a_hub_path_are_refused(tiny_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(LdwError, match="--revisions and --every"):
        ingest_paths(tmp_path / "wh", [tiny_runs[0]], IngestConfig(every=2), progress=False)


def test_missing_gated_and_offline_repositories_are_one_line_errors(
    hub_client: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    with pytest.raises(LdwError, match=r"hf:fake-org/nope: repository not found") as missing:
        _ingest(tmp_path / "wh", "fake-org/nope")
    hub.faults.gated[PYTHIA] = "hf_right"
    with pytest.raises(LdwError, match=r"hf:fake-org/pythia-tiny: gated repository: .*HF_TOKEN") as gated:
        _ingest(tmp_path / "wh", PYTHIA)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LdwError, match="HF_HUB_OFFLINE=1 and no revision of it in the cache") as offline:
        _ingest(tmp_path / "wh", PYTHIA_SEED1)
    assert all("\n" not in str(e.value) for e in (missing, gated, offline))


def test_offline_ingest_lists_what_the_cache_holds(
    hub_client: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Revisions a user downloaded before (e.g. `hf download --revision step4`) are found with HF_HUB_OFFLINE=1."""
    from huggingface_hub import constants, hf_hub_download

    for branch in ("step4", "step1000"):
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            hf_hub_download(PYTHIA, name, revision=branch)
    _ingest(tmp_path / "online", PYTHIA, revisions=("step4", "step1000"))
    hub.log.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    (result,) = _ingest(tmp_path / "offline", PYTHIA)
    assert result.n_checkpoints == 2 and hub.log == []
    online, offline = (Warehouse.open(tmp_path / w).checkpoints() for w in ("online", "offline"))
    assert offline.select("step", "path", "content_hash").equals(online.select("step", "path", "content_hash"))


def test_the_python_api_takes_the_hub_options(hub_client: Path, hub: FakeHub, tmp_path: Path) -> None:
    import ldw
    from tests.conftest import TINY_EVAL
    from tests.hub.conftest import cached_weights

    wb = ldw.open(tmp_path / "wh", create=True, progress=False)
    (result,) = wb.ingest([f"hf:{PYTHIA}"], revisions=["step1*"], every=2)
    assert result.n_checkpoints == 2  # step1, step1000 -> the first and the last
    wb.evalset(TINY_EVAL)
    summary = wb.sweep(device="cpu", keep_weights=True, prefetch=0, fetch_attempts=1)
    assert summary.scored == 2 and len(cached_weights(hub_client)) == 2
    settings = json.loads(wb.sql("SELECT settings FROM sweeps")["settings"][0])
    assert settings["prefetch"] == 0 and settings["hub"]["keep_weights"] is True
