"""The compiled binding of libpymortem (_pymortem, stable ABI), imported once
for the whole package so a missing or broken build fails in one place."""

try:
    from ._pymortem import (Error, Target, open_callback, open_core,  # noqa: F401
                            open_pid, reports, version)
except ImportError as e:  # re-raised with what to do about it
    raise ImportError(
        "the pymortem binding _pymortem.abi3.so could not be loaded from %s "
        "(%s); build it with `meson compile` or install with `meson install`"
        % (__file__.rsplit("/", 1)[0], e)) from None


def available_reports():
    """Names of the reports this build of the library provides."""
    return [name for name, _ in reports()]
