"""One failure policy for candidates: what scoring one may raise and still let the search (or study) go on.

Any exception raised while a candidate is scored -- NaN loss, out of memory, a shape error, a KeyError in an op --
is that candidate's failure: it becomes a `status: "fail"` record naming the exception's type and message, and the
next candidate runs. The same holds inline (WORKERS=1) and in worker processes or Ray actors. KeyboardInterrupt and
SystemExit are not exceptions of a candidate (they derive from BaseException only) and stop the driver, as do errors
of the driver's own work outside the scoring (writing trials.jsonl, the executor's bookkeeping) and a DriverError
raised into a candidate by the driver (a time limit's signal handler).
"""
import sys
import traceback


class DriverError(Exception):
    """Raised by the driver's own machinery while a candidate runs (e.g. a time limit): never the candidate's failure."""


CANDIDATE_ERRORS = (Exception,)  # raised while scoring a candidate -> a failed candidate, except a DriverError
REASON_CHARS = 300  # a failure's message is cut to its first line and this many characters


def is_candidate_failure(exc):
    """True when `exc`, raised while a candidate was scored, is that candidate's failure (the policy in one place)."""
    return isinstance(exc, CANDIDATE_ERRORS) and not isinstance(exc, DriverError)


def failure_reason(exc):
    """'KeyError: 'sep_conv_9x9'' -- the exception's type and the first line of its message, for the record."""
    first = (str(exc).splitlines() or [""])[0][:REASON_CHARS]
    return f"{type(exc).__name__}: {first}"


def run_candidate(fn, *args, debug=False, **kwargs):
    """(fn(*args, **kwargs), None), or (None, failure_reason) when it raises one of CANDIDATE_ERRORS.

    debug: print the traceback to stderr. The exception is dropped before this returns (its traceback would keep the
    failed candidate's model, optimizer and tensors alive while the caller frees memory for the next one).
    """
    try:
        return fn(*args, **kwargs), None
    except DriverError:
        raise
    except CANDIDATE_ERRORS as exc:
        reason = failure_reason(exc)
        if debug:
            traceback.print_exc(file=sys.stderr)
    return None, reason
