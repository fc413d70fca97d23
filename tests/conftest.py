import os

import pytest

# Tests must never touch the user's cache or the network.
os.environ.setdefault("LOSSCLI_CACHE", os.path.join(os.path.dirname(__file__), ".cache-unused"))
# Ray's "no cluster" mode (servers on 127.0.0.1 only) is read from this variable when ray is first
# imported: set before any test can import it (a test that merely checks an option imports ray too,
# and the simulated two-node cluster then hung connecting to the machine's outside address).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


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
