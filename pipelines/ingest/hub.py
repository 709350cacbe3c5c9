"""Checkpoint series kept as branches of a Hugging Face Hub repository: list, name and select them.

Pythia keeps ``step0`` ... ``step143000`` as branches of one repository; OLMo
``stepN-tokensXB``, ``stage1-stepN-tokensXB`` and ``stage2-ingredientK-stepN-tokensXB``;
Amber (LLM360) ``ckpt_NNN``. Branch names are parsed as checkpoint folder names are
(:mod:`ldw.ingest.discover`). Listing downloads no weights: branches come from the refs API,
each revision's files and the sha256 of its LFS files from the revision's tree. With
``HF_HUB_OFFLINE=1`` the listing comes from the local Hugging Face cache instead (branches under
``refs/``, files under ``snapshots/``, an LFS file's sha256 as its blob's name).

The client finds the user's token where ``huggingface_hub`` looks (``HF_TOKEN``, ``hf auth login``);
ldw never stores or prints it, and :func:`hub_error` scrubs it from any message.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from ldw.errors import LdwError
from ldw.ingest.discover import WEIGHT_SUFFIXES, parse_step, series_prefix

HUB_PREFIX = "hf:"
HUB_SOURCE_KIND = "hf_hub"  # runs.source_kind of a run ingested from the Hub
_SPEC = re.compile(r"^hf:/{0,2}(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)/?$")
CONFIG = "config.json"
TOKENIZER_NAMES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
)
# Preferred weight layouts, in order: (single file, index of shards, shard name pattern).
WEIGHT_LAYOUTS = (
    ("model.safetensors", "model.safetensors.index.json", re.compile(r"^model-\d+-of-\d+\.safetensors$")),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", re.compile(r"^pytorch_model-\d+-of-\d+\.bin$")),
)
LISTING_THREADS = 8
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class HubCheckpoint:
    """One branch of a hub repository taken as a checkpoint: its commit, step, and the files scoring needs.

    ``files`` maps each file to download (config and weights) to its sha256 when it is an LFS file.
    """

    repo_id: str
    revision: str
    commit: str
    step: int
    tokens_seen: int | None
    files: dict[str, str | None]

    @property
    def path(self) -> str:
        """How the catalog names it: ``hf:ORG/NAME@REVISION``."""
        return f"{HUB_PREFIX}{self.repo_id}@{self.revision}"

    def content_hash(self) -> str | None:
        """sha256 over the weight files' names and sha256s; None when one has no LFS sha256."""
        weights = {name: sha for name, sha in self.files.items() if name != CONFIG}
        if not weights or any(sha is None for sha in weights.values()):
            return None
        lines = "".join(f"{name}:{sha}\n" for name, sha in sorted(weights.items()))
        return hashlib.sha256(lines.encode()).hexdigest()


def hub_repo(text: str) -> str | None:
    """The repository id of an ``hf:ORG/NAME`` argument (``hf://ORG/NAME`` too); None for anything else."""
    if not str(text).startswith(HUB_PREFIX):
        return None
    match = _SPEC.match(str(text))
    if match is None:
        raise LdwError(f"{text}: expected hf:ORG/NAME, e.g. hf:EleutherAI/pythia-160m")
    return match["repo"]


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (as huggingface_hub read it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_folder(repo_id: str) -> Path:
    """The repository's folder in the Hugging Face cache (``HF_HUB_CACHE``, by default under ``HF_HOME``)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")


def hub_error(exc: BaseException, where: str) -> str:
    """One line saying what went wrong with a hub request, naming ``where``; the user's token never appears."""
    from huggingface_hub import errors, get_token

    if isinstance(exc, errors.GatedRepoError):
        text = "gated repository: accept its terms on the Hub, then log in (`hf auth login`) or set HF_TOKEN"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        text = "repository not found, or private without a valid token (log in with `hf auth login` or set HF_TOKEN)"
    elif isinstance(exc, errors.RevisionNotFoundError):
        text = "revision no longer on the Hub (deleted or rewritten since it was listed); ingest the repository again"
    elif isinstance(exc, errors.LocalEntryNotFoundError | errors.OfflineModeIsEnabled):
        text = f"not in the Hugging Face cache {cache_folder_root()} and the Hub cannot be asked (HF_HUB_OFFLINE=1?)"
    elif isinstance(exc, errors.EntryNotFoundError):
        text = "file not in this revision"
    elif isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        text = f"the Hub answered HTTP {exc.response.status_code} ({_first_line(exc)})"
    else:
        text = f"{type(exc).__name__}: {_first_line(exc)}"
    message = f"{where}: {text}"
    token = get_token()
    return message.replace(token, "<token>") if token else message


def cache_folder_root() -> str:
    """The Hugging Face cache folder in use."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def list_branches(repo_id: str) -> dict[str, str]:
    """Branch name -> commit sha, from the Hub, or from the cache's ``refs/`` when offline."""
    if offline():
        refs = cache_folder(repo_id) / "refs"
        if not refs.is_dir():
            raise LdwError(f"hf:{repo_id}: HF_HUB_OFFLINE=1 and no revision of it in the cache {cache_folder_root()}")
        return {p.relative_to(refs).as_posix(): p.read_text().strip() for p in sorted(refs.rglob("*")) if p.is_file()}
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo_id)
    except Exception as exc:
        raise LdwError(hub_error(exc, f"hf:{repo_id}")) from None
    return {branch.name: branch.target_commit for branch in refs.branches}


def revision_files(repo_id: str, commit: str) -> dict[str, str | None]:
    """Top-level files of one commit -> sha256 of the LFS ones (None for plain git files)."""
    if offline():
        snapshot = cache_folder(repo_id) / "snapshots" / commit
        files = sorted(p for p in snapshot.iterdir() if p.is_file()) if snapshot.is_dir() else []
        return {p.name: _blob_sha256(p) for p in files}
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = list(HfApi().list_repo_tree(repo_id, revision=commit))
    except Exception as exc:
        raise LdwError(hub_error(exc, f"hf:{repo_id}@{commit}")) from None
    return {e.path: (e.lfs.sha256 if e.lfs else None) for e in entries if isinstance(e, RepoFile)}


def _blob_sha256(link: Path) -> str | None:
    """An LFS file's sha256 from the cache blob its snapshot link points to (blobs are named by it)."""
    if not link.is_symlink():
        return None
    name = link.resolve().name
    return name if SHA256_HEX.match(name) else None


def scoring_files(names: list[str]) -> list[str] | None:
    """What scoring downloads of a revision: config.json and one weight layout; None when it has none."""
    if CONFIG not in names:
        return None
    for single, index, shard in WEIGHT_LAYOUTS:
        if single in names:
            return [CONFIG, single]
        if index in names:
            return [CONFIG, index, *sorted(n for n in names if shard.match(n))]
    plain = [n for n in names if n.endswith(WEIGHT_SUFFIXES)]
    return [CONFIG, plain[0]] if len(plain) == 1 else None


def select_branches(
    repo_id: str, branches: dict[str, str], patterns: tuple[str, ...] | None, every: int | None
) -> tuple[list[tuple[str, str, int, int | None]], list[str]]:
    """(branch, commit, step, tokens seen) of the chosen checkpoint branches in step order, and warnings.

    Branches without a step in their name (``main``) are left out. One run is one series: when
    the branches span several (OLMo's ``stage1-...`` and ``stage2-ingredientK-...``), an explicit
    ``patterns`` is an error and the default keeps the largest series, naming the others.
    """
    chosen, warnings, unnamed = [], [], []
    for name, commit in branches.items():
        if patterns and not any(fnmatchcase(name, p) for p in patterns):
            continue
        parsed = parse_step(name, fallback=False)
        if parsed is None:
            unnamed.append(name)
            continue
        chosen.append((name, commit, *parsed))
    if unnamed:
        warnings.append(f"hf:{repo_id}: left out {len(unnamed)} branch(es) without a step: {', '.join(unnamed)}")
    if not chosen:
        wanted = f" matching {', '.join(patterns)}" if patterns else ""
        raise LdwError(f"hf:{repo_id}: no branch{wanted} names a step (e.g. step1000); branches: {', '.join(branches)}")
    series: dict[str, list] = {}
    for row in chosen:
        series.setdefault(series_prefix(row[0]), []).append(row)
    if len(series) > 1:
        names = ", ".join(f"'{s or 'step'}*' ({len(rows)})" for s, rows in series.items())
        if patterns:
            raise LdwError(f"hf:{repo_id}: the chosen branches span several series ({names}); pick one")
        keep = max(series, key=lambda s: len(series[s]))
        warnings.append(f"hf:{repo_id}: kept the largest series of {names}; choose another with --revisions")
        chosen = series[keep]
    by_step: dict[int, tuple] = {}
    for row in sorted(chosen, key=lambda r: (r[2], r[0])):
        if row[2] in by_step:
            warnings.append(f"hf:{repo_id}@{row[0]}: step {row[2]} also in {by_step[row[2]][0]}; keeping the first")
            continue
        by_step[row[2]] = row
    rows = [by_step[s] for s in sorted(by_step)]
    if every is not None and every > 1:
        rows = rows[::every] + ([rows[-1]] if (len(rows) - 1) % every else [])
    return rows, warnings


def list_checkpoints(
    repo_id: str, patterns: tuple[str, ...] | None, every: int | None
) -> tuple[list[HubCheckpoint], list[str]]:
    """The chosen branches of ``repo_id`` as checkpoints (one tree listing per branch, no downloads)."""
    rows, warnings = select_branches(repo_id, list_branches(repo_id), patterns, every)
    with ThreadPoolExecutor(LISTING_THREADS) as pool:
        trees = list(pool.map(lambda row: revision_files(repo_id, row[1]), rows))
    checkpoints = []
    for (name, commit, step, tokens), files in zip(rows, trees, strict=True):
        needed = scoring_files(sorted(files))
        if needed is None:
            warnings.append(f"hf:{repo_id}@{name}: no config.json with model weights; skipped")
            continue
        checkpoints.append(HubCheckpoint(repo_id, name, commit, step, tokens, {n: files[n] for n in needed}))
    if not checkpoints:
        raise LdwError(f"hf:{repo_id}: none of the chosen branches holds config.json with model weights")
    return checkpoints, warnings


def download_tokenizer(repo_id: str, commit: str) -> Path:
    """Download config.json and the tokenizer files (only those) of one commit; the cache folder holding them."""
    from huggingface_hub import hf_hub_download

    files = revision_files(repo_id, commit)
    wanted = [n for n in (CONFIG, *TOKENIZER_NAMES) if n in files]
    if not any(n in TOKENIZER_NAMES for n in wanted):
        raise LdwError(f"hf:{repo_id}@{commit}: no tokenizer files; pass --tokenizer DIR")
    try:
        paths = [hf_hub_download(repo_id, name, revision=commit) for name in wanted]
    except Exception as exc:
        raise LdwError(hub_error(exc, f"hf:{repo_id}@{commit}")) from None
    return Path(paths[0]).parent


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
