"""`python -m autoft_core ...`: the command line (warnings as one line each, like its errors)."""
import sys
import warnings

from .cli import main


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              line: str | None = None) -> str:
    """A warning as `autoft_core: warning: MESSAGE`, without Python's source line under it."""
    return f"autoft_core: warning: {message}\n"


warnings.formatwarning = _one_line
sys.exit(main())
