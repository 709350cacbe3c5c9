"""The FakeHub answers the real huggingface_hub client as the Hub does, for the calls ldw makes."""

from __future__ import annotations

import hashlib
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.hub.conftest import OLMO, OLMO_BRANCHES, PYTHIA, TOKEN
from tests.hub.fakehub import FakeHub

SLASHY = "fake-org/slashy"


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _gets(hub: FakeHub, fragment: str) -> list:
    return [r for r in hub.log if r.method == "GET" and "/resolve/" in r.path and r.path.endswith(fragment)]


def test_refs_files_and_lfs_metadata_without_downloading(hub_client: Path, hub: FakeHub, hub_root: Path) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    branches = {b.name: b.target_commit for b in api.list_repo_refs(PYTHIA).branches}
    assert set(branches) == {"main", "step0", "step1", "step2", "step4", "step8", "step1000", "step2000"}
    assert branches["main"] == branches["step2000"] == hub.commit_sha(PYTHIA, "step2000")  # natural order
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(api.list_repo_files(PYTHIA, revision="step0"))
    tree = {f.path: f for f in api.list_repo_tree(PYTHIA, revision=branches["step4"])}
    weights = hub_root / PYTHIA / "step4" / "model.safetensors"
    assert tree["model.safetensors"].size == weights.stat().st_size
    assert tree["model.safetensors"].lfs.sha256 == _sha256(weights)
    assert tree["config.json"].lfs is None
    assert hub.log and not [r for r in hub.log if "/resolve/" in r.path]
    assert not any(r.authorized for r in hub.log)


def test_file_metadata_and_download_by_branch_and_commit(hub_client: Path, hub: FakeHub, hub_root: Path) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import RemoteEntryNotFoundError

    source = hub_root / PYTHIA / "step0" / "model.safetensors"
    meta = get_hf_file_metadata(hf_hub_url(PYTHIA, "model.safetensors", revision="step0"))
    assert (meta.commit_hash, meta.etag, meta.size) == (
        hub.commit_sha(PYTHIA, "step0"),
        _sha256(source),
        source.stat().st_size,
    )
    path = hf_hub_download(PYTHIA, "model.safetensors", revision="step0")
    assert _sha256(path) == _sha256(source) and f"snapshots/{hub.commit_sha(PYTHIA, 'step0')}/" in path
    # by commit sha, once cached: no request at all
    n = len(hub.log)
    assert hf_hub_download(PYTHIA, "model.safetensors", revision=hub.commit_sha(PYTHIA, "step0")) == path
    assert len(hub.log) == n
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(PYTHIA, "nope.txt", revision="step0")


@pytest.mark.parametrize("chunk", [None, 4096])
def test_cut_download_is_resumed_by_the_client(
    hub_client: Path, hub: FakeHub, hub_root: Path, monkeypatch: pytest.MonkeyPatch, chunk: int | None
) -> None:
    """A cut body makes the client retry within the call (1 s apart). With its 10 MiB read chunk a small
    file restarts from byte 0; with a small chunk the retry asks for ``Range: bytes=N-`` and gets a 206."""
    from huggingface_hub import constants, hf_hub_download

    if chunk:
        monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", chunk)
    source = hub_root / PYTHIA / "step1" / "model.safetensors"
    hub.faults.cut[f"{PYTHIA}/model.safetensors"] = 2
    assert _sha256(hf_hub_download(PYTHIA, "model.safetensors", revision="step1")) == _sha256(source)
    gets = _gets(hub, "model.safetensors")
    assert len(gets) == 3 and gets[0].range is None
    if chunk is None:
        assert [r.range for r in gets] == [None, None, None] and [r.status for r in gets] == [200, 200, 200]
    else:
        assert all(r.range.startswith("bytes=") for r in gets[1:]) and [r.status for r in gets] == [200, 206, 206]


def test_vanished_revision(hub_client: Path, hub: FakeHub) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import RevisionNotFoundError

    cached = hf_hub_download(PYTHIA, "config.json", revision=hub.commit_sha(PYTHIA, "step0"))
    hub.faults.vanished.add((PYTHIA, "step0"))
    assert "step0" not in {b.name for b in HfApi().list_repo_refs(PYTHIA).branches}
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(PYTHIA, "config.json", revision="step0")  # by branch name: asks the Hub, even if cached
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(PYTHIA, "model.safetensors", revision=hub.commit_sha(PYTHIA, "step0"))
    assert hf_hub_download(PYTHIA, "config.json", revision=hub.commit_sha(PYTHIA, "step0")) == cached


def test_gated_repository_needs_the_token(hub_client: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError

    hub.faults.gated[OLMO] = TOKEN
    with pytest.raises(GatedRepoError):
        HfApi().list_repo_refs(OLMO)
    assert [r.status for r in hub.log] == [401] and not hub.log[0].authorized
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(GatedRepoError):
        hf_hub_download(OLMO, "config.json", revision=OLMO_BRANCHES[0])
    assert hub.log[-1].status == 403
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert OLMO_BRANCHES[0] in {b.name for b in HfApi().list_repo_refs(OLMO).branches}
    assert Path(hf_hub_download(OLMO, "config.json", revision=OLMO_BRANCHES[0])).is_file()
    assert hub.log[-1].authorized and hub.log[-1].status == 200


def test_bandwidth_limit(hub_client: Path, hub: FakeHub, hub_root: Path) -> None:
    from huggingface_hub import hf_hub_download

    size = (hub_root / PYTHIA / "step2" / "model.safetensors").stat().st_size
    hub.faults.bandwidth = size / 0.5
    start = time.monotonic()
    hf_hub_download(PYTHIA, "model.safetensors", revision="step2")
    assert time.monotonic() - start >= 0.45


def test_branch_names_with_a_slash_are_quoted(hub_client: Path, hub: FakeHub, hub_root: Path) -> None:
    from huggingface_hub import HfApi, hf_hub_download

    folder = hub_root / SLASHY / "exp%2Fstep2"  # branch "exp/step2"
    if not folder.exists():
        folder.mkdir(parents=True)
        shutil.copy(hub_root / PYTHIA / "step0" / "config.json", folder)
    assert "exp/step2" in {b.name for b in HfApi().list_repo_refs(SLASHY).branches}
    hf_hub_download(SLASHY, "config.json", revision="exp/step2")
    assert any("/resolve/exp%2Fstep2/config.json" in r.path for r in hub.log)


def test_resolve_headers_and_ranges(hub: FakeHub, hub_root: Path) -> None:
    """The headers hf_hub_download relies on, checked with urllib (no client involved)."""
    data = (hub_root / PYTHIA / "step0" / "model.safetensors").read_bytes()
    url = f"{hub.endpoint}/{PYTHIA}/resolve/step0/model.safetensors"

    def fetch(method: str = "GET", rng: str | None = None):
        request = urllib.request.Request(url, method=method, headers={"Range": rng} if rng else {})
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.headers, answer.read()

    status, headers, body = fetch("HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))
    assert headers["X-Repo-Commit"] == hub.commit_sha(PYTHIA, "step0")
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert fetch(rng="bytes=5-9")[2] == data[5:10]
    status, headers, body = fetch(rng="bytes=-10")
    assert status == 206 and body == data[-10:]
    assert headers["Content-Range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    with pytest.raises(urllib.error.HTTPError) as error:
        fetch(rng=f"bytes={len(data)}-")
    assert error.value.code == 416
