"""Self-checks for the exercises at the end of each chapter.

Each ``check_<name>(answer_or_function)`` tests a student's answer on several random cases and
prints a clear pass, or a hint naming what is wrong, without a traceback (see :mod:`._core`). One
module per chapter (``ch01`` ... ``ch11``); every check is re-exported here::

    from vaelib.exercises import check_log_mean_exp
"""

from ._core import ExerciseFailed, NotAttempted, refuse_as_answer, run_check  # noqa: F401
from .ch01 import *  # noqa: F401,F403
from .ch02 import *  # noqa: F401,F403
from .ch03 import *  # noqa: F401,F403
from .ch04 import *  # noqa: F401,F403
from .ch05 import *  # noqa: F401,F403
from .ch06 import *  # noqa: F401,F403
from .ch07 import *  # noqa: F401,F403
from .ch08 import *  # noqa: F401,F403
from .ch09 import *  # noqa: F401,F403
from .ch10 import *  # noqa: F401,F403
from .ch11 import *  # noqa: F401,F403
