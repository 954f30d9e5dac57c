"""The failure policy for candidates: any exception is the candidate's failure, but not the driver's own errors."""
import pytest

from common.contrastive.trainer import NonFiniteLoss
from common.failures import DriverError, failure_reason, is_candidate_failure, run_candidate


def _raise(exc):
    raise exc


@pytest.mark.parametrize("exc, reason", [
    (KeyError("sep_conv_9x9"), "KeyError: 'sep_conv_9x9'"),
    (NonFiniteLoss("loss became nan"), "NonFiniteLoss: loss became nan"),
    (RuntimeError("CUDA out of memory\nTried to allocate 2 GiB"), "RuntimeError: CUDA out of memory"),
    (AttributeError("x" * 400), "AttributeError: " + "x" * 300),
    (MemoryError(), "MemoryError: "),
])
def test_any_exception_of_a_candidate_is_its_failure(exc, reason):
    assert is_candidate_failure(exc) and failure_reason(exc) == reason
    assert run_candidate(_raise, exc) == (None, reason)
    assert run_candidate(lambda a, b=0: a + b, 1, b=2) == (3, None)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(2), DriverError("row time limit")])
def test_the_drivers_own_errors_stop_the_driver(exc):
    assert not is_candidate_failure(exc)
    with pytest.raises(type(exc)):
        run_candidate(_raise, exc)


def test_debug_prints_the_traceback(capsys):
    run_candidate(_raise, KeyError("op"), debug=True)
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'op'" in err
    run_candidate(_raise, KeyError("op"))
    assert capsys.readouterr().err == ""
