import os

import pytest

# Tests must never touch the user's cache or the network.
os.environ.setdefault("LOSSCLI_CACHE", os.path.join(os.path.dirname(__file__), ".cache-unused"))


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


def pytest_configure(config):
    # Tests use tiny tensors: one intra-op thread avoids thread start-up and contention
    # overhead on small CI machines (and keeps timing of the suite predictable).
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
