"""What a user is told when an import fails: our exception types, and never a parser's internals.

Every failure a format module raises is an :class:`ImportRejected` (HTTP 422) whose problems each
carry a reason in our words, with a line wherever the file has one: no ``<... object at 0x...>``,
no exception class names, no echo of the whole document.
"""

from __future__ import annotations

import re

from app.importers import ImportFailed, ImportRejected, UnsupportedFormat

INTERNALS = re.compile(r"object at 0x|Traceback|Error:|\[<class ")


def assert_told_in_our_words(rejected: ImportRejected) -> None:
    """Each problem has a reason free of parser internals; used by the format test modules."""
    for problem in rejected.problems:
        assert problem.reason and not INTERNALS.search(problem.reason), problem
        assert len(problem.reason) < 400, problem


def test_one_base_class_for_every_deliberate_error() -> None:
    assert issubclass(UnsupportedFormat, ImportFailed)
    assert issubclass(ImportRejected, ImportFailed)
    assert not issubclass(ImportFailed, ImportError)  # not the builtin raised by `import`

