import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _two_threads():
    import aerec
    old = aerec.get_num_threads()
    aerec.set_num_threads(2)
    yield
    aerec.set_num_threads(old)
