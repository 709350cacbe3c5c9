"""Device names: the one resolver every command (sweep, train, probe-weights) uses."""

from __future__ import annotations

import pytest
import torch

from ldw.probe.errors import ProbeError
from ldw.probe.loading import resolve_device


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta", "cpu:3", ""])
def test_unknown_device_names_are_refused(name: str) -> None:
    with pytest.raises(ProbeError, match=f"device '{name}': expected auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_refused(name: str) -> None:
    with pytest.raises(ProbeError, match="CUDA is not available"):
        resolve_device(name)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_beyond_the_gpus_present_is_refused() -> None:
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ProbeError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
